"""The strong-recipe options: crop training + ten-crop, mixup, label smoothing, schedules, ensembles."""
from __future__ import annotations

import keras
import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import all_runs

from fer_experiments import augment, models
from fer_experiments import data as fer_data
from fer_experiments.cli import main
from fer_experiments.config import ConfigError, build_config
from fer_experiments.evaluation.tta import TENCROP_SHIFT, predict_views, shift
from fer_experiments.training import build_model, learning_rate, shrink


def _faces(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48, 1)).astype("float32")


def test_crop_training_sees_random_40px_windows_and_predicts_on_the_centre_one():
    cfg = build_config(None, model="fer_compact", crop=40, aug_strength=0).resolved()
    model, _ = build_model(cfg)
    x = _faces(32)
    front = keras.Model(model.input, model.get_layer("centre_crop").output)
    seen = keras.ops.convert_to_numpy(front(x, training=True))
    assert seen.shape == (32, 40, 40, 1)
    offsets = []
    for img, window in zip(x, seen):
        hits = [(a, b) for a in range(9) for b in range(9) if np.array_equal(img[a:a + 40, b:b + 40], window)]
        assert hits, "a training view is not a 40-px window of the face"
        offsets.append(hits[0])
    assert len(set(offsets)) > 3                                 # windows differ from image to image
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(front(x, training=False)), x[:, 4:44, 4:44])
    assert model.input.shape[1:] == (48, 48, 1)                  # callers still feed 48-px faces


def test_tencrop_views_are_the_corner_and_centre_crops():
    x = _faces(2)
    s = TENCROP_SHIFT
    for dy, dx, rows, cols in ((s, s, slice(0, 40), slice(0, 40)), (-s, -s, slice(8, 48), slice(8, 48)),
                               (s, -s, slice(0, 40), slice(8, 48))):
        np.testing.assert_array_equal(shift(x, dy, dx)[:, 4:44, 4:44], x[:, rows, cols])


def test_ensemble_and_tta_average_probabilities():
    a = models.create_model("fer_compact", input_size=48)
    b = models.create_model("custom")
    x = _faces(4)
    pa, pb = a.predict(x, verbose=0), b.predict(x, verbose=0)
    np.testing.assert_allclose(predict_views([a, b], x), (pa + pb) / 2, atol=1e-5)
    flip = (pa + a.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(predict_views(a, x, "flip"), flip, atol=1e-5)
    ten = predict_views(a, x, "tencrop")
    np.testing.assert_allclose(ten.sum(axis=1), 1, atol=1e-5)
    assert not np.allclose(ten, flip)


def test_mixup_batches_blend_images_and_labels_alike():
    x = _faces(10).astype("uint8")
    y = np.arange(10)                              # one class per image: a label names its images
    feed = augment.Batches(x, y, batch_size=4, alpha=0.4, num_classes=10, seed=3)
    assert len(feed) == 3
    xb, yb = feed[0]
    assert xb.shape == (4, 48, 48, 1) and yb.shape == (4, 10)
    np.testing.assert_allclose(yb.sum(axis=1), 1, atol=1e-6)
    assert (yb > 0).sum() > 4                      # some labels are mixtures
    for img, lab in zip(xb, yb):                   # image = λ·a + (1−λ)·b with the label's own weights
        expected = sum(w * x[c].astype("float32") for c, w in enumerate(lab) if w > 0)
        np.testing.assert_allclose(img, expected, atol=1e-2)
    again = augment.Batches(x, y, batch_size=4, alpha=0.4, num_classes=10, seed=3)[0]
    np.testing.assert_array_equal(again[0], xb)    # reproducible from the seed
    feed.on_epoch_end()
    assert not np.array_equal(feed[0][0], xb)      # a new epoch, new order and mixtures


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_schedules_warm_up_and_anneal(schedule):
    cfg = build_config(None, epochs=10, learning_rate=0.1, schedule=schedule, warmup_epochs=2)
    lr = learning_rate(cfg, steps_per_epoch=10)
    values = [float(lr(step)) for step in (0, 20, 30, 99)]
    assert values[0] < 0.1 / 10 and max(values) == pytest.approx(0.1, rel=1e-3) and values[-1] < 0.01


@pytest.mark.parametrize("overrides, needle", [
    ({"model": "resnet50", "crop": 40}, "crop"),
    ({"model": "fer_compact", "crop": 48}, "crop"),
    ({"schedule": "step"}, "schedule"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"mixup": -1}, "mixup"),
])
def test_recipe_options_out_of_range(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config(None, **overrides)


@pytest.mark.slow
def test_strong_recipe_trains_and_logs_tencrop(in_shared_store, tmp_path):
    cfg, result = in_shared_store.cfg, in_shared_store.result  # crops, mixup, erasing, one-cycle
    run = mlflow.MlflowClient().get_run(result.run_id)
    m = run.data.metrics
    # plain and flip accuracy recomputed from the model itself; ten-crop's views have their own test below
    test = shrink(fer_data.load_dataset(cfg.data, seed=cfg.seed), cfg.limit, cfg.seed).splits["test"]
    x, y = test.x.astype("float32"), test.y
    plain = result.model.predict(x, verbose=0)
    flipped = result.model.predict(x[:, :, ::-1], verbose=0)
    assert m["test_accuracy"] == pytest.approx(np.mean(plain.argmax(1) == y), abs=1e-9)
    assert m["test_tta_flip_accuracy"] == pytest.approx(np.mean((plain + flipped).argmax(1) == y), abs=1e-9)
    assert {"test_tta_tencrop_accuracy", "validation_tta_tencrop_accuracy"} <= set(m)
    assert run.data.params["crop"] == "40" and run.data.params["schedule"] == "onecycle"
    lrs = [p.value for p in mlflow.MlflowClient().get_metric_history(result.run_id, "epoch/learning_rate")]
    assert len(lrs) == 2 and lrs[0] != lrs[1]                       # a per-step schedule, not a constant
    # the same model, evaluated by the CLI as a two-model ensemble (with itself), logs what it measured
    path = tmp_path / "m.keras"
    result.model.save(path)
    out = CliRunner().invoke(main, ["evaluate", result.model_uri, str(path), "--data", cfg.data, "--split", "test"],
                             catch_exceptions=False).output
    assert "tencrop-TTA accuracy" in out
    ev = [r for r in all_runs() if r.data.tags.get("fer.run_kind") == "evaluation" and r.data.params["n_models"] == "2"]
    assert len(ev) == 1
    assert ev[0].data.metrics["test_accuracy"] == pytest.approx(m["test_accuracy"], abs=1e-9)
    assert ev[0].data.metrics["test_tta_tencrop_accuracy"] == pytest.approx(m["test_tta_tencrop_accuracy"], abs=1e-9)


@pytest.mark.parametrize("crop", [32, 40, 44])
def test_tencrop_views_are_the_corner_windows_of_any_crop(crop):
    # A model trained with `crop` predicts on its centre crop×crop window; ten-crop must show it the
    # four corner windows too, whatever the crop (not only the ±4 px of crop = 40).
    from fer_experiments.evaluation import tta as metrics

    inputs = keras.Input((48, 48, 1))
    window = keras.layers.CenterCrop(crop, crop, name="centre_crop")(inputs)
    model = keras.Model(inputs, keras.layers.Flatten()(window))
    assert metrics.tencrop_shift(model) == (48 - crop) // 2
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32")
    seen = metrics._views(x, "tencrop", metrics.tencrop_shift(model))
    corners = [x[:, :crop, :crop], x[:, :crop, -crop:], x[:, -crop:, :crop], x[:, -crop:, -crop:]]
    got = [np.asarray(model.predict(v, verbose=0)).reshape(2, crop, crop, 1) for v in seen[1:5]]
    for corner in corners:
        assert any(np.array_equal(corner, g) for g in got)
