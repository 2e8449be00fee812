"""Benchmark part `compare`: the seed notebook's four-model comparison, run for real.

`custom`, `custom_aug`, `resnet50` and `vgg16` are trained by the one trainer from their presets in
`experiments/` into one MLflow experiment, then `fer-exp report` is made over them. What 2 CPU cores
allow is recorded in the overrides below (and so in every run's params): epoch caps, and for the
backbones `weights=none` (no ImageNet download here: they train FROM SCRATCH, which the run name, the
`fer.init` tag and the report's table all say) at the faces' own 48 px instead of 96, with the
from-scratch learning rate. Where the internet exists, pass ``--recipe resnet50 --recipe vgg16`` to
train the seed's ImageNet fine-tuning instead.

A recipe that already has a FINISHED run in the experiment (tag ``fer.recipe``) is not trained again,
so an interrupted comparison resumes where it stopped.
"""
from __future__ import annotations

from pathlib import Path

from fer_experiments import training
from fer_experiments.config import build_config
from fer_experiments.evaluation import report
from fer_experiments.tracking import MlflowTracker, tags

from .accuracy import parse_recipe

EXPERIMENT = "fer2013-seed-comparison"
RECIPE_TAG = "fer.recipe"
CPU_RECIPES = (
    "custom:epochs=20",
    "custom_aug:epochs=25",
    "resnet50:weights=none,image_size=48,learning_rate=0.001,epochs=8",
    "vgg16:weights=none,image_size=48,learning_rate=0.001,epochs=2",
)
FIGURES = ("validation_accuracy", "test_accuracy", "test_macro_f1", "test_tta_flip_accuracy")


def run(data: str, out: Path, *, recipes=CPU_RECIPES, seed: int = 42) -> dict:
    rows = []
    for text in recipes:
        preset, overrides = parse_recipe(text)
        cfg = build_config(preset, data=data, seed=seed, **overrides)
        init = training.initialisation(cfg.resolved())
        done = _finished(text)
        if done is not None:
            rows.append({"recipe": text, "run_id": done["run_id"], "model_uri": done.get(f"tags.{tags.MODEL_URI}"),
                         "epochs": int(done["metrics.epochs_run"]), "init": init,
                         **{k: done.get(f"metrics.{k}") for k in FIGURES}})
            continue
        result = training.train(cfg, experiment=EXPERIMENT, preset=preset,
                                extra_tags={tags.BENCHMARK: "compare", RECIPE_TAG: text})
        rows.append({"recipe": text, "run_id": result.run_id, "model_uri": result.model_uri,
                     "epochs": result.epochs_run, "init": init, **{k: result.metrics.get(k) for k in FIGURES}})
    files = report.write(EXPERIMENT, out / "comparison")
    return {"experiment": EXPERIMENT, "runs": rows, "report": [str(f) for f in files]}


def _finished(recipe: str) -> dict | None:
    """The newest FINISHED run of `recipe` in the comparison experiment, as a row of MLflow's runs table."""
    try:
        runs = MlflowTracker().finished_runs(EXPERIMENT)
    except ValueError:  # the experiment does not exist yet
        return None
    column = f"tags.{RECIPE_TAG}"
    if runs.empty or column not in runs:
        return None
    hits = runs[runs[column] == recipe].sort_values("start_time")
    return None if hits.empty else hits.iloc[-1].to_dict()
