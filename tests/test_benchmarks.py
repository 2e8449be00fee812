"""The benchmark command's code on a small synthetic folder (the real figures come from the README's
command on ../shared/fer2013; nothing here asserts a speed)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from benchmarks.run import main as bench
from fer_experiments import data as fer_data


@pytest.mark.slow
def test_benchmark_parts_write_json_and_markdown(store, tmp_path):
    folder = fer_data.write_synthetic(tmp_path / "faces", n=700, seed=3)
    out = tmp_path / "results"
    args = ["--data", str(folder), "--out", str(out), "--steps", "3", "--limit", "200",
            "--recipe", "fer_compact_fast:epochs=2,limit=300"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    p = results["pipeline"]
    assert p["images_timed"] == 3 * 64 and p["pipeline_ratio"] == pytest.approx(
        p["ours_pipeline_ips"] / p["notebook_pipeline_ips"])
    o = results["overhead"]
    assert o["tracked_epoch_s"] > 0 and o["untracked_epoch_s"] > 0 and 0 < o["per_epoch_tracking_s"] < o["tracked_epoch_s"]
    (row,) = results["accuracy"]
    assert row["epochs"] == 2 and len(row["test_trace"]) == 2 and row["run_id"] and row["model_uri"].startswith("models:/")
    assert 0 <= row["test_accuracy"] <= 1 and row["test_tta_tencrop_accuracy"] is not None
    table = (out / "results.md").read_text()
    assert "(a) Pipeline throughput" in table and "(d) MLflow tracking overhead" in table
    assert f"`{row['run_id'][:8]}`" in table and "-P experiment=fer_compact_fast" in table
