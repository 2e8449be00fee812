"""`fer-exp import-run FOLDER`: a file-only run (`files.FileTracker`) becomes an ordinary MLflow run.

The run keeps its name, tags, description, params, epoch metrics (with their steps and timestamps),
per-epoch images (MLflow's image series), start/end times, status and artifacts; its `.keras` model is
logged with the Keras flavour as a LoggedModel carrying its metrics, exactly as a training run logs it.
The folder is marked with the new run id, so importing it twice is refused rather than duplicated.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE
from PIL import Image

from ..errors import UserError
from . import files, logged_models, records
from . import tags as T
from .base import ending
from .mlflow_tracker import EXPERIMENT_KIND, MlflowTracker

MARKER = "imported.json"
BATCH = 1000  # MLflow's log_batch limit on metrics per call


class ImportError_(UserError):
    """The folder is not a file-only run, or was imported already."""


def import_run(folder: str | Path, *, experiment: str | None = None) -> str:
    """Create the MLflow run for `folder` and return its id."""
    folder = Path(folder)
    if not files.is_run_folder(folder):
        raise ImportError_(f"'{folder}' is not a file-only run folder (no run.json): pass the folder a run "
                           f"trained with --run-folder wrote, e.g. runs-offline/<run id>")
    meta = json.loads((folder / "run.json").read_text())
    if meta.get("format") != files.FORMAT:
        raise ImportError_(f"'{folder}' has run-folder format {meta.get('format')!r}, this version reads "
                           f"{files.FORMAT}: import it with the fer_experiments version that wrote it")
    if (folder / MARKER).exists():
        done = json.loads((folder / MARKER).read_text())
        raise ImportError_(f"'{folder}' was imported already as run {done['run_id']} ({done['tracking_uri']}): "
                           f"delete {folder / MARKER} to import it again")
    if meta["status"] == "RUNNING":
        raise ImportError_(f"'{folder}' is still RUNNING (or its process died without ending it): import a "
                           f"finished run, or resume it first")
    MlflowTracker().check_store()
    client = mlflow.MlflowClient()
    exp_name = experiment or meta["experiment"]
    exp = client.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(exp_name)
    for key, value in EXPERIMENT_KIND.items():
        client.set_experiment_tag(exp_id, key, value)
    tags = {**meta["tags"], T.IMPORTED_FROM: str(folder.resolve()),
            MLFLOW_SOURCE_NAME: meta.get("source", "fer-exp"), MLFLOW_SOURCE_TYPE: "LOCAL",
            **({MLFLOW_RUN_NOTE: meta["description"]} if meta.get("description") else {})}
    run = client.create_run(exp_id, start_time=meta["start_time"], tags=tags, run_name=meta["run_name"])
    run_id = run.info.run_id

    def end(status: str) -> None:  # a complete import keeps the status and end time the run had
        if status == "FINISHED":
            client.set_terminated(run_id, meta["status"], end_time=meta["end_time"])
        else:
            client.set_terminated(run_id, status)

    with ending(end):
        _log_contents(client, run_id, folder)
    (folder / MARKER).write_text(json.dumps({"run_id": run_id, "tracking_uri": mlflow.get_tracking_uri()}))
    return run_id


def _log_contents(client: mlflow.MlflowClient, run_id: str, folder: Path) -> None:
    params = json.loads((folder / "params.json").read_text()) if (folder / "params.json").exists() else {}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in _metric_lines(folder)]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH])
    if (folder / "artifacts").is_dir():
        client.log_artifacts(run_id, str(folder / "artifacts"))
    for image in sorted((folder / files.IMAGES).glob("*/*.png")):  # key/<step>-<timestamp>.png
        step, stamp = map(int, image.stem.split("-"))
        key = image.parent.name.replace("~", "/")
        client.log_image(run_id, np.asarray(Image.open(image).convert("RGB")), key=key, step=step,
                         timestamp=stamp, synchronous=True)
    model_json = folder / "model" / "model.json"
    with mlflow.start_run(run_id=run_id):  # the fluent calls below work on the active run
        _log_datasets(folder / "artifacts" / "data" / "dataset.json")
        if model_json.exists():
            spec = json.loads(model_json.read_text())
            model = keras.saving.load_model(folder / "model" / spec["file"])
            example = np.load(folder / "model" / "input_example.npy")
            uri = logged_models.log_model(model, example, file_stem=Path(spec["file"]).stem, register=spec["register"],
                                       name=spec["name"], metrics=spec["metrics"])
            mlflow.set_tag(T.MODEL_URI, uri)
    # end_run just marked it FINISHED now; the caller sets the recorded status and end time


def _log_datasets(path: Path) -> None:
    """Each split as a dataset input, as `MlflowTracker.log_dataset` logs it, from its recorded name and digest
    (the images themselves stayed on the machine that trained)."""
    if not path.exists():
        return
    info = json.loads(path.read_text())
    with warnings.catch_warnings():  # MLflow cannot tell which local source class a path is; either is right
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(info["source"])
    for split, counts in info["counts"].items():
        dataset = MetaDataset(source, name=f"{info['name']}-{split}", digest=f"{info['digest']}-{split}"[:36])
        mlflow.log_input(dataset, context=split, tags=records.input_tags(counts, info["synthetic"]))


def _metric_lines(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
