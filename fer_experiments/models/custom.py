"""The seed notebook's small CNN, trained from scratch on 48×48 grayscale faces.

`custom` and `custom_aug` are the same network; they differ only in their default augmentation
strength, which the trainer applies in front of the network (see `fer_experiments.augment`).
"""
from __future__ import annotations

import keras
from keras import layers

from . import CLASSES_COUNT, INPUT_SHAPE, register_model

FILTERS = (32, 64, 128)
DENSE_UNITS = 256


@register_model(family="custom", defaults={"aug_strength": 0.0})
def custom(*, dropout: float = 0.3, num_classes: int = CLASSES_COUNT) -> keras.Model:
    """Baseline CNN from the seed notebook: 3 conv blocks (32/64/128) + dense 256, no augmentation."""
    return _build_custom(dropout, num_classes, name="custom")


@register_model(family="custom", defaults={"aug_strength": 0.5})
def custom_aug(*, dropout: float = 0.3, num_classes: int = CLASSES_COUNT) -> keras.Model:
    """The baseline CNN trained with the notebook's augmentation (aug_strength 0.5)."""
    return _build_custom(dropout, num_classes, name="custom_aug")


def _build_custom(dropout: float, num_classes: int, *, name: str) -> keras.Model:
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    # Scaling lives inside the model so every caller feeds raw 0..255 pixels, as for the backbones.
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    for i, filters in enumerate(FILTERS, start=1):
        x = _conv_block(x, filters, dropout, name=f"block{i}")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(DENSE_UNITS, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dense_dropout")(x)
    # float32 output keeps softmax and the loss stable if mixed precision is switched on later.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _conv_block(x, filters: int, dropout: float, *, name: str):
    for j in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv{j}")(x)
    x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x)
