"""Benchmark parts (b) and (c): train recipes on the real data, time them, read PublicTest.

Each recipe is an `experiments/` preset (plus optional overrides) trained by the one trainer, so
every row is also an MLflow run. A callback measures plain PublicTest accuracy after each epoch for
the time-to-65 % clock only: it never feeds back into training, early stopping or the choice of
weights (those use validation carved from train); its own evaluation time is left off the clock.
"""
from __future__ import annotations

import time

import keras
import numpy as np

from fer_experiments import data as fer_data
from fer_experiments import training
from fer_experiments.config import build_config
from fer_experiments.evaluation.split import evaluate_split
from fer_experiments.tracking import tags

HUMAN_LEVEL = 0.65


class TestClock(keras.callbacks.Callback):
    """Wall-clock minutes (since `start`) and test accuracy, plain and with the recipe's TTA (ten-crop
    for crop training, else flip), at the end of every epoch."""

    def __init__(self, x: np.ndarray, y: np.ndarray, start: float, tta: str):
        super().__init__()
        self.x, self.y, self.start, self.tta, self.excluded, self.trace = x, y, start, tta, 0.0, []

    def on_epoch_end(self, epoch, logs=None):
        t = time.perf_counter()
        m = evaluate_split(self.model, "test", self.x, self.y, tta=(self.tta,)).metrics()
        self.trace.append({"epoch": epoch + 1, "minutes": round((t - self.start - self.excluded) / 60, 3),
                           "test_accuracy": round(m["test_accuracy"], 4),
                           "test_tta_accuracy": round(m[f"test_tta_{self.tta}_accuracy"], 4)})
        self.excluded += time.perf_counter() - t


def parse_recipe(text: str) -> tuple[str, dict]:
    """``preset`` or ``preset:key=value,key=value`` (e.g. ``custom:epochs=10``)."""
    preset, _, rest = text.partition(":")
    overrides = dict(item.split("=", 1) for item in rest.split(",") if item)
    return preset, overrides


def run_recipe(text: str, data: str, *, seed: int = 42) -> dict:
    preset, overrides = parse_recipe(text)
    cfg = build_config(preset, data=data, seed=seed, **overrides)
    splits = fer_data.load_dataset(data, val_fraction=cfg.val_fraction, seed=seed).splits
    test, n_train = splits["test"], len(splits["train"].y)
    start = time.perf_counter()
    clock = TestClock(test.x, test.y, start, "tencrop" if cfg.crop else "flip")
    result = training.train(cfg, callbacks=[clock], extra_tags={tags.BENCHMARK: text}, preset=preset)
    minutes = (time.perf_counter() - start - clock.excluded) / 60
    m = result.metrics
    reached = {key: next((p["minutes"] for p in clock.trace if p[key] >= HUMAN_LEVEL), None)
               for key in ("test_accuracy", "test_tta_accuracy")}
    extra = " ".join(f"-P {k}={v}" for k, v in overrides.items())
    return {
        "recipe": text, "preset": preset, "model": cfg.model, "overrides": overrides,
        "precision": cfg.resolved().precision,
        "epochs": result.epochs_run, "minutes": round(minutes, 2),
        # the run's own speed beside its minutes (this machine's speed varies from hour to hour)
        "train_images_per_second": round(n_train * result.epochs_run / (minutes * 60)),
        "validation_accuracy": m.get("validation_accuracy"),
        "test_accuracy": m.get("test_accuracy"), "test_macro_f1": m.get("test_macro_f1"),
        "test_tta_flip_accuracy": m.get("test_tta_flip_accuracy"),
        "test_tta_tencrop_accuracy": m.get("test_tta_tencrop_accuracy"),
        "minutes_to_65": reached["test_accuracy"], "minutes_to_65_tta": reached["test_tta_accuracy"],
        "clock_tta": clock.tta, "test_trace": clock.trace,
        "run_id": result.run_id, "model_uri": result.model_uri,
        "command": (f"mlflow run . --env-manager local --experiment-name fer2013 -P preset={preset} -P data={data} "
                    f"{extra}").strip(),
    }
