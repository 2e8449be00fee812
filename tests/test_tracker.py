"""One tracking API: the three trackers implement the `Tracker` protocol with the same signatures,
end their runs by the same rule, and nothing outside `tracking/` talks to MLflow."""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import mlflow
import pytest
from conftest import all_runs

from fer_experiments.tracking import FileTracker, MlflowTracker, NullTracker, Tracker

PACKAGE = Path(__file__).resolve().parent.parent / "fer_experiments"
PROTOCOL_METHODS = [name for name, value in vars(Tracker).items() if callable(value) and not name.startswith("_")]


def make(cls, tmp_path):
    return cls(tmp_path / "runs") if cls is FileTracker else cls()


@pytest.mark.parametrize("cls", [MlflowTracker, FileTracker, NullTracker])
def test_every_tracker_implements_the_protocol_with_its_signatures(cls, tmp_path):
    assert len(PROTOCOL_METHODS) >= 14, PROTOCOL_METHODS
    tracker = make(cls, tmp_path)
    assert isinstance(tracker, Tracker)
    assert tracker.run_id == "" and isinstance(tracker.enabled, bool)
    for name in PROTOCOL_METHODS:
        want = inspect.signature(getattr(Tracker, name))
        got = inspect.signature(getattr(cls, name))
        described = [(p.name, p.kind, p.default) for p in want.parameters.values()]
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == described, (cls.__name__, name)


def _status(tracker, run_id: str) -> str:
    if isinstance(tracker, MlflowTracker):
        return mlflow.MlflowClient().get_run(run_id).info.status
    return json.loads((tracker.root / run_id / "run.json").read_text())["status"]


@pytest.mark.parametrize("cls", [MlflowTracker, FileTracker])
@pytest.mark.parametrize("body, status", [(None, "FINISHED"), (RuntimeError("bug"), "FAILED"),
                                          (KeyboardInterrupt(), "KILLED")])
def test_a_run_ends_by_one_rule_in_every_tracker(store, tmp_path, cls, body, status):
    tracker = make(cls, tmp_path)
    seen = []
    with pytest.raises(type(body)) if body else _nothing():
        with tracker.run(experiment="ending", run_name="r", tags={"k": "v"}) as run_id:
            seen.append(run_id)
            assert tracker.run_id == run_id
            tracker.log_params({"a": 1})
            tracker.log_metrics({"m": 0.5}, step=3)
            if body:
                raise body
    assert tracker.run_id == "" and _status(tracker, seen[0]) == status
    if cls is MlflowTracker:
        (run,) = all_runs(["ending"])
        assert run.data.params == {"a": "1"} and run.data.metrics == {"m": 0.5} and run.data.tags["k"] == "v"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_run_the_store_refuses_while_it_starts_ends_failed_not_running(store):
    # The run exists by the time its tags are set: a tag the store refuses (a key that would resolve
    # to another name) used to escape before the ending rule and leave it RUNNING and active.
    with pytest.raises(mlflow.exceptions.MlflowException, match="tags"):
        with MlflowTracker().run(experiment="refused", run_name="r", tags={"../escape": "v"}):
            pytest.fail("the run should not have started")
    (run,) = all_runs(["refused"])
    assert run.info.status == "FAILED" and mlflow.active_run() is None


def test_experiment_tags_already_set_are_not_written_again(store):
    # Processes starting runs in one experiment at once each set its tags; on SQLite a second insert
    # of the same key fails, so a tag holding its value already is left alone.
    from fer_experiments.tracking import ui_views

    exp = mlflow.MlflowClient().create_experiment("tagged")
    ui_views.set_experiment_tag(exp, "k", "v")
    mlflow.MlflowClient().delete_experiment(exp)  # the store now refuses every tag write to it
    ui_views.set_experiment_tag(exp, "k", "v")  # the same value: nothing written, nothing refused
    with pytest.raises(mlflow.exceptions.MlflowException, match="active"):
        ui_views.set_experiment_tag(exp, "k", "other")


def test_null_tracker_keeps_no_run(store, tmp_path):
    tracker = NullTracker()
    with tracker.run(experiment="none", run_name="r", tags={}) as run_id:
        tracker.log_params({"a": 1})
    assert run_id.startswith("untracked-") and not all_runs()
    assert {p.name for p in tmp_path.iterdir()} <= {"mlflow.db", "mlruns"}  # only the empty store's own files


def test_nothing_outside_tracking_imports_mlflow():
    stray = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "tracking":
            continue
        for line in path.read_text().splitlines():
            if re.match(r"\s*(import mlflow|from mlflow(?!\.exceptions)\b)", line):
                stray.append(f"{path.relative_to(PACKAGE)}: {line.strip()}")
    assert not stray, stray
