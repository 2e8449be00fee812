"""Strong from-scratch FER nets: stages of 3×3 conv + BatchNorm + ReLU, then max-pooling.

`fer_vgg` is the literature recipe's network (the VGG-style net of Khaireddin & Chen 2021: four stages
of two convolutions, 64→512 channels, two fully connected layers), meant for an accelerator.
`fer_compact` is the same idea sized for 2 CPU cores: half the channels, one convolution in the
40-px stage and global average pooling instead of the big dense layers, ~4× the images/second.

Both take ``input_size``: with ``crop=40`` the trainer trains them on random 40-px windows of the
48-px face and feeds the centre window at inference (see ``training.build_model``).
"""
from __future__ import annotations

import keras
from keras import layers

from . import CLASSES_COUNT, INPUT_SHAPE, register_model

COMPACT_STAGES = ((32, 1), (64, 2), (128, 2), (256, 2))   # (channels, convolutions) per stage
VGG_STAGES = ((64, 2), (128, 2), (256, 2), (512, 2))
VGG_DENSE = (1024, 1024)


@register_model(family="custom", defaults={"aug_strength": 0.5})
def fer_compact(*, dropout: float = 0.3, input_size: int = INPUT_SHAPE[0],
                num_classes: int = CLASSES_COUNT) -> keras.Model:
    """Compact BatchNorm CNN for 2 CPU cores: 4 stages 32→256, global average pooling (~1.2 M params)."""
    return _build(COMPACT_STAGES, (), dropout, input_size, num_classes, name="fer_compact")


@register_model(family="custom", defaults={"aug_strength": 0.5})
def fer_vgg(*, dropout: float = 0.3, input_size: int = INPUT_SHAPE[0],
            num_classes: int = CLASSES_COUNT) -> keras.Model:
    """VGG-style FER net of the literature: 4 stages × 2 conv+BN, 64→512, two dense 1024 (accelerator)."""
    return _build(VGG_STAGES, VGG_DENSE, dropout, input_size, num_classes, name="fer_vgg")


def _build(stages, dense, dropout: float, input_size: int, num_classes: int, *, name: str) -> keras.Model:
    inputs = keras.Input((input_size, input_size, INPUT_SHAPE[2]), name="pixels")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    for i, (filters, convs) in enumerate(stages, start=1):
        for j in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"stage{i}_conv{j}")(x)
            x = layers.BatchNormalization(name=f"stage{i}_bn{j}")(x)
            x = layers.ReLU(name=f"stage{i}_relu{j}")(x)
        if i < len(stages) or dense:
            x = layers.MaxPooling2D(name=f"stage{i}_pool")(x)
    if dense:
        x = layers.Flatten(name="flatten")(x)
        for k, units in enumerate(dense, start=1):
            x = layers.Dropout(dropout, name=f"dense{k}_dropout")(x)
            x = layers.Dense(units, activation="relu", name=f"dense{k}")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)
