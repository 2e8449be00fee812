"""The model registry: every model builds and predicts, transfer models freeze, load and preprocess
as documented, and saved models load with plain Keras. Backbones are built at 32×32 for speed and
never with downloaded weights (this must pass offline)."""
from __future__ import annotations

import socket
import time

import keras
import numpy as np
import pytest

from fer_experiments import models
from fer_experiments.models import transfer

SMALL = 32  # the backbones' minimum input size: fast, and enough to exercise every layer
TRANSFER = [name for name in models.list_models() if models.get_spec(name).blocks]


def _pixels(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *models.INPUT_SHAPE)).astype("float32")


def _build(name, **kw):
    if models.get_spec(name).blocks:
        kw.setdefault("image_size", SMALL)
    kw.setdefault("weights", "none")
    return models.create_model(name, **kw)


@pytest.fixture(scope="module")
def local_weights(tmp_path_factory):
    """A "pretrained" notop weights file per backbone (random, saved locally: nothing is downloaded),
    so freezing can be tested as it happens with ImageNet weights."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in TRANSFER:
        constructor, _ = transfer.BACKBONES[name]
        files[name] = str(folder / f"{name}.weights.h5")
        constructor(include_top=False, weights=None, input_shape=(SMALL, SMALL, 3)).save_weights(files[name])
    return files


@pytest.mark.parametrize("name", models.list_models())
def test_every_model_predicts_probabilities_and_reloads_with_plain_keras(name, tmp_path):
    model = _build(name)
    assert model.input_shape == (None, *models.INPUT_SHAPE)
    x = _pixels()
    probs = np.asarray(model.predict(x, verbose=0))
    assert probs.shape == (2, models.CLASSES_COUNT) and probs.dtype == np.float32
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert models.param_counts(model)["total_params"] == model.count_params()
    # Only Keras's own layers (no Lambda, nothing of ours), so the file loads without this package.
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), probs, atol=1e-6)


def test_registry_metadata():
    assert models.list_models() == ["custom", "custom_aug", "fer_compact", "fer_vgg", "resnet50", "vgg16"]
    assert models.get_spec("fer_compact").takes("input_size") and not models.get_spec("custom").takes("input_size")
    assert models.get_spec("custom").defaults == {"aug_strength": 0.0}
    assert models.get_spec("custom_aug").defaults == {"aug_strength": 0.5}
    assert models.get_spec("resnet50").blocks == ("conv5", "conv4", "conv3", "conv2")
    assert models.get_spec("vgg16").blocks == ("block5", "block4", "block3", "block2", "block1")
    assert all(models.get_spec(n).description for n in models.list_models())


@pytest.mark.parametrize("name", TRANSFER)
def test_unfreeze_trains_more_blocks_from_the_top(name, local_weights):
    blocks = models.get_spec(name).blocks
    counts = []
    for k in range(len(blocks) + 1):
        model = _build(name, unfreeze=k, weights=local_weights[name])
        counts.append(models.param_counts(model))
        if k == 0:
            head = model.get_layer("probabilities").count_params()
    trainable = [c["trainable_params"] for c in counts]
    assert trainable[0] == head  # frozen feature extractor: only the new head learns
    assert all(a < b for a, b in zip(trainable, trainable[1:])), trainable
    assert len({c["total_params"] for c in counts}) == 1
    for c in counts:
        assert c["non_trainable_params"] == c["total_params"] - c["trainable_params"]


@pytest.mark.parametrize("name", TRANSFER)
@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])  # Keras 3 weights file, legacy HDF5 (ImageNet's)
def test_local_weights_file_loads_into_the_backbone(name, suffix, tmp_path):
    constructor, _ = transfer.BACKBONES[name]
    source = constructor(include_top=False, weights=None, input_shape=(SMALL, SMALL, 3))
    path = tmp_path / f"backbone{suffix}"
    source.save_weights(path) if suffix == ".weights.h5" else source.save(path)
    model = models.create_model(name, weights=str(path), image_size=SMALL)
    loaded = model.get_layer(name).get_weights()
    assert len(loaded) == len(source.get_weights())
    for want, got in zip(source.get_weights(), loaded):
        np.testing.assert_array_equal(got, want)


def test_imagenet_uses_the_keras_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(transfer, "host_reachable", lambda *a, **k: pytest.fail("no network check with a cache"))
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SMALL, SMALL, 3))
    (tmp_path / "models").mkdir()
    source.save(tmp_path / "models" / transfer.BACKBONES["vgg16"][1])  # legacy .h5, like Keras's download
    model = models.create_model("vgg16", weights="imagenet", image_size=SMALL)
    np.testing.assert_array_equal(model.get_layer("vgg16").get_weights()[0], source.get_weights()[0])


@pytest.mark.parametrize("name", TRANSFER)
def test_imagenet_without_cache_or_internet_fails_fast(name, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(transfer, "host_reachable", lambda *a, **k: False)  # offline, even on CI
    start = time.monotonic()
    with pytest.raises(models.WeightsError) as err:
        models.create_model(name, weights="imagenet", image_size=SMALL)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "\n" not in message and transfer.BACKBONES[name][1] in message
    assert "unreachable" in message and "weights=none" in message


def test_reachability_check_answers_quickly_when_refused():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert transfer.host_reachable("127.0.0.1", port, timeout=3) is False
    assert time.monotonic() - start < 3


def test_bad_weights_files_raise_weights_error(tmp_path):
    with pytest.raises(models.WeightsError, match="does not exist"):
        models.create_model("vgg16", weights=str(tmp_path / "missing.h5"), image_size=SMALL)
    (tmp_path / "weights.txt").write_text("not weights")
    with pytest.raises(models.WeightsError, match="not a Keras weights file"):
        models.create_model("vgg16", weights=str(tmp_path / "weights.txt"), image_size=SMALL)
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SMALL, SMALL, 3))
    vgg.save(tmp_path / "vgg.h5")
    with pytest.raises(models.WeightsError, match="does not fit resnet50"):
        models.create_model("resnet50", weights=str(tmp_path / "vgg.h5"), image_size=SMALL)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(models.UnknownModelError) as err:
        models.create_model("nope")
    assert str(err.value) == "unknown model 'nope': choose one of custom, custom_aug, fer_compact, fer_vgg, resnet50, vgg16"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name, kw", [
    ("custom", {"dropout": 1.0}), ("custom", {"dropout": -0.1}), ("custom", {"unfreeze": 1}),
    ("resnet50", {"unfreeze": 5}), ("vgg16", {"unfreeze": -1}), ("vgg16", {"image_size": 16}),
    ("custom", {"depth": 3}),
])
def test_out_of_range_settings_raise_one_line(name, kw):
    with pytest.raises(ValueError) as err:
        models.create_model(name, **kw)
    assert "\n" not in str(err.value) and next(iter(kw)) in str(err.value)


def test_custom_ignores_backbone_settings():
    # The trainer passes the same settings to every model; weights/unfreeze mean nothing to a CNN from scratch.
    model = models.create_model("custom", weights="imagenet", image_size=None, unfreeze=None, dropout=None)
    assert model.get_layer("dense_dropout").rate == 0.3


@pytest.mark.parametrize("name", TRANSFER)
def test_in_model_preprocessing_equals_keras_preprocess_input(name):
    model = _build(name)
    preprocess = keras.Model(model.input, model.get_layer("imagenet_preprocess").output)
    gray = _pixels(3)
    rgb = np.repeat(gray, 3, axis=-1)
    resized = np.asarray(keras.layers.Resizing(SMALL, SMALL)(rgb))
    expected = getattr(keras.applications, name).preprocess_input(resized.copy())
    np.testing.assert_allclose(np.asarray(preprocess(gray)), expected, atol=1e-3)
    # And without resizing in between: the fixed Normalization is exactly "caffe" on gray images.
    norm = model.get_layer("imagenet_preprocess")
    np.testing.assert_allclose(np.asarray(norm(rgb)), getattr(keras.applications, name).preprocess_input(rgb.copy()),
                               atol=1e-4)


@pytest.mark.parametrize("name", TRANSFER)
def test_from_scratch_backbones_train_every_layer(name):
    # weights=none: nothing pretrained to keep, so unfreeze does not apply and BatchNorm learns too.
    model = _build(name, unfreeze=0)
    counts = models.param_counts(model)
    bn_stats = sum(int(np.prod(v.shape)) for layer in model.get_layer(name).layers
                   if isinstance(layer, keras.layers.BatchNormalization) for v in (layer.moving_mean, layer.moving_variance))
    assert counts["non_trainable_params"] == bn_stats  # only BN's moving statistics, which fit updates
    assert counts["trainable_params"] == counts["total_params"] - bn_stats


def test_batchnorm_statistics_stay_frozen_while_fine_tuning(local_weights):
    spec = models.get_spec("resnet50")
    net = _build("resnet50", unfreeze=len(spec.blocks), weights=local_weights["resnet50"])
    # fit's training=True overrides the backbone's recorded training=False in Keras 3, so this checks
    # the frozen BN layers. Wrapped like the trainer wraps it (augmenter in front): two levels deep.
    inputs = keras.Input(models.INPUT_SHAPE)
    model = keras.Model(inputs, net(keras.layers.Identity()(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    backbone = net.get_layer("resnet50")
    bn = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and not any(layer.trainable for layer in bn)
    stats = [_numpy(v) for layer in bn for v in (layer.moving_mean, layer.moving_variance)]
    kernel = _numpy(backbone.get_layer("conv5_block3_3_conv").kernel)
    model.train_on_batch(_pixels(4), np.array([0, 1, 2, 3]))
    after = [_numpy(v) for layer in bn for v in (layer.moving_mean, layer.moving_variance)]
    for before, now in zip(stats, after):
        np.testing.assert_array_equal(now, before)
    # ...while the unfrozen convolutions did learn, so the step really reached the backbone.
    assert not np.array_equal(_numpy(backbone.get_layer("conv5_block3_3_conv").kernel), kernel)


def _numpy(variable):
    return np.array(keras.ops.convert_to_numpy(variable))
