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
@option("--include-trials", is_flag=True, help="also list Optuna trial runs (children of a study) and the seeds of repeat sets")
@option("--no-log", is_flag=True, help="write the files only; no report run in MLflow")
def report(mlflow_experiment, out, include_trials, no_log):
    """Comparison table (markdown + CSV) and figures of an MLflow experiment's training runs."""
    from ..evaluation import report as reporting

    for path in reporting.write(mlflow_experiment, out, include_trials=include_trials, log=not no_log):
        click.echo(f"wrote {path}")


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="RUN_OR_MODEL...")
@option("--split", default="test", show_default=True, help="the evaluated split to compare on (val or test)")
@mlflow_experiment_option("MLflow experiment for the compare run [the first run's]")
@option("--out", default="compare", show_default=True, help="folder for compare.md, arms.csv, pairs.csv, forest.png")
@option("--seed", default=0, show_default=True, type=int, help="seed of the paired bootstrap")
@option("--no-log", is_flag=True, help="write the files only; no compare run in MLflow")
def compare(refs, split, mlflow_experiment, out, seed, no_log):
    """Which models are better on the same images: training or evaluation runs (ids, or names one run
    bears), models:/ URIs, or repeat sets (their parent runs; their seeds are compared as a group). Prints and logs each model's
    accuracy with its 95 % interval and, per pair, the difference with its interval, a p-value
    (exact McNemar / t over seeds) Holm-corrected over all pairs, and a verdict."""
    from ..evaluation import compare as comparing

    table, pairs, files = comparing.write(list(refs), out, split=split, experiment=mlflow_experiment,
                                          log=not no_log, seed=seed)
    for row in table.to_dict("records"):
        click.echo(f"{row['arm']}: {100 * row['accuracy']:.1f} % [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
                   f" ({row['interval']})")
    for row in pairs.to_dict("records"):
        click.echo(f"{row['a']} vs {row['b']}: {row['verdict']}  [{row['test']}]")
    for f in files:
        click.echo(f"wrote {f}")
