"""ImageNet backbones (keras.applications) with a new 7-class head, adapted to 48×48 grayscale.

The adaptation lives inside the model and uses built-in, serialisable layers only (no Lambda, no
custom layers), so a saved ``.keras`` file loads anywhere with plain Keras:

    gray (48, 48, 1) → Concatenate ×3 → Resizing(image_size) → Normalization(ImageNet BGR mean)
    → backbone(training=False) → GlobalAveragePooling2D → Dropout → Dense(7, softmax, float32)

Both families use Keras's "caffe" ``preprocess_input``: RGB→BGR, then subtract the ImageNet mean
[103.939, 116.779, 123.68] (BGR order), no scaling. A gray image repeated to three channels is the
same in RGB and BGR order, so the flip is a no-op and a fixed ``Normalization`` (variance 1) is exact.

With ``weights=none`` the backbone is trained from scratch: every layer trains, BatchNormalization
included (the trainer records ``unfreeze`` as all blocks). With pretrained weights,
``unfreeze`` = how many of the backbone's TOP blocks train; blocks are Keras layer-name prefixes
(``conv4_block2_1_conv`` belongs to "conv4", ``block3_conv1`` to "block3"); the stem (conv1) never trains.
BatchNormalization must keep its ImageNet moving statistics while blocks fine-tune. The backbone is
called with ``training=False`` as Keras's transfer-learning guide says, but in Keras 3 a Functional
model replaces that recorded value with the outer call's ``training=True`` during ``fit``
(keras-team/keras#20285). What actually holds BN in inference mode is ``trainable=False`` on every
BN layer (Keras 3 BN only uses batch statistics when ``training and self.trainable``), as in Keras's
EfficientNet fine-tuning example; so BN's gamma/beta stay frozen too.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import keras
from keras import layers

from . import CLASSES_COUNT, INPUT_SHAPE, WeightsError, get_spec, register_model

IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
WEIGHTS_HOST = ("storage.googleapis.com", 443)
REACH_TIMEOUT_S = 3.0
# What keras.saving.load_weights reads (".weights.h5" ends in ".h5"); the ImageNet files are legacy .h5.
WEIGHT_SUFFIXES = (".h5", ".hdf5", ".keras", ".weights.json")
# Backbone constructor and the notop file name Keras caches under $KERAS_HOME/models/.
BACKBONES = {
    "resnet50": (keras.applications.ResNet50, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg16": (keras.applications.VGG16, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


@register_model(family="resnet50", blocks=("conv5", "conv4", "conv3", "conv2"), defaults={"image_size": 96})
def resnet50(*, dropout: float = 0.3, unfreeze: int = 0, weights: str = "none", image_size: int = 96,
             num_classes: int = CLASSES_COUNT) -> keras.Model:
    """ResNet50 backbone + GAP/dropout/dense head; gray→3 channels, resized, caffe preprocessing in-model."""
    return _build_transfer("resnet50", dropout, unfreeze, weights, image_size, num_classes)


@register_model(family="vgg16", blocks=("block5", "block4", "block3", "block2", "block1"),
                defaults={"image_size": 96})
def vgg16(*, dropout: float = 0.3, unfreeze: int = 0, weights: str = "none", image_size: int = 96,
          num_classes: int = CLASSES_COUNT) -> keras.Model:
    """VGG16 backbone + GAP/dropout/dense head; gray→3 channels, resized, caffe preprocessing in-model."""
    return _build_transfer("vgg16", dropout, unfreeze, weights, image_size, num_classes)


def _build_transfer(name: str, dropout: float, unfreeze: int, weights: str, image_size: int,
                    num_classes: int) -> keras.Model:
    backbone = _load_backbone(name, weights, image_size)
    if weights in (None, "none"):
        # From scratch: nothing pretrained to protect, so every layer trains, BatchNorm statistics too.
        backbone.trainable = True
    else:
        set_trainable_blocks(backbone, get_spec(name).blocks[:unfreeze])
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    x = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    x = layers.Resizing(image_size, image_size, name="resize")(x)
    x = layers.Normalization(mean=IMAGENET_BGR_MEAN, variance=(1.0, 1.0, 1.0), name="imagenet_preprocess")(x)
    # Inference mode for direct calls; during fit the frozen BN layers are what keep it (docstring).
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def set_trainable_blocks(backbone: keras.Model, blocks: tuple[str, ...]) -> None:
    """Train exactly the layers of `blocks` (name prefixes), BatchNormalization excepted; the rest stays frozen."""
    if not blocks:
        backbone.trainable = False
        return
    backbone.trainable = True
    prefixes = tuple(f"{block}_" for block in blocks)
    for layer in backbone.layers:
        frozen_bn = isinstance(layer, layers.BatchNormalization)  # keeps BN in inference mode under fit
        layer.trainable = layer.name.startswith(prefixes) and not frozen_bn


def _load_backbone(name: str, weights: str, image_size: int) -> keras.Model:
    constructor, _ = BACKBONES[name]
    source = resolve_weights(name, weights)
    try:
        return constructor(include_top=False, weights=source, input_shape=(image_size, image_size, 3))
    except (ValueError, KeyError, OSError) as exc:
        if source in (None, "imagenet"):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":. ")
        raise WeightsError(f"weights file '{source}' does not fit {name} (include_top=False): {reason}; pass a file "
                           f"saved from keras.applications {name} with include_top=False, or weights=none") from None


def resolve_weights(name: str, weights: str | None) -> str | None:
    """What to hand the keras.applications constructor: None, "imagenet" or a local file path."""
    if weights is None or weights == "none":
        return None
    if weights == "imagenet":
        return _imagenet_source(name)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file '{weights}' does not exist: pass weights=imagenet, weights=none, "
                           f"or the path to a local {name} notop weights file (e.g. {BACKBONES[name][1]})")
    if not str(path).endswith(WEIGHT_SUFFIXES):
        raise WeightsError(f"weights file '{weights}' is not a Keras weights file: "
                           f"use one ending in {', '.join(WEIGHT_SUFFIXES)} (.weights.h5 included)")
    return str(path)


def _imagenet_source(name: str) -> str:
    """The cached ImageNet file if there is one, else "imagenet" (Keras downloads) — or fail fast offline."""
    file_name = BACKBONES[name][1]
    candidates = [home / "models" / file_name for home in _keras_homes()]
    for cached in candidates:
        if cached.is_file():
            return str(cached)
    if host_reachable(*WEIGHTS_HOST):
        return "imagenet"
    raise WeightsError(f"ImageNet weights for {name} are not cached ({candidates[0]}) and {WEIGHTS_HOST[0]} is "
                       "unreachable: run once where the internet is reachable, copy the file there, "
                       "pass weights=<path to a local weights file>, or weights=none")


def _keras_homes() -> list[Path]:
    # Read at call time (Keras reads KERAS_HOME once at import); /tmp/.keras is Keras's own
    # fallback when the home directory is not writable.
    if os.environ.get("KERAS_HOME"):
        return [Path(os.environ["KERAS_HOME"]).expanduser()]
    return [Path("~/.keras").expanduser(), Path("/tmp/.keras")]


def host_reachable(host: str, port: int, timeout: float = REACH_TIMEOUT_S) -> bool:
    """One TCP connect, so an offline machine fails in seconds instead of hanging in a download."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
