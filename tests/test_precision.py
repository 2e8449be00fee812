"""Mixed precision: `auto` follows the processor, bf16 training really runs in bf16, and what is
evaluated and logged is a float32 model whose figures a user can reproduce."""
from __future__ import annotations

import dataclasses

import keras
import mlflow
import numpy as np
import pytest

from fer_experiments import data as fer_data
from fer_experiments import training
from fer_experiments.config import ConfigError, build_config
from fer_experiments.training import precision


@pytest.mark.parametrize("flags, expected", [
    ({"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
    ({"amx_bf16", "amx_tile"}, "mixed_bfloat16"),
    ({"avx2", "fma"}, "float32"),
    (set(), "float32"),
])
def test_auto_precision_follows_the_processor(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve("auto") == expected
    assert precision.resolve("float32") == "float32"  # an explicit choice is kept on any machine
    assert build_config(None, precision="auto").resolved().precision == expected


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision='bf16' is out of range"):
        build_config(None, precision="bf16")


def test_build_model_uses_the_policy_and_restores_the_global_one():
    cfg = build_config(None, model="custom_aug", precision="mixed_bfloat16").resolved()
    model, _ = training.build_model(cfg)
    net = model.get_layer("custom_aug")
    assert net.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert net.get_layer("block1_conv1").variable_dtype == "float32"
    assert model.get_layer("augmenter").compute_dtype == "float32"  # pixel values keep float32
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow
def test_bf16_run_logs_a_float32_model_that_reproduces_its_figures(store, small_cfg):
    cfg = dataclasses.replace(small_cfg, model="fer_compact", crop=40, precision="mixed_bfloat16", epochs=1)
    result = training.train(cfg, verbose=0)
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.params["precision"] == "mixed_bfloat16"
    logged = mlflow.keras.load_model(result.model_uri)
    policies = {layer.dtype_policy.name for layer in logged.get_layer("fer_compact").layers}
    assert policies == {"float32"}
    val = fer_data.load_dataset(cfg.data, seed=cfg.seed).splits["val"]
    probs = logged.predict(val.x.astype("float32"), verbose=0)
    assert probs.dtype == np.float32
    assert np.mean(probs.argmax(1) == val.y) == pytest.approx(run.data.metrics["validation_accuracy"], abs=1e-9)
