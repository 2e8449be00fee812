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


# Parameter counts by hand, from the published architectures' layer widths (not from Keras), so that
# param_counts is checked against something that does not add up weight shapes the way it does.
def _conv(k, c_in, c_out):
    """A k×k convolution with bias: kernel k·k·c_in·c_out plus one bias per output channel."""
    return k * k * c_in * c_out + c_out


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def _vgg16_by_hand():
    """VGG16 without its top (Simonyan & Zisserman, configuration D): 3×3 convolutions (c_in, c_out)
    per block, no BatchNorm, no stem outside the blocks; 512 feature maps."""
    widths = {"block1": [(3, 64), (64, 64)], "block2": [(64, 128), (128, 128)],
              "block3": [(128, 256), (256, 256), (256, 256)], "block4": [(256, 512), (512, 512), (512, 512)],
              "block5": [(512, 512), (512, 512), (512, 512)]}
    blocks = {block: sum(_conv(3, c_in, c_out) for c_in, c_out in convs) for block, convs in widths.items()}
    return {"stem": 0, "blocks": blocks, "bn_channels": 0, "features": 512}


def _resnet50_by_hand():
    """ResNet50 v1 without its top (He et al. 2016): stem conv1 7×7 3→64 + BN; stages conv2..conv5 of
    (3, 4, 6, 3) bottlenecks 1×1 c→f, 3×3 f→f, 1×1 f→4f, each convolution with bias and followed by a
    BN; the first bottleneck of a stage adds a 1×1 c→4f projection shortcut + BN; 2048 feature maps.
    `blocks` counts the convolutions only: BatchNorm never trains when a pretrained backbone fine-tunes."""
    stem, bn_channels, blocks, c = _conv(7, 3, 64), 64, {}, 64
    for stage, (f, depth) in {"conv2": (64, 3), "conv3": (128, 4), "conv4": (256, 6), "conv5": (512, 3)}.items():
        blocks[stage] = _conv(1, c, 4 * f)  # the projection shortcut
        bn_channels += 4 * f
        for _ in range(depth):
            blocks[stage] += _conv(1, c, f) + _conv(3, f, f) + _conv(1, f, 4 * f)
            bn_channels += f + f + 4 * f
            c = 4 * f
    return {"stem": stem, "blocks": blocks, "bn_channels": bn_channels, "features": 2048}


BY_HAND = {"vgg16": _vgg16_by_hand, "resnet50": _resnet50_by_hand}


def _batchnorm_channels(model):
    """Sum of the channel counts BatchNorm normalises, read off each BN layer's input shape along its
    `axis` (the graph's shapes, not the BN weights), nested models included."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += _batchnorm_channels(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            total += layer.input.shape[layer.axis]
    return total


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
    counts = models.param_counts(model)
    assert counts["total_params"] == model.count_params()
    # Built from scratch, only BatchNorm's moving mean and variance (one each per channel) do not train.
    assert counts["non_trainable_params"] == 2 * _batchnorm_channels(model)
    # Only Keras's own layers (no Lambda, nothing of ours), so the file loads without this package.
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), probs, atol=1e-6)


@pytest.mark.parametrize("name, classes", [("custom", 7), ("custom_aug", 3)])
def test_seed_cnn_parameter_count_by_hand(name, classes):
    # models/custom.py: three blocks of two 3×3 "same" convolutions (32, 64, 128 filters) on a 1-channel
    # 48×48 face, each block max-pooled 2×2 (48 → 24 → 12 → 6 px); flatten 6·6·128; dense 256; dense
    # `classes`. Dropout, pooling, flatten and rescaling hold no weights. 1 468 135 for 7 classes.
    convs = (_conv(3, 1, 32) + _conv(3, 32, 32) + _conv(3, 32, 64) + _conv(3, 64, 64)
             + _conv(3, 64, 128) + _conv(3, 128, 128))
    by_hand = convs + _dense(6 * 6 * 128, 256) + _dense(256, classes)
    model = models.create_model(name, num_classes=classes)
    counts = models.param_counts(model)
    assert counts["total_params"] == by_hand
    assert model.count_params() == by_hand
    assert counts["trainable_params"] == by_hand and counts["non_trainable_params"] == 0  # no BatchNorm, nothing frozen


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
    blocks = models.get_spec(name).blocks  # top first
    hand = BY_HAND[name]()
    head = _dense(hand["features"], models.CLASSES_COUNT)  # GAP → dropout → Dense(7): features·7 + 7
    trainable = []
    for k in range(len(blocks) + 1):
        model = _build(name, unfreeze=k, weights=local_weights[name])
        counts = models.param_counts(model)
        unfrozen, frozen = blocks[:k], blocks[k:]
        # k = 0: frozen feature extractor, only the new head learns. The stem and every BatchNorm
        # (gamma, beta, moving mean and variance: 4 per channel) stay frozen for every k.
        assert counts["trainable_params"] == head + sum(hand["blocks"][b] for b in unfrozen), (k, counts)
        assert counts["non_trainable_params"] == (hand["stem"] + sum(hand["blocks"][b] for b in frozen)
                                                  + 4 * hand["bn_channels"]), (k, counts)
        assert counts["total_params"] == model.count_params()
        trainable.append(counts["trainable_params"])
    assert all(a < b for a, b in zip(trainable, trainable[1:])), trainable


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
    hand = BY_HAND[name]()
    channels = _batchnorm_channels(model.get_layer(name))
    assert channels == hand["bn_channels"]
    # Only BN's moving mean and variance (one each per channel), which fit updates, are non-trainable...
    assert counts["non_trainable_params"] == 2 * channels
    # ...and everything else trains: stem, every block, BN's gamma and beta, the head.
    head = _dense(hand["features"], models.CLASSES_COUNT)
    assert counts["trainable_params"] == (hand["stem"] + sum(hand["blocks"].values()) + 2 * hand["bn_channels"]
                                          + head)


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
