"""`fer-exp import-run FOLDER`: a file-only run (`files.FileTracker`) becomes an ordinary MLflow run.

The run keeps its name, tags, description, params, epoch metrics (with their steps and timestamps),
per-epoch images (MLflow's image series), start/end times, status and artifacts; its `.keras` model is
logged with the Keras flavour as a LoggedModel carrying its metrics, exactly as a training run logs it.
The folder is marked with the new run id, so importing it twice is refused rather than duplicated.

The folder is untrusted input: it is read only through `run_folder.RunFolder` (no symlink followed,
every file size-capped), and no name read from a file may leave it (model.json's file is a plain name
in model/). Everything is read, checked with MLflow's own validation functions (mlflow.utils.validation)
and copied to a private staging folder before the run is created; MLflow only ever sees that copy. So
a refused import is one line (`ImportError_`, exit 2) and leaves no run, and one that fails after the
run exists (the store, say) deletes the run, with any model it logged, and its marker.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import InputTag, Metric
from mlflow.exceptions import MlflowException
from mlflow.utils import validation as V
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE
from PIL import Image

from . import files, logged_models, records
from . import tags as T
from .mlflow_tracker import MlflowTracker, mark_experiment
from .run_folder import MARKER, ImportError_, RunFolder, parse_json

BATCH = 1000  # MLflow's log_batch limit on metrics per call (params and tags: 100)
# Limits, far over what a training run writes (JSON records: run_folder.MAX_JSON_BYTES, 1 MiB each).
MAX_METRICS_BYTES = 64 << 20  # metrics.jsonl, input_example.npy
MAX_FILE_BYTES = 4 << 30      # each artifact, image and model file (and run_folder.MAX_FILES in all)
MAX_IMAGE_PIXELS = 50_000_000
IMAGE_NAME = re.compile(r"(\d+)-(\d+)\.png")
IMAGE_KEY = re.compile(r"[a-zA-Z0-9_\-./ ]+")  # what MlflowClient.log_image takes
MODEL_FILE = re.compile(r"\w[\w.-]*\.keras")    # a plain name in model/: no folder, no "..", not absolute


def import_runs(folders, *, experiment: str | None = None):
    """Import each folder — or, for a folder of run folders (what `export-run` writes), each one in it —
    parents before their children, each child linked to its parent's new run; yields (folder, run id)."""
    found = []
    for folder in map(Path, folders):
        with RunFolder(folder) as src:
            inner = [] if src.lstat("run.json") else [folder / name for name in src.run_folders()]
        found += inner or [folder]
    records = {}
    for folder in found:
        with RunFolder(folder) as src:
            meta = src.json("run.json") if src.lstat("run.json") else {}
        records[folder] = (str(meta.get("run_id", "")), meta.get("parent_run_id"))
    ids = {run_id for run_id, _ in records.values() if run_id}
    for folder, (_, parent) in records.items():
        if parent is not None and (not isinstance(parent, str) or parent not in ids):
            raise ImportError_(f"'{folder / 'run.json'}' names parent run {parent!r}, which is none of the folders "
                               f"being imported: import the folder export-run wrote (parent and children together)")
    new: dict[str, str] = {}
    for folder in sorted(found, key=lambda f: records[f][1] is not None):  # a set's parent first
        run_id, parent = records[folder]
        new[run_id] = import_run(folder, experiment=experiment, parent_run_id=new.get(parent) if parent else None)
        yield folder, new[run_id]


def import_run(folder: str | Path, *, experiment: str | None = None, parent_run_id: str | None = None) -> str:
    """Create the MLflow run for `folder` (under `parent_run_id`, where given) and return its id."""
    folder = Path(folder)
    with RunFolder(folder) as src, tempfile.TemporaryDirectory(prefix="fer-import-") as stage:
        plan = _read(src, Path(stage), experiment)  # all checks pass before anything is written
        if parent_run_id:
            plan["tags"][MLFLOW_PARENT_RUN_ID] = parent_run_id
        MlflowTracker().check_store()
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(plan["experiment"])
        exp_id = exp.experiment_id if exp else client.create_experiment(plan["experiment"])
        mark_experiment(exp_id)
        mark = src.claim(MARKER)  # O_EXCL: a second import of the same folder at the same time is refused
        run_id = ""
        try:
            meta = plan["meta"]
            run_id = client.create_run(exp_id, start_time=meta["start_time"], tags=plan["tags"],
                                       run_name=meta["run_name"]).info.run_id
            _mark(mark, run_id=run_id, complete=False)  # a killed import names the run it left
            _log(client, run_id, plan)
            client.set_terminated(run_id, meta["status"], end_time=meta["end_time"])  # the status it had
            _mark(mark, run_id=run_id, complete=True)
        except BaseException:
            try:
                if run_id:
                    _discard(client, exp_id, run_id)
            finally:
                os.unlink(MARKER, dir_fd=src.fd)  # only the name: never a file it might point at
            raise
        finally:
            os.close(mark)
    return run_id


def _mark(fd: int, **record) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({**record, "tracking_uri": mlflow.get_tracking_uri()}).encode(), 0)


def _discard(client: mlflow.MlflowClient, exp_id: str, run_id: str) -> None:
    """A failed import leaves no run: it ends FAILED (never RUNNING) and is deleted, with any model it made
    (`_log`'s start_run has ended its fluent run already)."""
    with contextlib.suppress(MlflowException):  # a store without the model registry has no versions
        for version in client.search_model_versions(f"run_id = '{run_id}'"):
            client.delete_model_version(version.name, version.version)
    for model in client.search_logged_models([exp_id], filter_string=f"source_run_id = '{run_id}'"):
        client.delete_logged_model(model.model_id)
    client.set_terminated(run_id, "FAILED")
    client.delete_run(run_id)


def _log(client: mlflow.MlflowClient, run_id: str, plan: dict) -> None:
    for i in range(0, len(plan["params"]), V.MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=plan["params"][i:i + V.MAX_PARAMS_TAGS_PER_BATCH])
    for i in range(0, len(plan["metrics"]), BATCH):
        client.log_batch(run_id, metrics=plan["metrics"][i:i + BATCH])
    if plan["artifacts"]:
        client.log_artifacts(run_id, str(plan["artifacts"]))
    for path, key, step, stamp in plan["images"]:
        with Image.open(path, formats=["PNG"]) as image:
            pixels = np.asarray(image.convert("RGB"))
        client.log_image(run_id, pixels, key=key, step=step, timestamp=stamp, synchronous=True)
    with mlflow.start_run(run_id=run_id):  # the fluent calls below work on the active run
        for dataset, split, input_tags in plan["datasets"]:
            mlflow.log_input(dataset, context=split, tags=input_tags)
        if plan["model"]:
            final = {m.key: m.timestamp for m in plan["metrics"] if m.step == 0}  # the model's figures are these entries
            stamp = next((final[k] for k in plan["model"]["metrics"] if k in final), None)
            datasets = {records.metric_prefix(split): dataset for dataset, split, _ in plan["datasets"]}
            uri = logged_models.log_model(**plan["model"], datasets=datasets, timestamp=stamp)
            mlflow.set_tag(T.MODEL_URI, uri)
    # end_run just marked it FINISHED now; the caller sets the recorded status and end time


def _read(src: RunFolder, stage: Path, experiment: str | None) -> dict:
    """Every file the import uses, read and checked; what MLflow will take, copied under `stage`."""
    if src.lstat("run.json") is None:
        raise ImportError_(f"'{src.path}' is not a file-only run folder (no run.json): pass the folder a run "
                           f"trained with --run-folder wrote, e.g. runs-offline/<run id>")
    where = src.name("run.json")
    meta = {"source": "fer-exp", "description": "", **src.json("run.json")}
    if meta.get("format") != files.FORMAT:
        raise ImportError_(f"'{src.path}' has run-folder format {meta.get('format')!r}, this version reads "
                           f"{files.FORMAT}: import it with the fer_experiments version that wrote it")
    src.check_unmarked()
    for key, kind in (("experiment", str), ("run_name", str), ("status", str), ("start_time", int),
                      ("end_time", int | None), ("tags", dict), ("description", str), ("source", str)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ImportError_(f"'{where}' has {key} {meta.get(key)!r}: it is no run.json train --run-folder wrote")
    if meta["status"] == "RUNNING":
        raise ImportError_(f"'{src.path}' is still RUNNING (or its process died without ending it): import a "
                           f"finished run, or resume it first")
    if meta["status"] not in ("FINISHED", "FAILED", "KILLED"):
        raise ImportError_(f"'{where}' has status {meta['status']!r}, not FINISHED, FAILED or KILLED: fix it")
    plan = {"meta": meta, "experiment": experiment or meta["experiment"]}
    _valid(where, f"experiment {plan['experiment']!r}", V._validate_experiment_name, plan["experiment"])
    if mine := [k for k in meta["tags"] if k.startswith("mlflow.")]:  # MLflow's tags: the import's to set
        raise ImportError_(f"'{where}' sets MLflow's own tag {mine[0]!r}: import-run sets those itself, remove it")
    tags = {**_strings(where, "tag", meta["tags"]), T.IMPORTED_FROM: str(src.path.resolve()),
            MLFLOW_SOURCE_NAME: meta["source"], MLFLOW_SOURCE_TYPE: "LOCAL",
            **({MLFLOW_RUN_NOTE: meta["description"]} if meta["description"] else {})}
    _valid(where, f"run name {meta['run_name']!r}", V._validate_tag, "mlflow.runName", meta["run_name"])
    plan["tags"] = {t.key: t.value for t in (_valid(where, f"tag {k!r}", V._validate_tag, k, v)
                                              for k, v in tags.items())}
    params = _strings(src.name("params.json"), "param", src.json("params.json", {}))
    plan["params"] = [_valid(src.name("params.json"), f"param {k!r}", V._validate_param, k, v)
                      for k, v in params.items()]
    plan["metrics"] = _metrics(src)
    copied = [src.copy(rel, stage / rel, MAX_FILE_BYTES) for rel in src.walk("artifacts")]
    plan["artifacts"] = stage / "artifacts" if copied else None
    plan["images"] = _images(src, stage)
    plan["datasets"] = _datasets(src)
    plan["model"] = _model(src, stage) if src.lstat("model/model.json") else None
    return plan


def _valid(where: str, what: str, check, *args):
    """One of MLflow's validation functions (mlflow.utils.validation); its refusal is one line naming the file."""
    try:
        return check(*args)
    except (MlflowException, TypeError) as exc:  # TypeError: a number where MLflow wants a name
        reason = (getattr(exc, "message", str(exc)).strip().splitlines() or ["not valid"])[0]
        raise ImportError_(f"'{where}' has {what}, which MLflow refuses ({reason}): fix or remove it") from None


def _strings(where: str, what: str, record) -> dict[str, str]:
    bad = [k for k, v in record.items() if not isinstance(v, str)] if isinstance(record, dict) else ["(all)"]
    if bad:
        raise ImportError_(f"'{where}' has {what} {bad[0]!r} that is not a string: it is no file train --run-folder "
                           f"wrote")
    return record


def _metrics(src: RunFolder) -> list[Metric]:
    out = []
    for n, line in enumerate((src.read("metrics.jsonl", MAX_METRICS_BYTES) or b"").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{src.name('metrics.jsonl')} line {n}"
        m = parse_json(line, where)
        if not isinstance(m, dict) or not all(type(m.get(k)) is int for k in ("step", "timestamp")):
            raise ImportError_(f"'{where}' is not a metric line (key, value, integer step and timestamp): fix it")
        _valid(where, f"metric {m.get('key')!r}", V._validate_metric, m.get("key"), m.get("value"), m["timestamp"],
               m["step"])
        out.append(Metric(m["key"], float(m["value"]), m["timestamp"], m["step"]))
    return out


def _images(src: RunFolder, stage: Path) -> list[tuple[Path, str, int, int]]:
    """images/<key, "/" as "~">/<step>-<timestamp ms>.png, as `FileTracker.log_image` writes them."""
    out = []
    for i, rel in enumerate(rel for rel in src.walk(files.IMAGES) if rel.endswith(".png")):
        parts = rel.split("/")
        key, name = parts[-2].replace("~", "/"), IMAGE_NAME.fullmatch(parts[-1])
        if len(parts) != 3 or not name or not IMAGE_KEY.fullmatch(key) or V.path_not_unique(key):
            raise ImportError_(f"'{src.name(rel)}' is not images/<key>/<step>-<timestamp ms>.png with a key MLflow "
                               f"takes (letters, digits, _ - . and space, '~' for '/', no '..'): rename or remove it")
        path = src.copy(rel, stage / files.IMAGES / f"{i}.png", MAX_FILE_BYTES)
        try:
            with Image.open(path, formats=["PNG"]) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise ValueError(f"{image.width}x{image.height} pixels, over {MAX_IMAGE_PIXELS}")
                image.verify()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ImportError_(f"'{src.name(rel)}' is not an image import-run takes ({exc}): remove it") from None
        out.append((path, key, int(name[1]), int(name[2])))
    return out


def _datasets(src: RunFolder) -> list:
    """Each split as a dataset input, as `MlflowTracker.log_dataset` logs it, from its recorded name and digest
    (the images themselves stayed on the machine that trained)."""
    where, info = src.name("artifacts/data/dataset.json"), src.json("artifacts/data/dataset.json", {})
    counts = info.get("counts", {})
    if not (isinstance(counts, dict) and isinstance(info.get("source", ""), str) and all(
            isinstance(c, dict) and all(type(v) is int for v in c.values()) for c in counts.values())):
        raise ImportError_(f"'{where}' is not the dataset record train --run-folder writes: fix or remove it")
    out = []
    for split, split_counts in counts.items():
        with warnings.catch_warnings():  # MLflow cannot tell which local source class a path is; either is right
            warnings.simplefilter("ignore", UserWarning)
            source = _valid(where, f"source {info['source']!r}", resolve_dataset_source, info.get("source"))
        dataset = MetaDataset(source, name=f"{info.get('name')}-{split}", digest=f"{info.get('digest')}-{split}"[:36])
        _valid(where, f"dataset {dataset.name!r}", V._validate_dataset, dataset._to_mlflow_entity())
        input_tags = records.input_tags(split_counts, bool(info.get("synthetic")))
        for k, v in input_tags.items():
            _valid(where, f"counts of {split!r}", V._validate_input_tag, InputTag(k, v))
        out.append((dataset, split, input_tags))
    return out


def _model(src: RunFolder, stage: Path) -> dict:
    where, spec = src.name("model/model.json"), src.json("model/model.json")
    file, name = spec.get("file"), spec.get("name")
    register, metrics = spec.get("register") or "", spec.get("metrics") or {}
    if not isinstance(file, str) or not MODEL_FILE.fullmatch(file):
        raise ImportError_(f"'{where}' names model file {file!r}: it must be a file name in model/ (no folder, no "
                           f"'..', not absolute), as train --run-folder writes it")
    if not (isinstance(name, str) and isinstance(register, str) and isinstance(metrics, dict)):
        raise ImportError_(f"'{where}' is not the model record train --run-folder writes: fix it")
    _valid(where, f"model name {name!r}", V._validate_logged_model_name, name or None)
    if register:
        _valid(where, f"registered model name {register!r}", V._validate_model_name, register)
    for key, value in metrics.items():
        _valid(where, f"metric {key!r}", V._validate_metric, key, value, 0, 0)
    model_file = src.copy(f"model/{file}", stage / "model" / file, MAX_FILE_BYTES)
    example_file = src.copy("model/input_example.npy", stage / "model" / "input_example.npy", MAX_METRICS_BYTES)
    try:
        if not zipfile.is_zipfile(model_file):
            raise ValueError("not a .keras file: a .keras file is a zip archive")
        model = keras.saving.load_model(model_file)  # safe mode: no code in the file runs
        example = np.load(example_file, allow_pickle=False)
        want = model.input_shape[1:]
        if example.dtype.kind != "f" or example.ndim != len(want) + 1 or any(
                w not in (None, s) for w, s in zip(want, example.shape[1:])):
            raise ValueError(f"input_example.npy {example.dtype} {example.shape} does not fit {model.input_shape}")
    except Exception as exc:  # an untrusted file: whatever Keras or NumPy make of it, it is no model to log
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(str(stage), str(src.path))
        raise ImportError_(f"'{src.name(f'model/{file}')}' is no model import-run can log ({reason}): import a "
                           f"folder train --run-folder wrote") from None
    return {"model": model, "x_example": example, "file_stem": Path(file).stem, "register": register,
            "name": name or "model", "metrics": metrics}
