"""`fer-exp report` over a real (temp) MLflow experiment with a few short training runs."""
from __future__ import annotations

import dataclasses

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import all_runs

from fer_experiments import data as fer_data
from fer_experiments.cli import main
from fer_experiments.data.synthetic import MARKER
from fer_experiments.evaluation import report
from fer_experiments.training import train


@pytest.mark.slow
def test_report_rows_match_the_runs_and_keep_synthetic_apart(store, small_cfg, tmp_path):
    exp = "compare"
    base = dataclasses.replace(small_cfg, epochs=1, limit=300)
    # one run with the diagnostics (its TTA accuracy is a report column), the others without
    runs = [train(dataclasses.replace(base, model=m, diagnostics=m == "custom"), experiment=exp, verbose=0)
            for m in ("custom", "fer_compact")]
    # A folder without the synthetic marker counts as real data: it must land in the other table.
    folder = fer_data.write_synthetic(tmp_path / "faces", n=300, seed=5)
    (folder / MARKER).unlink()
    real = train(dataclasses.replace(base, data=str(folder)), experiment=exp, verbose=0)

    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", "--experiment", exp, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    synthetic, real_rows = pd.read_csv(out / "runs_synthetic.csv"), pd.read_csv(out / "runs_real.csv")
    assert sorted(synthetic["run_id"]) == sorted(r.run_id for r in runs)
    assert list(real_rows["run_id"]) == [real.run_id]
    client = mlflow.MlflowClient()
    for _, row in pd.concat([synthetic, real_rows]).iterrows():
        metrics = client.get_run(row["run_id"]).data.metrics
        for key in ("validation_accuracy", "test_accuracy", "test_macro_f1",
                    "test_calibration/ece", "test_calibration/ece_calibrated"):
            assert row[key] == pytest.approx(metrics[key]), key
        if "test_tta_flip_accuracy" in metrics:
            assert row["test_tta_flip_accuracy"] == pytest.approx(metrics["test_tta_flip_accuracy"])
        else:
            assert pd.isna(row["test_tta_flip_accuracy"])  # a run without diagnostics: empty, never made up
        run = client.get_run(row["run_id"])
        assert str(row["total_params"]) == run.data.params["total_params"]
        # what the run really used: images per split, the limit; no ImageNet weights for nets without a backbone
        assert [row[k] for k in ("n_train", "n_val", "n_test")] == [int(run.data.params[k]) for k in ("n_train", "n_val",
                                                                                                   "n_test")]
        assert row["limit"] == 300 and pd.isna(row["weights"]) and pd.isna(row["unfreeze"])
        assert row["learned_nothing"] == (run.data.tags["fer.learned_nothing"] == "true")
        assert row["minutes"] > 0
    assert list(synthetic["validation_accuracy"]) == sorted(synthetic["validation_accuracy"], reverse=True)
    text = (out / "report.md").read_text()
    assert "SYNTHETIC" in text and "real data" in text and runs[0].run_id[:8] in text
    sizes = synthetic.set_index("run_id").loc[runs[0].run_id, ["n_train", "n_val", "n_test"]]
    assert "(SYNTHETIC)" in text and "/".join(map(str, sizes)) in text and "imagenet" not in text
    for name in ("accuracy", "recall", "confusion"):
        assert (out / f"{name}_synthetic.png").stat().st_size > 5000
    report_runs = [r for r in all_runs([exp]) if r.data.tags.get("fer.run_kind") == "report"]
    assert len(report_runs) == 1 and report_runs[0].info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(report_runs[0].info.run_id, "report")}
    assert {"report/report.md", "report/runs_real.csv", "report/runs_synthetic.csv"} <= logged
    # a second report does not count the first report run as a training run
    CliRunner().invoke(main, ["report", "--experiment", exp, "--out", str(out), "--no-log"], catch_exceptions=False)
    assert len(pd.read_csv(out / "runs_synthetic.csv")) == 2


def test_report_on_a_missing_experiment_is_one_line(store):
    result = CliRunner().invoke(main, ["report", "--experiment", "nope"])
    ours = [line for line in result.output.splitlines() if " INFO mlflow" not in line]  # MLflow creating the db
    assert result.exit_code == 2 and len(ours) == 1 and ours[0].startswith("error:") and "does not exist" in ours[0]


def finished_runs(rows: list[dict]) -> pd.DataFrame:
    """MLflow's runs table as `search_runs` gives it (params and tags are strings), for the rows given."""
    runs = pd.DataFrame(rows)
    runs["start_time"] = pd.Timestamp("2026-12-01 10:00", tz="UTC")
    runs["end_time"] = runs["start_time"] + pd.Timedelta(minutes=3)
    return runs


class RunsOnly:
    def __init__(self, runs):
        self.runs = runs

    def finished_runs(self, experiment):
        return self.runs


def test_report_shows_what_each_run_used_and_weights_only_for_backbones():
    common = {"tags.fer.synthetic": "true", "params.dataset": "synthetic-fer-s0-n1200", "params.weights": "imagenet",
              "params.n_val": "96", "params.n_test": "240"}
    runs = finished_runs([
        {**common, "run_id": "a" * 32, "tags.fer.model": "custom", "tags.fer.init": "from scratch",
         "tags.fer.learned_nothing": "true", "params.model": "custom", "params.unfreeze": "0", "params.image_size": "none",
         "params.limit": "300", "params.n_train": "300", "metrics.validation_accuracy": 0.25},
        {**common, "run_id": "b" * 32, "tags.fer.model": "resnet50", "tags.fer.init": "imagenet",
         "tags.fer.learned_nothing": "false", "params.model": "resnet50", "params.unfreeze": "2",
         "params.image_size": "96", "params.limit": "0", "params.n_train": "864", "metrics.validation_accuracy": 0.6},
    ])
    table = report.collect("x", tracker=RunsOnly(runs)).set_index("model")
    # The seed CNN (the registry gives it no backbone blocks) has no ImageNet weights, whatever its params say.
    assert pd.isna(table.loc["custom", "weights"]) and pd.isna(table.loc["custom", "unfreeze"])
    assert table.loc["resnet50", "weights"] == "imagenet" and table.loc["resnet50", "unfreeze"] == "2"
    assert table.loc["custom", "limit"] == 300 and pd.isna(table.loc["resnet50", "limit"])  # 0 = not limited
    assert table.loc["custom", "n_train"] == 300 and table.loc["custom", "learned_nothing"]
    lines = report.markdown(table.reset_index(), "x").splitlines()
    header = [c.strip() for c in lines[4].split("|")]
    custom = dict(zip(header, (c.strip() for c in next(line for line in lines if "aaaaaaaa" in line).split("|"))))
    assert custom["weights"] == "–" and custom["limit"] == "300" and custom["images (train/val/test)"] == "300/96/240"
    assert custom["dataset"] == "synthetic-fer-s0-n1200 (SYNTHETIC)" and custom["learned_nothing"] == "YES"
    assert "nan" not in "\n".join(lines)


def test_report_prints_each_accuracy_with_its_interval_and_a_repeat_set_with_its_spread():
    common = {"tags.fer.synthetic": "false", "params.dataset": "fer2013", "tags.fer.model": "custom",
              "params.model": "custom", "metrics.validation_accuracy": 0.6}
    runs = finished_runs([
        # one run: Wilson's interval of 2336 / 3589 right
        {**common, "run_id": "a" * 32, "metrics.test_accuracy": 2336 / 3589, "metrics.test_accuracy_ci_low": 0.6351,
         "metrics.test_accuracy_ci_high": 0.6663},
        # a repeat set's parent: the mean over 3 seeds, its sd and t-interval; its seeds are not rows
        {**common, "run_id": "b" * 32, "tags.fer.run_kind": "repeats", "metrics.seeds_finished": 3.0,
         "metrics.test_accuracy": 0.65, "metrics.test_accuracy_sd": 0.01, "metrics.test_accuracy_ci_low": 0.6252,
         "metrics.test_accuracy_ci_high": 0.6748},
        {**common, "run_id": "c" * 32, "tags.fer.repeat_seed": "42", "metrics.test_accuracy": 0.64},
    ])
    table = report.collect("x", tracker=RunsOnly(runs))
    assert sorted(table["run_id"].str[0]) == ["a", "b"]
    lines = report.markdown(table, "x").splitlines()
    header = [c.strip() for c in lines[4].split("|")]
    row = {key: dict(zip(header, (c.strip() for c in next(line for line in lines if key * 8 in line).split("|"))))
           for key in "ab"}
    assert row["a"]["test_accuracy"] == "65.1 % [63.5, 66.6]" and row["a"]["seeds"] == "–"
    assert row["b"]["test_accuracy"] == "65.0 % ± 1.0 [62.5, 67.5]" and row["b"]["seeds"] == "3"
