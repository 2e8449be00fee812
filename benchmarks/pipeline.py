"""Benchmark part (a): this project's input pipeline vs the seed notebook's, same model, same batch.

Notebook: ``ImageDataGenerator(rotation_range=20, zoom_range=0.15, horizontal_flip=True)
.flow_from_directory(train/, 48×48 grayscale, batch 64)`` feeding the plain `custom` CNN (PNG decode
and per-image SciPy transforms on every batch). This project: the decoded split in memory and
`custom_aug` (the same CNN with the same augmentation as batched Keras layers inside the graph).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import keras
import numpy as np

from fer_experiments import data as fer_data
from fer_experiments import models, training
from fer_experiments.config import build_config

BATCH = 64


def notebook_generator(folder: str, seed: int = 0):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator  # noqa: PLC0415 — Keras 3's copy

    gen = ImageDataGenerator(rotation_range=20, zoom_range=0.15, horizontal_flip=True)
    return gen.flow_from_directory(str(Path(folder) / "train"), target_size=(48, 48), color_mode="grayscale",
                                   batch_size=BATCH, class_mode="sparse", shuffle=True, seed=seed)


class AugmentOnly(keras.Model):
    """The trainer's augmenter always in training mode, so `predict` runs it compiled, as in `fit`."""

    def __init__(self, augmenter):
        super().__init__()
        self.augmenter = augmenter

    def call(self, x):
        return self.augmenter(x, training=True)


def _ips(fn, images: int, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return images / statistics.median(times)


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
    assert not np.allclose(aug_only.predict(x[:BATCH], verbose=0), x[:BATCH]), "augmenter inactive"

    gen = notebook_generator(data)
    next(gen)
    ours_pipe = _ips(lambda: aug_only.predict(x, batch_size=BATCH, verbose=0), n)
    nb_pipe = _ips(lambda: [next(gen) for _ in range(steps)], n)

    plain = models.create_model("custom", dropout=cfg.dropout)
    for model in (ours, plain):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours.fit(x[:4 * BATCH], y[:4 * BATCH], batch_size=BATCH, epochs=1, verbose=0)   # compile outside the clock
    plain.fit(gen, steps_per_epoch=4, epochs=1, verbose=0)
    ours_train = _ips(lambda: ours.fit(x, y, batch_size=BATCH, epochs=1, verbose=0), n)
    nb_train = _ips(lambda: plain.fit(gen, steps_per_epoch=steps, epochs=1, verbose=0), n)
    return {"batch_size": BATCH, "images_timed": n, "decode_and_load_s": round(load_s, 2),
            "ours_pipeline_ips": ours_pipe, "notebook_pipeline_ips": nb_pipe, "pipeline_ratio": ours_pipe / nb_pipe,
            "ours_train_ips": ours_train, "notebook_train_ips": nb_train, "train_ratio": ours_train / nb_train}
