"""A run recorded in one folder, with no MLflow installed: for an accelerator machine without MLflow
or network. `fer-exp import-run FOLDER` later turns the folder into an ordinary MLflow run
(`tracking.imports`), so the run stands in the same UI as every other.

This module must not import mlflow. The folder:

    run.json        experiment, run name, tags, description, status, start/end times (ms)
    params.json     every param, as MLflow would store it (strings)
    metrics.jsonl   one JSON line per value: key, value, step, timestamp (ms)
    images/         <key>/<step>-<timestamp ms>.png: image series (per-epoch predictions; "/" in a key as "~")
    artifacts/      what an MLflow run's artifacts would hold (config.json, history/, evaluation/, …)
    model/          <stem>.keras, input_example.npy (two validation images), model.json (name, register,
                    the metrics to attach to the logged model)
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from pathlib import Path

import keras
import numpy as np

from ..errors import UserError
from . import records
from .base import check_resumable, ending
from .epochs import EpochMetrics

FORMAT = 1  # the folder layout's version, checked on import
IMAGES = "images"  # image series (key/step) live apart from artifacts: MLflow files them its own way


def _now_ms() -> int:
    return int(time.time() * 1000)


class FileTracker:
    """Records a training run into `root/<run id>/` (the `MlflowTracker` interface, no MLflow)."""

    enabled = True

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.folder: Path | None = None
        self.run_id = ""
        self._finals: set[str] = set()

    # -- the run ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def run(self, *, experiment: str, run_name: str, tags: dict, description: str = "",
            resume_run_id: str | None = None, parent_run_id: str | None = None):
        if parent_run_id:
            raise UserError("a file-only run has no parent: Optuna trials need a tracking store")
        self.run_id = resume_run_id or uuid.uuid4().hex
        self.folder = self.root / self.run_id
        (self.folder / "artifacts").mkdir(parents=True, exist_ok=True)
        if resume_run_id and (self.folder / "run.json").exists():
            check_resumable(resume_run_id, self._read("run.json")["status"])
        self._finals = {json.loads(line)["key"] for line in _lines(self.folder / "metrics.jsonl")} if resume_run_id else set()
        meta = self._read("run.json") if resume_run_id and (self.folder / "run.json").exists() else {
            "format": FORMAT, "run_id": self.run_id, "experiment": experiment, "run_name": run_name,
            "tags": {k: str(v) for k, v in tags.items()}, "description": description, "start_time": _now_ms(),
            "source": Path(sys.argv[0]).name or "python"}
        self._write_meta({**meta, "status": "RUNNING", "end_time": None})
        try:
            with ending(self._end, lambda: self.run_id):
                yield self.run_id
        finally:
            self.run_id = ""

    def _end(self, status: str) -> None:
        self._write_meta({**self._read("run.json"), "status": status, "end_time": _now_ms()})

    def _write_meta(self, meta: dict) -> None:
        self._write_json("run.json", meta)

    def _read(self, name: str):
        return json.loads((self.folder / name).read_text())

    def _write_json(self, name: str, obj) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))
        tmp.replace(path)  # never half-written

    def _artifact(self, path: str) -> Path:
        target = self.folder / "artifacts" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    # -- what the trainer records -----------------------------------------------------------------
    def log_config(self, config: dict, name: str = "config.json") -> None:
        self._artifact(name).write_text(json.dumps(config, indent=2))

    def log_params(self, params: dict) -> None:
        path = self.folder / "params.json"
        existing = json.loads(path.read_text()) if path.exists() else {}
        fresh = {k: records.param_value(v) for k, v in params.items() if k not in existing}
        self._write_json("params.json", {**existing, **fresh})

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        stamp = _now_ms()
        with open(self.folder / "metrics.jsonl", "a") as f:
            for key, value in metrics.items():
                f.write(json.dumps({"key": key, "value": float(value), "step": int(step), "timestamp": stamp}) + "\n")

    def log_image(self, image: np.ndarray, *, key: str, step: int) -> None:
        """images/<key, "/" as "~">/<step>-<timestamp ms>.png: replayed by the import as MLflow's image
        series ("~" is not allowed in an MLflow image key, so the folder name maps back uniquely)."""
        import cv2

        target = self.folder / IMAGES / key.replace("/", "~") / f"{int(step)}-{_now_ms()}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR))

    def log_dataset(self, ds) -> None:
        self._artifact("data/dataset.json").write_text(json.dumps(records.dataset_record(ds), indent=1))
        self.log_params(records.dataset_params(ds))

    def epoch_callback(self, n_train: int) -> keras.callbacks.Callback:
        return EpochMetrics(n_train, self.log_metrics)

    def log_evaluation(self, ev, title: str) -> dict[str, float]:
        import matplotlib.pyplot as plt

        metrics = ev.metrics()
        self._log_finals(metrics)
        for path, item in records.evaluation_artifacts(ev, title).items():
            if isinstance(item, str):
                self._artifact(path).write_text(item)
            else:
                item.savefig(self._artifact(path))
                plt.close(item)
        return metrics

    def log_history(self, history_csv: Path, curves_fig) -> None:
        import matplotlib.pyplot as plt

        self._artifact(f"history/{Path(history_csv).name}").write_bytes(Path(history_csv).read_bytes())
        curves_fig.savefig(self._artifact("history/training_curves.png"))
        plt.close(curves_fig)

    def _log_finals(self, metrics: dict) -> None:  # each final value once, as MlflowTracker._log_finals
        self.log_metrics({k: v for k, v in metrics.items() if k not in self._finals})

    def log_summary(self, summary: dict, all_metrics: dict) -> None:
        self._log_finals(summary)
        self._artifact("evaluation/metrics.json").write_text(json.dumps(all_metrics, indent=1, sort_keys=True))

    def log_model(self, model: keras.Model, x_example, *, file_stem: str, register: str = "", name: str = "model",
                  metrics: dict | None = None, plain: keras.Model | None = None, diagram: bool = True,
                  copies: bool = True) -> str:
        folder = self.folder / "model"
        folder.mkdir(exist_ok=True)
        model.save(folder / f"{file_stem}.keras")
        if plain is not None and copies:  # an ordinary artifact once imported, as in a tracked run
            plain.save(self._artifact(f"keras/{file_stem}-uncalibrated.keras"))
        np.save(folder / "input_example.npy", np.asarray(x_example[:2], dtype="float32"))
        (folder / "model.json").write_text(json.dumps(
            {"file": f"{file_stem}.keras", "name": name, "register": register, "metrics": metrics or {}}, indent=1))
        return str(folder / f"{file_stem}.keras")  # a .keras path: `predict`/`evaluate` take it as it is

    def set_tag(self, key: str, value: str) -> None:
        meta = self._read("run.json")
        self._write_meta({**meta, "tags": {**meta["tags"], key: str(value)}})

    # -- resuming a killed run ----------------------------------------------------------------------
    def run_config(self, run_id: str) -> dict:
        check_resumable(run_id, json.loads(self._existing(run_id, "run.json").read_text())["status"])
        return json.loads(self._existing(run_id, "artifacts/config.json").read_text())

    def run_tags(self, run_id: str) -> dict:
        return json.loads(self._existing(run_id, "run.json").read_text())["tags"]

    def _existing(self, run_id: str, name: str) -> Path:
        path = self.root / run_id / name
        if not path.exists():
            raise UserError(f"no file-only run '{run_id}' under {self.root} ({name} missing): pass the id of a "
                            f"folder there")
        return path


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def is_run_folder(path: Path) -> bool:
    return (Path(path) / "run.json").is_file()
