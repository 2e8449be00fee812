"""Training: the one trainer (`trainer.train`) and what it is made of.

- `trainer`: `train(cfg)` — data → model → Keras `fit` → evaluation → record, through a tracker;
- `build`: network + augmenter, optimizer and schedule, loss, class weights, run name and description;
- `resume`: early stopping and learning-rate plateaus whose state survives a killed run;
- `snapshots`: the per-epoch image of fixed validation faces and their predictions;
- `repeats`: one configuration trained with several seeds, under one parent run (`--repeats N`);
- `progress`: the console line, with its seconds, of each step of the end-of-run work;
- `precision`: float32 or mixed precision, chosen per machine; `devices`: backend, devices, data parallelism.

`train`, `TrainResult` and the `build` functions are importable from here; they are loaded on first
use, so `training.precision` or `training.devices` alone stay cheap.
"""
from __future__ import annotations

import importlib

_FROM = {"train": "trainer", "TrainResult": "trainer", "backup_dir": "trainer", "train_repeats": "repeats",
         **dict.fromkeys(("build_model", "build_net", "float32_copy", "learning_rate", "make_optimizer", "run_name",
                          "describe", "initialisation", "shrink", "loss_and_targets", "class_weights", "jit_compile"),
                        "build")}


def __getattr__(name: str):
    if name in _FROM:
        return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_FROM)
