"""Benchmark part (a): this project's input pipeline vs the seed notebook's, same model, same batch.

Notebook: ``ImageDataGenerator(rotation_range=20, zoom_range=0.15, horizontal_flip=True)
.flow_from_directory(train/, 48×48 grayscale, batch 64)`` feeding the plain `custom` CNN (PNG decode
and per-image SciPy transforms on every batch). This project: the decoded split in memory and
`custom_aug` (the same CNN with the same augmentation as batched Keras layers inside the graph).
"""
from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from fer_experiments import data as fer_data
from fer_experiments import models, training
from fer_experiments.config import build_config

from . import validity

BATCH = 64
REPEATS = 3


def notebook_generator(folder: str, seed: int = 0):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(rotation_range=20, zoom_range=0.15, horizontal_flip=True)
    return gen.flow_from_directory(str(Path(folder) / "train"), target_size=(48, 48), color_mode="grayscale",
                                   batch_size=BATCH, class_mode="sparse", shuffle=True, seed=seed)


class AugmentOnly(keras.Model):
    """The trainer's augmenter always in training mode, so `predict` runs it compiled, as in `fit`.
    In training the augmented batch goes straight into the network and never leaves the graph, so
    only a per-image mean comes back here: copying every augmented pixel to NumPy would time `predict`'s
    output handling, which training does not do (every pixel still feeds the mean, so none is skipped)."""

    def __init__(self, augmenter, reduce: bool = True):
        super().__init__()
        self.augmenter, self.reduce = augmenter, reduce

    def call(self, x):
        out = self.augmenter(x, training=True)
        return keras.ops.mean(out, axis=(1, 2, 3)) if self.reduce else out


def _interleaved(fns: dict, images: int, repeats: int = REPEATS) -> dict:
    """Images/second of each function per round, timed in turn (A, B, A, B, …) so that load from
    elsewhere on the machine hits both alike."""
    ips = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            ips[name].append(images / (time.perf_counter() - t))
    return ips


def measure(data: str, *, steps: int = 60) -> dict:
    n = steps * BATCH
    t = time.perf_counter()
    train = fer_data.load_dataset(data).splits["train"]
    load_s = time.perf_counter() - t
    x, y = train.x[:n].astype("float32"), train.y[:n]

    cfg = build_config("custom_aug", data=data).resolved()
    ours, _ = training.build_model(cfg)
    aug_only = AugmentOnly(ours.get_layer("augmenter"))
    aug_only.predict(x[:BATCH], batch_size=BATCH, verbose=0)
    full_out = AugmentOnly(ours.get_layer("augmenter"), reduce=False).predict(x[:BATCH], verbose=0)
    assert not np.allclose(full_out, x[:BATCH]), "augmenter inactive"

    gen = notebook_generator(data)
    next(gen)
    pipe = _interleaved({"ours": lambda: aug_only.predict(x, batch_size=BATCH, verbose=0),
                         "notebook": lambda: [next(gen) for _ in range(steps)]}, n)

    plain = models.create_model("custom", dropout=cfg.dropout)
    for model in (ours, plain):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours.fit(x[:4 * BATCH], y[:4 * BATCH], batch_size=BATCH, epochs=1, verbose=0)   # compile outside the clock
    plain.fit(gen, steps_per_epoch=4, epochs=1, verbose=0)
    train = _interleaved({"ours": lambda: ours.fit(x, y, batch_size=BATCH, epochs=1, verbose=0),
                          "notebook": lambda: plain.fit(gen, steps_per_epoch=steps, epochs=1, verbose=0)}, n)
    figs = {}
    for what, ips in (("pipeline", pipe), ("train", train)):
        ours, notebook = validity.summarize(ips["ours"]), validity.summarize(ips["notebook"])
        figs.update({f"ours_{what}_ips": ours, f"notebook_{what}_ips": notebook,
                     f"{what}_ratio": validity.ab(ours, notebook, names=("ours", "notebook"))})
    return {"batch_size": BATCH, "images_timed": n, "repeats": REPEATS, "rules": validity.RULES,
            "decode_and_load_s": round(load_s, 2), **figs}
