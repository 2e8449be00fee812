"""`fer-exp export-run REF --out DIR`: MLflow runs written as file-only run folders (`files` layout),
which `fer-exp import-run DIR` turns back into runs in another store — a run's record carried to another
machine, or kept beside the figures it produced.

What travels: name, tags, description, status, start/end times, params, every metric's full history
(steps and timestamps) and the artifacts that match `include` (the per-image predictions, confusion
matrices, curves, config, dataset record …). What stays: MLflow's own tags (the import sets them),
the image series and the LoggedModel (a record, not a model: export the model with `fer-exp export`).
A repeat set's parent brings its finished seeds along, each folder naming its parent, so the import
links them again and `train --repeats` can go on with the missing seeds in the other store.
"""
from __future__ import annotations

import fnmatch
import json
import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE, MLFLOW_SOURCE_NAME

from ..errors import UserError
from . import files
from . import tags as T

SKIPPED = ("images/*", "keras/*")  # MLflow's image series (files of its own), model copies


def export_runs(run_id: str, out: str | Path, include: tuple[str, ...] = ("*",),
                skip_metrics: tuple[str, ...] = ()) -> list[Path]:
    """`run_id`'s folder under `out` (and, for a repeat set's parent, one per FINISHED seed); the folders.
    `include`: the artifacts to take (globs); `skip_metrics`: metric keys to leave out (e.g. "system/*")."""
    from .mlflow_tracker import MlflowTracker

    tracker = MlflowTracker()
    run = tracker._existing_run(run_id)
    runs = [run]
    if run.data.tags.get(T.RUN_KIND) == "repeats":
        runs += list(_finished_children(tracker, run).values())
    elif run.info.status == "RUNNING":
        raise UserError(f"run {run_id} is still RUNNING: export it once it has ended (or resume and finish it)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a folder (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for r in runs:
        folder = out / r.info.run_id
        if folder.exists():
            raise UserError(f"{folder} exists already: export into an empty folder, or delete it first")
        written.append(_export(r, folder, include, skip_metrics))
    return written


def _export(run, folder: Path, include: tuple[str, ...], skip_metrics: tuple[str, ...]) -> Path:
    client = mlflow.MlflowClient()
    tags = run.data.tags
    status = run.info.status
    if status == "RUNNING":  # a repeat set in progress: the import's set is resumable, as a killed one is
        status = "KILLED"
    meta = {"format": files.FORMAT, "run_id": run.info.run_id,
            "experiment": mlflow.get_experiment(run.info.experiment_id).name,
            "run_name": run.info.run_name or "", "status": status,
            "start_time": run.info.start_time, "end_time": run.info.end_time,
            "tags": {k: v for k, v in tags.items() if not k.startswith("mlflow.")},
            "description": tags.get(MLFLOW_RUN_NOTE, ""),
            "source": Path(tags.get(MLFLOW_SOURCE_NAME, "fer-exp")).name or "fer-exp"}
    if tags.get(MLFLOW_PARENT_RUN_ID):
        meta["parent_run_id"] = tags[MLFLOW_PARENT_RUN_ID]
    with tempfile.TemporaryDirectory(prefix=".fer-export-", dir=folder.parent) as stage:
        stage = Path(stage) / "run"
        (stage / "artifacts").mkdir(parents=True)
        (stage / "run.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        (stage / "params.json").write_text(json.dumps(run.data.params, indent=1, sort_keys=True))
        with open(stage / "metrics.jsonl", "w") as f:
            for key in sorted(k for k in run.data.metrics if not any(fnmatch.fnmatch(k, p) for p in skip_metrics)):
                for m in client.get_metric_history(run.info.run_id, key):
                    f.write(json.dumps({"key": m.key, "value": m.value, "step": m.step, "timestamp": m.timestamp}) + "\n")
        for path in _artifact_paths(client, run.info.run_id, ""):
            if any(fnmatch.fnmatch(path, p) for p in include) and not any(fnmatch.fnmatch(path, p) for p in SKIPPED):
                client.download_artifacts(run.info.run_id, path, str(stage / "artifacts" / Path(path).parent))
        shutil.move(str(stage), folder)  # whole or not at all
    return folder


def _artifact_paths(client, run_id: str, path: str) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path or None):
        out += _artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def _finished_children(tracker, parent) -> dict:
    """seed → the FINISHED run of a repeat set's parent (what an export takes along)."""
    children = tracker.repeat_children(parent.info.run_id, parent.data.tags.get(T.REPEAT_GROUP, ""))
    return {seed: r for seed, r in children.items() if r.info.status == "FINISHED"}


def finished_seeds(parent_run_id: str) -> set[int]:
    """The seeds of a repeat set's parent that have a FINISHED run (what `export_runs` takes along)."""
    from .mlflow_tracker import MlflowTracker

    tracker = MlflowTracker()
    return set(_finished_children(tracker, tracker._existing_run(parent_run_id)))


def repeat_sets(experiment: str) -> list[tuple[str, str, str]]:
    """(parent run id, run name, `fer.repeat_group`) of every repeat set in `experiment` (none if it is missing)."""
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = mlflow.search_runs([exp.experiment_id], f"tags.`{T.RUN_KIND}` = 'repeats'", output_format="list")
    return [(r.info.run_id, r.info.run_name, r.data.tags.get(T.REPEAT_GROUP, "")) for r in runs]
