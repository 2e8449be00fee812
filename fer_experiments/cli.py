"""`fer-exp`: the command line. The only place that knows about click and exit codes.

A mistake the user can make (bad path, value, model, URI) is reported as one line naming the
problem and the fix, with exit code 2; set FER_DEBUG=1 for the full traceback.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys

import click

from . import config as cfgmod

def user_errors(fn):
    """The error contract (`errors.UserError`): the project's own user errors and MLflow's "does not
    exist" become one line and exit 2; anything else is a bug and keeps its traceback (exit 1)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _is_user_error(exc) or os.environ.get("FER_DEBUG"):
                raise
            msg = (str(exc).strip().splitlines() or [repr(exc)])[0]
            click.echo(f"error: {msg}", err=True)
            sys.exit(2)
    return wrapper


def _is_user_error(exc: Exception) -> bool:
    from .errors import UserError  # noqa: PLC0415

    if isinstance(exc, UserError):
        return True
    try:
        from mlflow.exceptions import MlflowException  # noqa: PLC0415 — e.g. a models:/ URI that names nothing
    except ImportError:  # a machine without MLflow (file-only runs)
        return False

    return isinstance(exc, MlflowException) and exc.error_code in MLFLOW_USER_ERRORS


# MLflow's codes for a thing the user named that is not there or not valid (a run, model, experiment id).
MLFLOW_USER_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class LazyHelpOption(click.Option):
    """An option whose help text is computed when help is shown: listing the registered models imports
    Keras (seconds), which `fer-exp --help` and every command that needs no model should not pay."""

    def __init__(self, *args, help=None, **kwargs):  # noqa: A002 — click's keyword
        super().__init__(*args, **kwargs)
        self._help = help

    def get_help_record(self, ctx):
        self.help = self._help() if callable(self._help) else self._help
        return super().get_help_record(ctx)


def _model_names() -> list[str]:
    from . import models  # noqa: PLC0415 — imports Keras

    return models.list_models()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Facial-emotion recognition experiments on FER-2013, tracked in MLflow."""


def _config_options(fn):
    """One click option per TrainConfig field; None = not given, so presets can fill it."""
    helps = {
        "model": lambda: f"registered architecture: {', '.join(_model_names())}",
        "data": "FER-2013 folder (train/, test/), fer2013.csv(.gz), 'synthetic' or 'synthetic:N' [synthetic]",
        "aug_strength": "0..1, one knob for all augmentations; 0.5 = the notebook's ImageDataGenerator [model default]",
        "unfreeze": "top backbone blocks to fine-tune (transfer models); 0 = frozen feature extractor",
        "weights": "transfer models: imagenet | none | path to a local weights file",
        "limit": "keep at most N images per split (smoke runs); 0 = all",
    }
    defaults = cfgmod.TrainConfig()
    for f in reversed(list(dataclasses.fields(cfgmod.TrainConfig))):
        default = getattr(defaults, f.name)
        text = helps.get(f.name, f.name.replace("_", " "))
        suffix = f" [default: {default if default is not None else 'model default'}]"
        opt = click.option(f"--{f.name}", f.name, default=None, metavar=f.type.split(" ")[0].upper(),
                           cls=LazyHelpOption, help=(lambda t=text, x=suffix: (t() if callable(t) else t) + x))
        fn = opt(fn)
    return fn


@main.command()
@_config_options
@click.option("--experiment", "preset", default=None,
              help="named preset in experiments/ (or a .yaml path); explicit options override it")
@click.option("--mlflow-experiment", default=None,
              help="MLflow experiment [fer2013, or fer2013-synthetic for synthetic data]")
@click.option("--resume", "resume_run_id", default=None, help="continue a killed run (its MLflow run id)")
@click.option("--run-folder", default=None, type=click.Path(file_okay=False),
              help="record into DIR/<run id>/ instead of MLflow (no MLflow needed); `fer-exp import-run` adds it later")
@user_errors
def train(preset, mlflow_experiment, resume_run_id, run_folder, **options):
    """Train one registered model and record it in MLflow (or, with --run-folder, in a folder)."""
    from . import tracking, training  # noqa: PLC0415 — TensorFlow import only when needed

    tracker = tracking.FileTracker(run_folder) if run_folder else tracking.MlflowTracker()
    if resume_run_id:
        cfg = cfgmod.TrainConfig(**tracker.run_config(resume_run_id)).validate()
        preset = tracker.run_tags(resume_run_id).get(tracking.tags.PRESET)
    else:
        cfg = cfgmod.build_config(preset, **options)
    result = training.train(cfg, experiment=mlflow_experiment, resume_run_id=resume_run_id, tracker=tracker,
                            preset="" if preset in (None, "none") else preset)
    shown = {k: v for k, v in result.metrics.items() if k.endswith(("accuracy", "macro_f1"))}
    click.echo(f"run {result.run_id} finished: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    click.echo(f"model: {result.model_uri}")


@main.command()
@click.argument("model_uris", nargs=-1, required=True, metavar="MODEL_URI...")
@click.option("--data", default="synthetic", show_default=True, help="dataset to evaluate on (folder, CSV, synthetic)")
@click.option("--split", "splits", multiple=True, help="split(s) to evaluate [all of val/test present]")
@click.option("--tta", "tta", multiple=True, type=click.Choice(["flip", "tencrop"]),
              help="test-time augmentation accuracies logged beside the plain one [flip and tencrop]")
@click.option("--mlflow-experiment", default=None, help="MLflow experiment for the evaluation run")
@click.option("--no-log", is_flag=True, help="print only; record nothing in MLflow")
@user_errors
def evaluate(model_uris, data, splits, tta, mlflow_experiment, no_log):
    """Evaluate a logged model (models:/…, runs:/…) or a .keras file on a dataset; several models
    are evaluated as one ensemble (their probabilities averaged)."""
    from . import evaluation  # noqa: PLC0415

    for line in evaluation.evaluate(list(model_uris), data, splits=splits, tta=tuple(tta) or ("flip", "tencrop"),
                                    experiment=mlflow_experiment, log=not no_log):
        click.echo(line)


@main.command()
@click.argument("model_uri")
@click.option("--format", "fmt", type=click.Choice(["tflite", "onnx"]), default="tflite", show_default=True,
              help="tflite (LiteRT) | onnx (needs pip install 'fer_experiments[export]')")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="file to write, ending .tflite / .onnx")
@click.option("--check-data", default="synthetic:300", show_default=True,
              help="faces (folder, CSV, synthetic[:N]) the export must predict like Keras on")
@click.option("--log", is_flag=True, help="also log the file to a new run in the model's MLflow experiment")
@user_errors
def export(model_uri, fmt, out, check_data, log):
    """Export a logged model (models:/…, runs:/…) or a .keras file to one TFLite or ONNX file for
    inference; fails unless its probabilities match Keras's within 1e-4."""
    from . import export as fer_export  # noqa: PLC0415

    for line in fer_export.export(model_uri, fmt, out, check_data=check_data, log=log).lines():
        click.echo(line)


def _face_finding(command):
    """The options `predict` and `explain` share: images, model, and how faces are found."""
    for option in reversed((
            click.argument("paths", nargs=-1, required=True, metavar="PATH..."),
            click.option("--model", "model_uri", required=True,
                         help="models:/<model id>, runs:/<run id>/<model name> or a .keras file"),
            click.option("--margin", default=0.2, show_default=True, type=click.FloatRange(0, 2),
                         help="grow each detected face box by this fraction of its size before cropping"),
            click.option("--detector", type=click.Choice(["haar", "mtcnn"]), default="haar", show_default=True,
                         help="face detector: OpenCV's Haar cascade, or MTCNN (pip install 'fer_experiments[faces]')"))):
        command = option(command)
    return command


@main.command()
@_face_finding
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="output file [stdout]")
@click.option("--annotate", "annotate_dir", default=None, type=click.Path(file_okay=False),
              help="write a copy of each image with a face here, boxes and labels drawn")
@user_errors
def predict(paths, model_uri, fmt, out, annotate_dir, margin, detector):
    """Emotions of the faces in images (files or folders): one JSON line (or CSV row) per face."""
    from . import predict as fer_predict  # noqa: PLC0415

    # A URI that names nothing is turned into a one-line UserError by tracking.load_model; the --out
    # file is only created once the images and the model have been found.
    click.echo(fer_predict.run(paths, model_uri, out, fmt=fmt, margin=margin, annotate_dir=annotate_dir,
                               detector=detector), err=True)


@main.command()
@_face_finding
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="folder for the overlays and explanations.csv")
@user_errors
def explain(paths, model_uri, out_dir, margin, detector):
    """Where the model looks: a Grad-CAM overlay per face (faces found as predict finds them)."""
    from . import explain as fer_explain  # noqa: PLC0415

    click.echo(fer_explain.run(paths, model_uri, out_dir, detector=detector, margin=margin))


@main.command()
@click.option("--model", default="custom_aug", show_default=True, help="registered architecture")
@click.option("--data", default="synthetic", show_default=True, help="folder, fer2013.csv(.gz) or synthetic[:N]")
@click.option("--experiment", "preset", default=None, help="preset in experiments/ used as the base config")
@click.option("--n_trials", "--n-trials", default=20, show_default=True, type=int,
              help="finished (complete + pruned) trials the study aims at, across all workers")
@click.option("--timeout", default=0.0, show_default=True, type=float, help="seconds for this worker; 0 = none")
@click.option("--epochs", default=8, show_default=True, type=int, help="epochs per trial")
@click.option("--study", default="", help="study name [fer-<model>-<dataset>]")
@click.option("--storage", default="", help="Optuna storage: SQLAlchemy URL (postgresql://…) or journal:FILE "
                                            "[journal file mlruns/optuna/journal.log]")
@click.option("--sampler", default="tpe", show_default=True, help="tpe | random")
@click.option("--pruner", default="percentile", show_default=True, help="percentile | median | hyperband | none")
@click.option("--search_space", "--search-space", default="", help="YAML file overriding the family's default space")
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--limit", default=0, show_default=True, type=int, help="images per split (smoke runs); 0 = all")
@click.option("--weights", default=None, help="transfer models: imagenet | none | local weights file")
@click.option("--mlflow-experiment", default="", help="MLflow experiment [fer2013 / fer2013-synthetic]")
@user_errors
def tune(model, data, preset, n_trials, timeout, epochs, study, storage, sampler, pruner, search_space, seed,
         limit, weights, mlflow_experiment):
    """Run (or join, or resume) an Optuna study; every trial is a nested MLflow run."""
    from . import tuning  # noqa: PLC0415

    base = cfgmod.build_config(preset if preset not in (None, "", "none") else None, model=model, data=data,
                               epochs=epochs, seed=seed, limit=limit, weights=weights)
    settings = tuning.TuneSettings(base=base, n_trials=n_trials, timeout=timeout, study=study, storage=storage,
                                   sampler=sampler, pruner=pruner, search_space=search_space,
                                   experiment=mlflow_experiment)
    _, parent, best = tuning.tune(settings, echo=click.echo)
    if best is None:
        click.echo(f"no completed trial (all pruned or failed so far): no best model; parent run {parent}")
    else:
        click.echo(f"best trial {best.number}: val_accuracy {best.value:.4f} params {best.params} "
                   f"(test_accuracy {best.user_attrs.get('test_accuracy')}, reported only); parent run {parent}")


@main.command()
@click.option("--experiment", required=True, help="MLflow experiment whose runs to compare (e.g. fer2013)")
@click.option("--out", default="report", show_default=True, help="folder for report.md, CSVs and figures")
@click.option("--include-trials", is_flag=True, help="also list Optuna trial runs (children of a study)")
@click.option("--no-log", is_flag=True, help="write the files only; no report run in MLflow")
@user_errors
def report(experiment, out, include_trials, no_log):
    """Comparison table (markdown + CSV) and figures of an MLflow experiment's training runs."""
    from . import report as reporting  # noqa: PLC0415

    for path in reporting.write(experiment, out, include_trials=include_trials, log=not no_log):
        click.echo(f"wrote {path}")


@main.group()
def data():
    """Inspect, generate and convert FER-2013-format datasets."""


@data.command("inspect")
@click.argument("source", default="synthetic")
@click.option("--val-fraction", default=0.1, show_default=True, type=float)
@user_errors
def data_inspect(source, val_fraction):
    """Per-split, per-class image counts of SOURCE."""
    import pandas as pd  # noqa: PLC0415

    from . import data as fer_data  # noqa: PLC0415

    ds = fer_data.load_dataset(source, val_fraction=val_fraction)
    table = pd.DataFrame(ds.counts()).T
    table["total"] = table.sum(axis=1)
    click.echo(f"{ds.name} ({ds.kind}{', SYNTHETIC' if ds.synthetic else ''}) digest {ds.digest}\n{ds.source}")
    click.echo(table.to_string())
    for note in ds.notes:
        click.echo(f"note: {note}")


@data.command("synthetic")
@click.argument("out")
@click.option("--n", default=4000, show_default=True, type=click.IntRange(min=70), help="images in total")
@click.option("--seed", default=0, show_default=True, type=int)
@user_errors
def data_synthetic(out, n, seed):
    """Write the synthetic FER-format faces to OUT in the Kaggle folder layout."""
    from . import data as fer_data  # noqa: PLC0415

    click.echo(f"wrote {fer_data.write_synthetic(out, n=n, seed=seed)}")


@data.command("convert")
@click.argument("source")
@click.argument("dest")
@user_errors
def data_convert(source, dest):
    """Folder layout → fer2013.csv(.gz), or fer2013.csv(.gz) → folder layout (by SOURCE's kind)."""
    from . import data as fer_data  # noqa: PLC0415

    if os.path.isdir(source):
        click.echo(f"wrote {fer_data.folder_to_csv(source, dest)}")
    else:
        click.echo(f"wrote {fer_data.csv_to_folder(source, dest)}")


if __name__ == "__main__":
    main()


@main.command("import-run")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False), metavar="FOLDER...")
@click.option("--mlflow-experiment", default=None, help="MLflow experiment [the one the run names]")
@user_errors
def import_run(folders, mlflow_experiment):
    """Make file-only runs (`train --run-folder`) ordinary MLflow runs in the tracking store."""
    from .tracking import imports  # noqa: PLC0415

    for folder in folders:
        run_id = imports.import_run(folder, experiment=mlflow_experiment)
        click.echo(f"{folder} → run {run_id}")
