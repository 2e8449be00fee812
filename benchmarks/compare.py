"""Benchmark part `compare`: the seed notebook's four-model comparison, run for real.

`custom`, `custom_aug`, `resnet50` and `vgg16` are trained by the one trainer from their presets in
`experiments/` into one MLflow experiment, then `fer-exp report` is made over them. What 2 CPU cores
allow is recorded in the overrides below (and so in every run's params): epoch caps, and for the
backbones `weights=none` (no ImageNet download here: they train FROM SCRATCH, which the run name, the
`fer.init` tag and the report's table all say) at the faces' own 48 px instead of 96, with the
from-scratch learning rate. Where the internet exists, pass ``--recipe resnet50 --recipe vgg16`` to
train the seed's ImageNet fine-tuning instead.
"""
from __future__ import annotations

from pathlib import Path

from fer_experiments import report, training
from fer_experiments.config import build_config
from fer_experiments.tracking import tags

from .accuracy import parse_recipe

EXPERIMENT = "fer2013-seed-comparison"
CPU_RECIPES = (
    "custom:epochs=20",
    "custom_aug:epochs=25",
    "resnet50:weights=none,image_size=48,learning_rate=0.001,epochs=8",
    "vgg16:weights=none,image_size=48,learning_rate=0.001,epochs=5",
)


def run(data: str, out: Path, *, recipes=CPU_RECIPES, seed: int = 42) -> dict:
    rows = []
    for text in recipes:
        preset, overrides = parse_recipe(text)
        cfg = build_config(preset, data=data, seed=seed, **overrides)
        result = training.train(cfg, experiment=EXPERIMENT, extra_tags={tags.BENCHMARK: "compare"}, preset=preset)
        rows.append({"recipe": text, "run_id": result.run_id, "model_uri": result.model_uri,
                     "epochs": result.epochs_run, "init": training.initialisation(cfg.resolved()),
                     **{k: result.metrics.get(k) for k in ("validation_accuracy", "test_accuracy", "test_macro_f1",
                                                           "test_tta_flip_accuracy")}})
    files = report.write(EXPERIMENT, out / "comparison")
    return {"experiment": EXPERIMENT, "runs": rows, "report": [str(f) for f in files]}
