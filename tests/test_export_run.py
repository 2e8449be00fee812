"""`fer-exp export-run` → `fer-exp import-run`: a run (and a repeat set with its seeds) carried from one
real SQLite MLflow store to another, compared field by field; what the export must refuse."""
from __future__ import annotations

import json

import mlflow
from click.testing import CliRunner
from conftest import fresh_store

from fer_experiments.cli import main
from fer_experiments.tracking import tags as T


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _repeat_set(client, exp_id):
    """A repeat set's parent with two seeds, one of them still RUNNING (a set in progress), as the trainer
    tags them; the finished seed has a metric history, params, a table and an image series."""
    parent = client.create_run(exp_id, run_name="custom-2seeds-synthetic",
                               tags={T.RUN_KIND: "repeats", T.REPEAT_GROUP: "k1", "mlflow.note.content": "two seeds"})
    pid = parent.info.run_id
    seeds = []
    for seed in (7, 8):
        child = client.create_run(exp_id, run_name=f"custom-seed{seed}", tags={
            "mlflow.parentRunId": pid, T.REPEAT_GROUP: "k1", T.REPEAT_SEED: str(seed), T.REPEAT_SET: "custom on x"})
        seeds.append(child.info.run_id)
    done = seeds[0]
    client.log_param(done, "seed", "7")
    for step, value in enumerate([0.3, 0.5, 0.6], 1):
        client.log_metric(done, "epoch/accuracy", value, step=step, timestamp=1_000 + step)
    client.log_metric(done, "test_accuracy", 0.55)
    client.log_metric(done, "system/cpu_utilization_percentage", 97.0)
    client.log_text(done, "file,label,predicted,correct\na.png,0,0,1\n", "evaluation/test/predictions.csv")
    client.log_dict(done, {"name": "synthetic-x", "digest": "d1", "source": "/data", "synthetic": True,
                     "counts": {"test": {"angry": 1}}}, "data/dataset.json")
    client.log_text(done, "not carried", "keras/model-uncalibrated.keras")
    client.set_terminated(done, "FINISHED")
    client.log_metric(pid, "test_accuracy", 0.55, step=1)
    return pid, done, seeds[1]


def test_a_repeat_set_travels_to_another_store_with_its_finished_seeds_linked_again(store, tmp_path, monkeypatch,
                                                                                     empty_store_file):
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("carried")
    pid, done, running = _repeat_set(client, exp_id)
    out = tmp_path / "carried"
    result = invoke("export-run", pid, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([pid, done])  # the RUNNING seed stays behind
    parent_meta = json.loads((out / pid / "run.json").read_text())
    assert parent_meta["status"] == "KILLED"  # in progress: resumable where it lands, as a killed set is
    assert json.loads((out / done / "run.json").read_text())["parent_run_id"] == pid
    assert not (out / done / "artifacts" / "keras").exists()

    other = tmp_path / "other"
    other.mkdir()
    uri = fresh_store(other, empty_store_file)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    imported = invoke("import-run", out)
    assert imported.exit_code == 0, imported.output
    there = mlflow.MlflowClient()
    runs = {r.data.tags["mlflow.runName"]: r for r in there.search_runs([there.get_experiment_by_name("carried")
                                                                           .experiment_id])}
    assert set(runs) == {"custom-2seeds-synthetic", "custom-seed7"}
    new_parent, new_child = runs["custom-2seeds-synthetic"], runs["custom-seed7"]
    assert new_child.data.tags["mlflow.parentRunId"] == new_parent.info.run_id != pid
    assert new_parent.info.status == "KILLED" and new_child.info.status == "FINISHED"
    assert new_parent.data.tags["mlflow.note.content"] == "two seeds"
    assert {k: new_child.data.tags[k] for k in (T.REPEAT_GROUP, T.REPEAT_SEED, T.REPEAT_SET)} == \
        {T.REPEAT_GROUP: "k1", T.REPEAT_SEED: "7", T.REPEAT_SET: "custom on x"}
    assert new_child.data.params == {"seed": "7"}
    history = [(m.step, m.value, m.timestamp) for m in there.get_metric_history(new_child.info.run_id, "epoch/accuracy")]
    assert history == [(1, 0.3, 1_001), (2, 0.5, 1_002), (3, 0.6, 1_003)]
    table = mlflow.artifacts.load_text(f"runs:/{new_child.info.run_id}/evaluation/test/predictions.csv")
    assert table == "file,label,predicted,correct\na.png,0,0,1\n"
    # Importing the same folder twice is refused: the parent's marker says where it went.
    again = invoke("import-run", out)
    assert again.exit_code == 2 and "was imported already" in again.output


def test_export_run_takes_only_the_artifacts_asked_for(store, tmp_path):
    client = mlflow.MlflowClient()
    pid, done, _ = _repeat_set(client, client.create_experiment("some"))
    result = invoke("export-run", done, "--out", tmp_path / "x", "--include", "evaluation/*/predictions.csv")
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(tmp_path / "x" / done).as_posix() for p in (tmp_path / "x" / done).rglob("*")
                   if p.is_file())
    assert files == ["artifacts/evaluation/test/predictions.csv", "metrics.jsonl", "params.json", "run.json"]


def test_export_and_import_refuse_what_they_cannot_carry(store, tmp_path):
    client = mlflow.MlflowClient()
    pid, done, running = _repeat_set(client, client.create_experiment("refusals"))
    busy = invoke("export-run", running, "--out", tmp_path / "x")
    assert busy.exit_code == 2 and "is still RUNNING" in busy.output
    assert invoke("export-run", done, "--out", tmp_path / "x").exit_code == 0
    twice = invoke("export-run", done, "--out", tmp_path / "x")
    assert twice.exit_code == 2 and "exists already" in twice.output
    # A seed without its parent: import-run cannot link it, and says so before importing anything.
    orphan = invoke("import-run", tmp_path / "x")
    assert orphan.exit_code == 2 and f"names parent run '{pid}'" in orphan.output
    assert len(orphan.output.strip().splitlines()) == 1
    assert not (tmp_path / "x" / done / "imported.json").exists()
    missing = invoke("export-run", "0" * 32, "--out", tmp_path / "y")
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1


def test_kept_records_are_saved_from_one_store_and_loaded_once_into_another(store, tmp_path, monkeypatch,
                                                                            empty_store_file):
    from benchmarks import records

    client = mlflow.MlflowClient()
    pid, done, _ = _repeat_set(client, client.create_experiment("fer2013"))
    kept = records.save(root=tmp_path / "runs")
    assert [p.name for p in kept] == ["custom-synthetic"]  # the set's name without its seed count
    assert sorted(p.name for p in kept[0].iterdir()) == sorted([pid, done])
    kept_keys = {json.loads(line)["key"] for line in (kept[0] / done / "metrics.jsonl").read_text().splitlines()}
    assert kept_keys == {"epoch/accuracy", "test_accuracy"}  # the system samples stay in the store
    assert records.load(root=tmp_path / "runs") == []  # this store holds the set already
    (tmp_path / "other").mkdir()
    uri = fresh_store(tmp_path / "other", empty_store_file)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    loaded = records.load(root=tmp_path / "runs")
    assert len(loaded) == 1 and mlflow.get_run(loaded[0]).data.tags[T.REPEAT_GROUP] == "k1"
    assert records.load(root=tmp_path / "runs") == []

    def files(root):
        return sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())

    # Saved back from the store it was loaded into (new run ids there, no new seed): the record as it was.
    before = files(tmp_path / "runs")
    records.save(root=tmp_path / "runs")
    assert files(tmp_path / "runs") == before and (tmp_path / "runs" / "custom-synthetic" / pid).is_dir()
    # A seed that finished in this store only: the set is exported again, with both seeds.
    client = mlflow.MlflowClient()
    seed8 = client.create_run(mlflow.get_run(loaded[0]).info.experiment_id, run_name="custom-seed8", tags={
        "mlflow.parentRunId": loaded[0], T.REPEAT_GROUP: "k1", T.REPEAT_SEED: "8", T.REPEAT_SET: "custom on x"})
    client.set_terminated(seed8.info.run_id, "FINISHED")
    (grown,) = records.save(root=tmp_path / "runs")
    assert seed8.info.run_id in {p.name for p in grown.iterdir()} and len(list(grown.iterdir())) == 3
    # Saved from a store that holds none of the sets: nothing is lost.
    (tmp_path / "empty").mkdir()
    mlflow.set_tracking_uri(fresh_store(tmp_path / "empty", empty_store_file))
    before = files(tmp_path / "runs")
    records.save(root=tmp_path / "runs")
    assert files(tmp_path / "runs") == before
