"""Seed repeats (`train --repeats N`) and `fer-exp compare` on them: real Keras training on tiny
synthetic data, recorded in a temp SQLite MLflow store."""
from __future__ import annotations

import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import fresh_store

from fer_experiments.cli import main
from fer_experiments.tracking import tags as T

TINY = ["--data", "synthetic:600", "--epochs", "1", "--batch-size", "32", "--diagnostics", "false"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_id_of(output: str) -> str:
    return re.search(r"^run (\w+) finished", output, re.M).group(1)


def _set(parent_id: str):
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return client, parent, children


@pytest.mark.slow
def test_repeats_make_seeded_siblings_a_parent_of_their_mean_and_resume_missing_seeds(store, tmp_path, monkeypatch,
                                                                                     empty_store_file):
    result = invoke("train", "--model", "custom", "--seed", 7, "--repeats", 3, *TINY)
    assert result.exit_code == 0, result.output
    client, parent, children = _set(result.output.split("repeat set: parent run ")[1].split()[0])
    assert parent.info.status == "FINISHED" and parent.data.tags[T.RUN_KIND] == "repeats"
    assert sorted(int(c.data.tags[T.REPEAT_SEED]) for c in children) == [7, 8, 9]
    assert sorted(c.data.params["seed"] for c in children) == ["7", "8", "9"]
    # Each seed's name says which set it belongs to (a table of runs from two sets stays readable).
    assert {c.data.tags["mlflow.runName"] for c in children} == {
        parent.data.tags["mlflow.runName"].replace("-3seeds-", "-") + f"-seed{s}" for s in (7, 8, 9)}
    assert {c.data.tags[T.REPEAT_GROUP] for c in children} == {parent.data.tags[T.REPEAT_GROUP]}
    # What MLflow's Group by (the printed view) groups them by: the set in words, the same on every seed.
    assert {c.data.tags[T.REPEAT_SET] for c in children} == {parent.data.tags[T.REPEAT_SET]}
    assert parent.data.tags[T.REPEAT_SET].startswith("custom batch_size=32 diagnostics=false epochs=1 on synthetic [")
    for key in ("validation_accuracy", "test_accuracy", "test_macro_f1"):
        values = np.array([c.data.metrics[key] for c in children])
        assert parent.data.metrics[key] == pytest.approx(values.mean())
        assert parent.data.metrics[f"{key}_sd"] == pytest.approx(values.std(ddof=1))
        assert parent.data.metrics[f"{key}_ci_low"] <= values.mean() <= parent.data.metrics[f"{key}_ci_high"]
    # Each child's test accuracy has its interval over the images, and its per-image table agrees with it.
    child = children[0]
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=child.info.run_id,
                                                            artifact_path="evaluation/test/predictions.csv"))
    assert len(table) == int(child.data.params["n_test"])
    assert table["correct"].mean() == pytest.approx(child.data.metrics["test_accuracy"])
    assert child.data.metrics["test_accuracy_ci_low"] < child.data.metrics["test_accuracy"] < \
        child.data.metrics["test_accuracy_ci_high"]
    # A set with a lost seed (its run deleted) continues: the same parent, only that seed trained again.
    lost = next(c for c in children if c.data.tags[T.REPEAT_SEED] == "8")
    client.delete_run(lost.info.run_id)
    again = invoke("train", "--model", "custom", "--seed", 7, "--repeats", 3, *TINY)
    assert again.exit_code == 0, again.output
    assert "seed 7: finished before" in again.output and "seed 9: finished before" in again.output
    _, parent2, children2 = _set(parent.info.run_id)
    assert parent2.info.status == "FINISHED"
    assert {c.info.run_id for c in children2} - {c.info.run_id for c in children} != set()
    assert sorted(c.data.tags[T.REPEAT_SEED] for c in children2) == ["7", "8", "9"]

    # compare: the set against a single run of another model on the same images, then a run on other images.
    other = invoke("train", "--model", "fer_compact", "--seed", 7, *TINY)
    assert other.exit_code == 0, other.output
    other_id = run_id_of(other.output)
    out = tmp_path / "cmp"
    cmp = invoke("compare", parent.info.run_id, other_id, "--out", out)
    assert cmp.exit_code == 0, cmp.output
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) == 1 and pairs["test"][0].startswith("one-sample t over 3 seeds")
    assert {"compare.md", "arms.csv", "pairs.csv", "forest.png"} <= {p.name for p in out.iterdir()}
    logged = client.search_runs([parent.info.experiment_id], f"tags.`{T.RUN_KIND}` = 'compare'")
    assert len(logged) == 1 and len(logged[0].data.tags[T.COMPARED_RUNS].split()) == 4
    model_uri = re.search(r"^model: (\S+)", other.output, re.M).group(1)
    elsewhere = invoke("evaluate", model_uri, "--data", "synthetic:700", "--split", "test", "--tta", "flip")
    assert elsewhere.exit_code == 0, elsewhere.output  # the same model, evaluated on other faces
    evaluation = re.search(r"^evaluation run (\w+)", elsewhere.output, re.M).group(1)
    refused = invoke("compare", other_id, evaluation, "--no-log", "--out", out)
    assert refused.exit_code == 2 and "were not evaluated on the same images" in refused.output
    assert len(refused.output.strip().splitlines()) == 1

    # The set carried to another store (export-run, import-run): the same command there finds every seed
    # finished and trains none; compare reads the carried per-image tables.
    assert invoke("export-run", parent.info.run_id, "--out", tmp_path / "carried").exit_code == 0
    assert invoke("export-run", other_id, "--out", tmp_path / "carried").exit_code == 0
    (tmp_path / "other").mkdir()
    uri = fresh_store(tmp_path / "other", empty_store_file)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    imported = invoke("import-run", tmp_path / "carried")
    assert imported.exit_code == 0, imported.output
    other_there = re.search(rf"{other_id} → run (\w+)", imported.output).group(1)
    there = invoke("train", "--model", "custom", "--seed", 7, "--repeats", 3, *TINY)
    assert there.exit_code == 0, there.output
    assert all(f"seed {s}: finished before" in there.output for s in (7, 8, 9)) and "Epoch 1/1" not in there.output
    carried_parent = there.output.split("repeat set: parent run ")[1].split()[0]
    _, parent3, children3 = _set(carried_parent)
    assert sorted(c.data.tags[T.REPEAT_SEED] for c in children3) == ["7", "8", "9"]
    assert parent3.data.metrics["test_accuracy"] == pytest.approx(parent2.data.metrics["test_accuracy"])
    carried = invoke("compare", carried_parent, other_there, "--no-log", "--out", tmp_path / "cmp3")
    assert carried.exit_code == 0, carried.output
    assert pd.read_csv(tmp_path / "cmp3" / "pairs.csv").drop(columns=["a", "b"]).equals(pairs.drop(columns=["a", "b"]))


def test_repeats_refuse_a_run_folder(tmp_path):
    result = invoke("train", "--repeats", 2, "--run-folder", tmp_path, *TINY)
    assert result.exit_code == 2 and "--repeats 2 cannot be combined with --run-folder" in result.output
