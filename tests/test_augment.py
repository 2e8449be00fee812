"""One augmentation knob: the notebook's settings at 0.5, more above, nothing at 0, and never at inference."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from fer_experiments import augment, models


def _pixels(n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *models.INPUT_SHAPE)).astype("float32")


def test_zero_strength_means_no_augmenter():
    assert augment.build_augmenter(0.0) is None
    assert augment.build_augmenter(0, erasing=True) is None
    assert not any(dataclasses.asdict(augment.resolve(0.0, erasing=True)).values())


def test_half_strength_is_the_notebooks_image_data_generator():
    p = augment.resolve(0.5)
    assert p == augment.AugParams(flip=True, rotation_deg=20.0, zoom=0.15, translation=0.0, contrast=0.0,
                                  brightness=0.0, erasing=0.0)
    layers = {layer.name: layer for layer in augment.build_augmenter(0.5).layers}
    assert list(layers) == ["flip", "rotation", "zoom", "clip_0_255"]
    assert layers["flip"].get_config()["mode"] == "horizontal"
    np.testing.assert_allclose(layers["rotation"].get_config()["factor"], (-20 / 360, 20 / 360))
    assert layers["zoom"].get_config()["height_factor"] == (-0.15, 0.15)
    assert layers["zoom"].get_config()["width_factor"] == (-0.15, 0.15)


def test_full_strength_is_the_maximum():
    assert augment.resolve(1.0, erasing=True) == augment.AugParams(
        flip=True, rotation_deg=40.0, zoom=0.3, translation=0.15, contrast=0.3, brightness=0.2, erasing=0.5)
    assert augment.resolve(1.0).erasing == 0.0  # erasing only when asked for
    names = [layer.name for layer in augment.build_augmenter(1.0, erasing=True).layers]
    assert names == ["flip", "rotation", "zoom", "translation", "contrast", "brightness", "erasing", "clip_0_255"]


def test_every_setting_grows_with_strength():
    grid = [dataclasses.asdict(augment.resolve(s / 10, erasing=True)) for s in range(11)]
    for key in grid[0]:
        values = [row[key] for row in grid]
        assert values == sorted(values), key


@pytest.mark.parametrize("strength", [-0.1, 1.01, float("nan")])
def test_out_of_range_strength_raises(strength):
    with pytest.raises(ValueError, match="aug_strength") as err:
        augment.resolve(strength)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError):
        augment.build_augmenter(strength)


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_augments_in_training_and_is_identity_at_inference(strength):
    augmenter = augment.build_augmenter(strength, erasing=True, seed=0)
    x = _pixels()
    trained = np.asarray(augmenter(x, training=True))
    assert trained.shape == x.shape
    assert trained.min() >= 0 and trained.max() <= 255
    assert not np.allclose(trained, x)
    np.testing.assert_array_equal(np.asarray(augmenter(x, training=False)), x)


def test_seeded_augmenters_repeat_themselves():
    x = _pixels()
    first = augment.build_augmenter(1.0, erasing=True, seed=7)(x, training=True)
    second = augment.build_augmenter(1.0, erasing=True, seed=7)(x, training=True)
    np.testing.assert_allclose(np.asarray(first), np.asarray(second))


def test_augmenter_in_front_of_a_model_saves_and_predicts_like_the_bare_model(tmp_path):
    net = models.create_model("custom_aug")
    augmenter = augment.build_augmenter(1.0, erasing=True, seed=0)
    inputs = keras.Input(models.INPUT_SHAPE)
    model = keras.Model(inputs, net(augmenter(inputs)))  # as the trainer builds it
    x = _pixels(4)
    np.testing.assert_allclose(model.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)
    model.save(tmp_path / "with_aug.keras")
    reloaded = keras.saving.load_model(tmp_path / "with_aug.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), net.predict(x, verbose=0), atol=1e-6)
