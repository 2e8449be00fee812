"""Training-time augmentation with one knob, ``aug_strength`` s ∈ [0, 1]; 0 = none.

All augmentations scale together. The mapping is piecewise so that s = 0.5 is EXACTLY the seed
notebook's ``ImageDataGenerator(rotation_range=20, zoom_range=0.15, horizontal_flip=True)``, and
s > 0.5 adds the augmentations the notebook did not have:

==================  ======================  =======  =======  ==============================
augmentation        value at s              s = 0.5  s = 1    Keras layer
==================  ======================  =======  =======  ==============================
horizontal flip     on for s > 0            on       on       RandomFlip("horizontal")
rotation (degrees)  40·s                    20       40       RandomRotation(deg / 360)
zoom (fraction)     0.3·s                   0.15     0.3      RandomZoom(±z, ±z)
translation         0.15·max(0, 2s − 1)     0        0.15     RandomTranslation(±t, ±t)
contrast            0.3·max(0, 2s − 1)      0        0.3      RandomContrast(c)
brightness          0.2·max(0, 2s − 1)      0        0.2      RandomBrightness(b), of 0..255
erasing (prob.)     0.5·s if erasing=True   0.25     0.5      RandomErasing((p, p))
==================  ======================  =======  =======  ==============================

Like ImageDataGenerator, zoom scales height and width independently and geometric transforms fill
with the nearest pixel. Inputs and outputs are float pixel values 0..255, shape (N, 48, 48, 1); the
result is clipped to 0..255. The augmenter is a ``keras.Sequential`` the trainer puts in front of
the network, so it runs batched inside the graph (any backend) and is the identity at inference.

Crop training (``crop=40``) is a random shift of up to ±(48 − crop)/2 px per image here, followed by
a centre crop in the model (``training.build_model``): together a random crop×crop window in
training and the centre window at inference. `Batches` does mixup, which needs the labels and so
lives in the batch feed rather than in the graph.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from .errors import UserError

ROTATION_MAX_DEG = 40.0
ZOOM_MAX = 0.3
TRANSLATION_MAX = 0.15
CONTRAST_MAX = 0.3
BRIGHTNESS_MAX = 0.2
ERASING_MAX = 0.5
VALUE_RANGE = (0.0, 255.0)
FILL_MODE = "nearest"  # ImageDataGenerator's default


@dataclass(frozen=True)
class AugParams:
    """Resolved augmentation settings; the trainer logs ``dataclasses.asdict`` of it as params."""

    flip: bool
    rotation_deg: float
    zoom: float
    translation: float
    contrast: float
    brightness: float
    erasing: float


def resolve(strength: float, erasing: bool = False) -> AugParams:
    """The table in the module docstring, for one strength."""
    if not 0 <= strength <= 1:
        raise UserError(f"aug_strength={strength!r} is out of range: it must be in [0, 1] (0.5 = the notebook's)")
    extra = max(0.0, 2 * strength - 1)  # grows 0 → 1 over the upper half only
    return AugParams(
        flip=strength > 0,
        rotation_deg=round(ROTATION_MAX_DEG * strength, 6),
        zoom=round(ZOOM_MAX * strength, 6),
        translation=round(TRANSLATION_MAX * extra, 6),
        contrast=round(CONTRAST_MAX * extra, 6),
        brightness=round(BRIGHTNESS_MAX * extra, 6),
        erasing=round(ERASING_MAX * strength, 6) if erasing else 0.0,
    )


def build_augmenter(strength: float, *, erasing: bool = False, crop: int = 0, size: int = 48,
                    seed: int | None = None) -> keras.Sequential | None:
    """A Sequential of Keras preprocessing layers for `strength` (and crop training), or None when it
    does nothing."""
    params = resolve(strength, erasing)
    if strength == 0 and not crop:
        return None
    # Distinct seeds per layer, so seeded layers don't draw correlated random numbers.
    seeds = itertools.repeat(None) if seed is None else itertools.count(seed)
    stack = _layers(params, seeds)
    if crop:
        # Whole-pixel shifts of up to the crop margin: the centre crop×crop window then lands on any
        # crop×crop window of the face, and the padding never enters it.
        shift = ((size - crop) // 2) / size
        stack.append(layers.RandomTranslation((-shift, shift), (-shift, shift), fill_mode=FILL_MODE,
                                              interpolation="nearest", seed=next(seeds), name="crop_shift"))
    # Interpolation and contrast can step slightly outside the pixel range; ReLU(max_value) is a
    # built-in, serialisable clip to 0..255 (and the identity on valid inputs at inference).
    stack.append(layers.ReLU(max_value=VALUE_RANGE[1], name="clip_0_255"))
    if keras.backend.backend() == "jax":
        # Keras marks RandomZoom/RandomTranslation as not XLA-compilable because TensorFlow's image
        # transform op has no XLA kernel; on JAX they are plain jax.numpy and compile fine. Left
        # unmarked, one of them makes the whole JAX step run uncompiled, op by op (on CPU 1.15x slower,
        # and data-parallel all-reduces outside XLA deadlocked on virtual CPU devices).
        for layer in stack:
            layer.supports_jit = True
    return keras.Sequential(stack, name="augmenter")


def _layers(p: AugParams, seeds: Iterator) -> list[keras.layers.Layer]:
    geometric = {"fill_mode": FILL_MODE}
    photometric = {"value_range": VALUE_RANGE}
    stack = [layers.RandomFlip("horizontal", seed=next(seeds), name="flip")] if p.flip else []
    if p.rotation_deg:
        stack.append(layers.RandomRotation(p.rotation_deg / 360, **geometric, seed=next(seeds), name="rotation"))
    if p.zoom:
        zoom = (-p.zoom, p.zoom)
        stack.append(layers.RandomZoom(zoom, zoom, **geometric, seed=next(seeds), name="zoom"))
    if p.translation:
        shift = (-p.translation, p.translation)
        stack.append(layers.RandomTranslation(shift, shift, **geometric, seed=next(seeds), name="translation"))
    if p.contrast:
        stack.append(layers.RandomContrast(p.contrast, **photometric, seed=next(seeds), name="contrast"))
    if p.brightness:
        stack.append(layers.RandomBrightness(p.brightness, **photometric, seed=next(seeds), name="brightness"))
    if p.erasing:
        probability = (p.erasing, p.erasing)  # a single float would mean "sampled from [0, p]"
        stack.append(layers.RandomErasing(probability, **photometric, seed=next(seeds), name="erasing"))
    return stack


class Batches(keras.utils.PyDataset):
    """Shuffled training batches from in-memory arrays, for what `fit` on arrays cannot do:

    - mixup (Zhang et al. 2018, ``alpha`` > 0): each image and its one-hot label are blended with
      another image of the batch, weight λ ~ Beta(α, α) per image, vectorised in NumPy;
    - ``full_batches``: every batch has exactly `batch_size` images (the epoch's remainder, fewer than
      one batch, is left out and changes with each epoch's shuffle), so data parallelism can split
      every batch evenly over the devices;
    - ``sample_weight``: per-image weights (class weights), yielded beside each batch;
    - ``shard=(i, n)``: only the i-th of n equal slices of every (global) batch, for one of n processes
      that shuffle alike: together they feed each batch exactly once (`training.processes`).

    Labels are one-hot when mixing, else as given. Every batch draws from its own generator seeded
    by (seed, epoch, index): reproducible and safe under Keras's worker threads."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, num_classes: int, alpha: float = 0.0,
                 seed: int = 0, full_batches: bool = False, onehot: bool = False,
                 sample_weight: np.ndarray | None = None, shard: tuple[int, int] = (0, 1), **kwargs):
        super().__init__(**kwargs)
        if shard[1] > 1 and (not full_batches or batch_size % shard[1]):
            raise ValueError(f"shard {shard} needs full batches that split into {shard[1]} equal slices")
        self.shard = shard
        self.x = x
        self.labels = np.eye(num_classes, dtype="float32")[y] if alpha or onehot else y
        self.batch_size, self.alpha, self.seed, self.epoch = batch_size, alpha, seed, 0
        self.full_batches, self.sample_weight = full_batches, sample_weight
        self.order = self._order()

    def _order(self) -> np.ndarray:
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.x))

    def __len__(self) -> int:
        return len(self.x) // self.batch_size if self.full_batches else math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int):
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = self.x[idx].astype("float32"), self.labels[idx]
        if self.alpha:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            lam = rng.beta(self.alpha, self.alpha, size=len(idx)).astype("float32")
            partner = rng.permutation(len(idx))
            x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[partner]
            y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
        batch = (x, y) if self.sample_weight is None else (x, y, self.sample_weight[idx])
        i, n = self.shard
        if n == 1:
            return batch
        local = self.batch_size // n  # mixed over the whole batch first, so n processes see one process's batch
        return tuple(part[i * local:(i + 1) * local] for part in batch)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
