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
        assert str(row["total_params"]) == client.get_run(row["run_id"]).data.params["total_params"]
        assert row["minutes"] > 0
    assert list(synthetic["validation_accuracy"]) == sorted(synthetic["validation_accuracy"], reverse=True)
    text = (out / "report.md").read_text()
    assert "SYNTHETIC" in text and "real data" in text and runs[0].run_id[:8] in text
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
