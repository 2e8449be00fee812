"""`fer-exp evaluate` and `report`: measuring what was trained."""
from __future__ import annotations

import click

from .group import mlflow_experiment_option, option


@click.command()
@click.argument("model_uris", nargs=-1, required=True, metavar="MODEL_URI...")
@option("--data", default="synthetic", show_default=True, help="dataset to evaluate on (folder, CSV, synthetic)")
@option("--split", "splits", multiple=True, help="split(s) to evaluate [all of val/test present]")
@option("--tta", "tta", multiple=True, type=click.Choice(["flip", "tencrop"]),
        help="test-time augmentation accuracies logged beside the plain one [flip and tencrop]")
@mlflow_experiment_option("MLflow experiment for the evaluation run")
@option("--no-log", is_flag=True, help="print only; record nothing in MLflow")
def evaluate(model_uris, data, splits, tta, mlflow_experiment, no_log):
    """Evaluate a logged model (models:/…, runs:/…) or a .keras file on a dataset; several models
    are evaluated as one ensemble (their probabilities averaged)."""
    from ..evaluation import evaluate as evaluation

    for line in evaluation.evaluate(list(model_uris), data, splits=splits, tta=tuple(tta) or ("flip", "tencrop"),
                                    experiment=mlflow_experiment, log=not no_log):
        click.echo(line)


@click.command()
@option("--mlflow-experiment", required=True, aliases=("--experiment",),
        help="MLflow experiment whose runs to compare (e.g. fer2013)")
@option("--out", default="report", show_default=True, help="folder for report.md, CSVs and figures")
@option("--include-trials", is_flag=True, help="also list Optuna trial runs (children of a study)")
@option("--no-log", is_flag=True, help="write the files only; no report run in MLflow")
def report(mlflow_experiment, out, include_trials, no_log):
    """Comparison table (markdown + CSV) and figures of an MLflow experiment's training runs."""
    from ..evaluation import report as reporting

    for path in reporting.write(mlflow_experiment, out, include_trials=include_trials, log=not no_log):
        click.echo(f"wrote {path}")
