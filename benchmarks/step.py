"""Benchmark part `step`: where the training time goes, against the machine's ceiling.

For each model, training images/second of
  (i)   the bare step — the compiled train step on batches already in memory, driven by `fit` (no
        augmentation, no callbacks, nothing to feed), in float32 and in the trainer's resolved
        precision: the ceiling;
  (ii)  the full trainer, ``training.train`` on the same number of images (feed, augmentation,
        callbacks, tracking), timed over the training batches of its second epoch;
  (iii) for ``custom_aug``: the seed notebook's loop (ImageDataGenerator from the image folder
        feeding the same CNN in fit).
Alongside: each model's FLOPs per training image and this machine's matmul GFLOP/s (float32 and
bfloat16), so every step is also a fraction of peak. The measurements of one model are interleaved in
rounds (peak, i, ii, iii, peak, i, ii, iii, …: the peak is measured in every round, so a busy phase hits
it as it hits the arms) and each figure is judged by `validity` from its `repeats` rounds.
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from fer_experiments import data as fer_data
from fer_experiments import models, training
from fer_experiments.config import build_config
from fer_experiments.tracking import tags

from . import validity
from .pipeline import notebook_generator

EXPERIMENT = "fer-benchmark-step"  # short runs on a few batches: kept out of the model comparison
RECIPES = (("custom_aug", "custom_aug"), ("fer_compact", "fer_compact_fast"), ("fer_vgg", "fer_vgg"))
RATIOS = (("full_over_bare", "full", "bare"), ("full_over_notebook", "full", "notebook"),  # (key, A, B): A ÷ B
          ("full_float32_over_bare_float32", "full_float32", "bare_float32"),
          ("full_float32_over_notebook", "full_float32", "notebook"), ("feed_over_model", "aug_in_feed", "aug_in_model"))


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """Dense n×n matrix products per second, the machine's practical peak for convolution-heavy work."""
    a = keras.ops.cast(keras.random.normal((n, n), seed=1), dtype)
    b = keras.ops.cast(keras.random.normal((n, n), seed=2), dtype)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, b))
    t = time.perf_counter()
    for _ in range(repeats):
        c = keras.ops.matmul(a, b)
    keras.ops.convert_to_numpy(c)
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds ×2 of every convolution and dense layer for one image (nested models included);
    normalisation, activations and pooling are a few per cent and left out."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            total += 2 * h * w * c_out * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.input.shape[1:])) * layer.units
    return total


def _bare_step(cfg, x, y, precision: str):
    """A closure running the compiled train step once over the in-memory images, driven by `fit` on
    float32 arrays in order — Keras's fastest feed, with asynchronous dispatch (`train_on_batch`
    waits for every step; a `PyDataset` of ready batches measured 0.65-0.76× the full trainer, so
    it is no ceiling) — and no augmentation, no callbacks, no shuffling."""
    cfg = dataclasses.replace(cfg, precision=precision)
    net = training.build_net(cfg)
    loss, targets = training.loss_and_targets(cfg)
    net.compile(optimizer=training.make_optimizer(cfg, len(x)), loss=loss, metrics=["accuracy"])
    if cfg.crop:
        lo = (x.shape[2] - cfg.crop) // 2  # x: (batches, batch, 48, 48, 1)
        x = x[:, :, lo:lo + cfg.crop, lo:lo + cfg.crop]
    xs, ys = x.reshape(-1, *x.shape[2:]), targets(y.reshape(-1))
    return _second_epoch(net, xs, ys, batch_size=x.shape[1]), net


def _second_epoch(net, *data, batch_size=None, steps=None):
    """A closure fitting two epochs and returning the second one's training-batch seconds: timed
    exactly like the full trainer (fit's own set-up and the first epoch's tracing off the clock)."""
    def run() -> float:
        timer = TrainBatchTimer(steps or -(-len(data[0]) // batch_size))
        net.fit(*data, batch_size=batch_size, steps_per_epoch=steps, epochs=2, shuffle=False, verbose=0,
                callbacks=[timer])
        return timer.times[-1]
    return run


class TrainBatchTimer(keras.callbacks.Callback):
    """Seconds from an epoch's start to the end of its last training batch (validation excluded)."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps, self.times, self._t = steps, [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.steps - 1:
            self.times.append(time.perf_counter() - self._t)


def _full_trainer(cfg):
    steps = -(-cfg.limit // cfg.batch_size)

    def run() -> float:
        timer = TrainBatchTimer(steps)
        training.train(cfg, callbacks=[timer], experiment=EXPERIMENT, extra_tags={tags.BENCHMARK: "step"}, verbose=0)
        return timer.times[-1]  # the second epoch: graphs already traced

    return run


def _augmentation_placement(cfg, x, y) -> dict:
    """The same augmented training two ways, no callbacks: the augmenter inside the model fed from
    arrays (what the trainer does) vs in a parallel, prefetched `tf.data` feed in front of the bare
    network (TensorFlow backend: what a CPU input pipeline would do)."""
    import tensorflow as tf

    loss, targets = training.loss_and_targets(cfg)
    in_model, _ = training.build_model(cfg)
    in_model.compile(optimizer=training.make_optimizer(cfg, len(x)), loss=loss)
    xs, ys = x.reshape(-1, *x.shape[2:]), targets(y.reshape(-1))
    augmenter = in_model.get_layer("augmenter")
    bare = training.build_net(cfg)
    bare.compile(optimizer=training.make_optimizer(cfg, len(x)), loss=loss)
    feed = (tf.data.Dataset.from_tensor_slices((xs, ys))
            .batch(x.shape[1]).map(lambda xb, yb: (augmenter(xb, training=True), yb),
                                   num_parallel_calls=tf.data.AUTOTUNE).repeat().prefetch(tf.data.AUTOTUNE))
    return {"aug_in_model": _second_epoch(in_model, xs, ys, batch_size=x.shape[1]),
            "aug_in_feed": _second_epoch(bare, feed, steps=len(x))}


def _notebook(data: str, steps: int):
    gen = notebook_generator(data)
    plain = models.create_model("custom")
    plain.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return _second_epoch(plain, gen, steps=steps)


def _timed(fn) -> float:
    t = time.perf_counter()
    out = fn()
    return out if isinstance(out, float) else time.perf_counter() - t


def measure(data: str, *, steps: int = 30, repeats: int = 3, recipes=RECIPES) -> dict:
    train = fer_data.load_dataset(data).splits["train"]
    rows = []
    for name, preset in recipes:
        cfg = build_config(preset, data=data, epochs=2, patience=0, limit=steps * 64, batch_size=64).resolved()
        n = steps * cfg.batch_size
        x = train.x[:n].astype("float32").reshape(steps, cfg.batch_size, *train.x.shape[1:])
        y = train.y[:n].reshape(steps, cfg.batch_size)
        arms = {"bare_float32": _bare_step(cfg, x, y, "float32")[0]}
        arms["bare"], net = _bare_step(cfg, x, y, cfg.precision)
        arms["full"] = _full_trainer(cfg)
        if name == "custom_aug":  # the notebook's comparison, also at the notebook's own precision
            arms["full_float32"] = _full_trainer(dataclasses.replace(cfg, precision="float32"))
            if keras.backend.backend() == "tensorflow":
                arms.update(_augmentation_placement(cfg, x, y))
            arms["notebook"] = _notebook(data, steps)
        ips = {arm: [] for arm in arms}
        peak = {"float32": [], "bfloat16": []}
        for _ in range(repeats):
            for dtype in peak:
                peak[dtype].append(matmul_gflops(dtype))
            for arm, fn in arms.items():
                ips[arm].append(n / _timed(fn))
        flops = 3 * forward_flops(net)  # forward + backward (input and weight gradients) ≈ 3× forward
        rows.append({"model": name, "preset": preset, "precision": cfg.precision, "images_timed": n,
                     "train_gflop_per_image": flops / 1e9, **figures(ips, peak, flops, cfg.precision)})
        keras.backend.clear_session()
    pooled = {d: validity.summarize([v for r in rows for v in r["peak_gflops"][d]["samples"]]) for d in ("float32", "bfloat16")}
    return {"steps": steps, "batch_size": 64, "repeats": repeats, "rules": validity.RULES, "matmul_gflops": pooled,
            "models": rows}


def figures(ips: dict, peak: dict, flop_per_image: float, precision: str) -> dict:
    """One model's published figures from its rounds: `ips` (arm → images/second per round) and `peak`
    (dtype → matmul GFLOP/s per round). Each bare and full step is also a share of the peak of its
    precision, measured in the same rounds; the ratios of `RATIOS` whose arms were timed."""
    peak = {dtype: validity.summarize(v) for dtype, v in peak.items()}
    t = {arm: validity.summarize(v) for arm, v in ips.items()}
    own = peak["bfloat16" if precision == "mixed_bfloat16" else "float32"]
    for arm, p in (("bare_float32", peak["float32"]), ("bare", own), ("full", own)):
        t[arm] = validity.share_of_peak(t[arm], flop_per_image, p)
    return {"peak_gflops": peak, **{f"{arm}_ips": v for arm, v in t.items()},
            **{key: validity.ab(t[a], t[b], names=(a, b)) for key, a, b in RATIOS if a in t and b in t}}
