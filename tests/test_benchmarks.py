"""The benchmark command's code on a small synthetic folder (the real figures come from the README's
command on ../shared/fer2013; nothing here asserts a speed)."""
from __future__ import annotations

import json

import mlflow
import pytest
from click.testing import CliRunner

from benchmarks.run import main as bench
from fer_experiments import data as fer_data


@pytest.mark.slow
def test_benchmark_parts_write_json_and_markdown(store, tmp_path):
    folder = fer_data.write_synthetic(tmp_path / "faces", n=700, seed=3)
    out = tmp_path / "results"
    args = ["--data", str(folder), "--out", str(out), "--steps", "3", "--limit", "200", "--step-batches", "2", "--repeats", "1",
            "--step-model", "custom_aug",
            "--part", "step", "--part", "pipeline", "--part", "overhead", "--part", "accuracy",
            "--recipe", "fer_compact_fast:epochs=2,limit=300"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    s = results["step"]
    assert [r["model"] for r in s["models"]] == ["custom_aug"]  # the one with every arm (notebook, placement)
    assert s["matmul_gflops"]["float32"]["median"] > 0 and s["matmul_gflops"]["bfloat16"]["median"] > 0
    for r in s["models"]:
        assert r["bare_float32_ips"]["median"] > 0 and r["bare_ips"]["median"] > 0 and r["full_ips"]["median"] > 0
        assert r["full_over_bare"]["ratio"] > 0  # a ratio of two timings: nothing here can say what it should be
        # one round (--repeats 1) has no spread: every timing, and every ratio of them, is INVALID
        assert r["full_ips"]["invalid"] == "1 repeat, 3 needed" and r["full_over_bare"]["invalid"] == "full: 1 repeat, 3 needed"
    assert 0.3 < s["models"][0]["train_gflop_per_image"] < 1  # FLOPs per training image, from the layers
    assert s["models"][0]["notebook_ips"]["median"] > 0 and s["models"][0]["feed_over_model"]["ratio"] > 0
    p = results["pipeline"]
    assert p["images_timed"] == 3 * 64 and p["ours_pipeline_ips"]["median"] > 0 and p["notebook_pipeline_ips"]["median"] > 0
    assert len(p["ours_pipeline_ips"]["samples"]) == 3
    o = results["overhead"]
    assert o["tracked_epoch_s"]["median"] > 0 and o["untracked_epoch_s"]["median"] > 0 and o["repeats"] == 3 * (4 - 1)
    assert len(o["tracked_run_s"]["samples"]) == o["rounds"] == 3 and o["overhead"]["ratio"] > 0
    # The untracked arm is the same trainer with a NullTracker: it leaves no run behind.
    client = mlflow.MlflowClient()
    overhead_runs = client.search_runs([client.get_experiment_by_name("fer-benchmark-overhead").experiment_id])
    assert len(overhead_runs) == o["rounds"] == 3 and o["last_run_id"].startswith("untracked-")
    (row,) = results["accuracy"]
    assert row["epochs"] == 2 and len(row["test_trace"]) == 2 and row["run_id"] and row["model_uri"].startswith("models:/")
    assert row["test_tta_tencrop_accuracy"] is not None
    # the row's test accuracy is that of the model it logged, on the recipe's 300 test images
    from fer_experiments.tracking import MlflowTracker
    from fer_experiments.training import shrink

    test = shrink(fer_data.load_dataset(str(folder), val_fraction=0.1, seed=42), 300, 42).splits["test"]
    model = MlflowTracker().load_model(row["model_uri"])
    recomputed = float((model.predict(test.x.astype("float32"), verbose=0).argmax(1) == test.y).mean())
    assert row["test_accuracy"] == pytest.approx(recomputed, abs=1e-9)
    table = (out / "results.md").read_text()
    assert "Step profile" in table and "(a) Pipeline throughput" in table and "(d) MLflow tracking overhead" in table
    assert "**INVALID** (1 repeat, 3 needed)" in table and "**INVALID** (full: 1 repeat, 3 needed)" in table
    assert f"`{row['run_id'][:8]}`" in table and "-P preset=fer_compact_fast" in table


def test_forward_flops_counts_convolutions_and_dense_layers():
    import keras

    from benchmarks.step import forward_flops

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)          # 8·8·4 outputs × 3·3·3 MACs
    x = keras.layers.Conv2D(6, 1, strides=2)(x)                     # 4·4·6 outputs × 1·1·4 MACs
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(x))      # 96 × 5 MACs
    inner = keras.Model(inputs, outputs)
    outer = keras.Model(inputs, inner(inputs))                      # nested models are counted through
    expected = 2 * (8 * 8 * 4 * 27 + 4 * 4 * 6 * 4 + 96 * 5)
    assert forward_flops(inner) == expected and forward_flops(outer) == expected
    from fer_experiments import models

    # the literature net costs several times the compact one per image
    assert forward_flops(models.create_model("fer_vgg")) > 3 * forward_flops(models.create_model("fer_compact"))


def test_a_timing_is_invalid_with_a_wide_spread_or_too_few_repeats():
    from benchmarks.validity import MAX_SPREAD, summarize, text

    steady = summarize([110, 90, 100])  # spread (110 - 90) / 100 = 20 %
    assert (steady["median"], steady["min"], steady["max"], steady["invalid"]) == (100, 90, 110, None)
    assert steady["spread"] == pytest.approx(0.2) and text(steady) == "100 (spread 20 %)"
    assert MAX_SPREAD == 0.25 and summarize([87.5, 100, 112.5])["invalid"] is None  # the limit itself passes
    wide = summarize([300, 700, 1234])  # (1234 - 300) / 700 = 133 %
    assert wide["invalid"] == "spread 133 % > 25 %" and text(wide) == "**INVALID** (spread 133 % > 25 %)"
    assert summarize([100, 101])["invalid"] == "2 repeats, 3 needed"


def test_a_share_of_peak_above_one_is_invalid_and_so_is_every_ratio_of_it():
    from benchmarks.validity import ab, share_of_peak, summarize, text

    peak = summarize([1000, 1000, 1000])  # GFLOP/s
    over = share_of_peak(summarize([1000, 1000, 1000]), 1.3e9, peak)  # 1,000 img/s × 1.3 GFLOP = 1.3 × peak
    assert over["peak_share"] == pytest.approx(1.3) and over["invalid"] == "130 % of peak > 100 %"
    assert text(over) == "**INVALID** (130 % of peak > 100 %)"
    assert ab(summarize([10, 10, 10]), over, names=("full", "bare"))["invalid"] == "bare: 130 % of peak > 100 %"
    fine = share_of_peak(summarize([500, 500, 500]), 1e9, peak)
    assert fine["invalid"] is None and text(fine) == "500 (spread 0 %), 50.0 % of peak"
    # a peak measured in a busy moment: its share cannot be given; the timing keeps its own verdict
    shaky = share_of_peak(summarize([500, 500, 500]), 1e9, summarize([400, 1000, 1000]))
    assert shaky["invalid"] is None and text(shaky) == "500 (spread 0 %), share of peak **INVALID** (peak: spread 60 % > 25 %)"


def test_an_ab_is_resolved_only_when_the_arms_ranges_are_disjoint():
    from benchmarks.validity import ab, text

    overlapping = ab([90, 100, 110], [105, 115, 125])
    assert not overlapping["resolved"] and overlapping["invalid"] is None
    assert text(overlapping).startswith("not resolved (ranges overlap: ")
    assert not ab([100, 100, 100], [100, 100, 100])["resolved"]  # equal arms: the ranges touch
    disjoint = ab([200, 210, 220], [100, 105, 110])
    assert disjoint["resolved"] and disjoint["ratio"] == pytest.approx(2.0)
    assert (disjoint["lo"], disjoint["hi"]) == (pytest.approx(200 / 110), pytest.approx(220 / 100))
    assert text(disjoint) == "**2.00×** (1.82–2.20×)"
    # an INVALID arm makes the ratio INVALID, even when the ranges are disjoint
    assert text(ab([200, 210, 400], [100, 105, 110], names=("full", "bare"))) == "**INVALID** (full: spread 95 % > 25 %)"


def test_the_table_writes_invalid_figures_as_invalid_never_as_numbers():
    from benchmarks import validity
    from benchmarks.step import figures
    from benchmarks.table import markdown

    peak = {"float32": [1000, 1000, 1000], "bfloat16": [2000, 2000, 2000]}  # GFLOP/s, one per round
    steady = {"bare_float32": [500, 510, 520], "bare": [1000, 1010, 1020], "full": [800, 805, 810]}
    busy = {"bare_float32": [2990, 3000, 3010],  # 3,000 img/s × 0.5 GFLOP: 1.5 × the float32 peak
            "bare": [1000, 1010, 1020], "full": [300, 700, 1234]}  # the full trainer's spread: 133 %
    rows = [{"model": name, "preset": name, "precision": "mixed_bfloat16", "images_timed": 64,
             "train_gflop_per_image": 0.5, **figures(ips, peak, 0.5e9, "mixed_bfloat16")}
            for name, ips in (("steady", steady), ("busy", busy))]
    step = {"steps": 1, "batch_size": 64, "repeats": 3, "rules": validity.RULES, "models": rows,
            "matmul_gflops": {d: validity.summarize(v) for d, v in peak.items()}}
    old_pipeline = {"ours_pipeline_ips": 11467.0, "notebook_pipeline_ips": 3382.0, "pipeline_ratio": 3.4}
    table = markdown({"machine": {"cpus": 2, "platform": "test"}, "step": step, "pipeline": old_pipeline})
    (steady_row,) = [line for line in table.splitlines() if line.startswith("| `steady`")]
    (busy_row,) = [line for line in table.splitlines() if line.startswith("| `busy`")]
    assert "| 805 (spread 1 %), 20.1 % of peak | **0.80×** (0.78–0.81×) |" in steady_row and "INVALID" not in steady_row
    assert "| **INVALID** (150 % of peak > 100 %) |" in busy_row
    assert "| **INVALID** (spread 133 % > 25 %) | **INVALID** (full: spread 133 % > 25 %) |" in busy_row
    assert "3000" not in busy_row and "700" not in busy_row  # the invalid medians are not written
    assert "1010 (spread 2 %), 25.2 % of peak" in busy_row  # the valid timing of the same row still is
    assert validity.RULE_TEXT in table
    # a section from before the rules (medians only): not tabled, its numbers not repeated
    assert "### pipeline: recorded before the validity rules, so it is not tabled" in table and "11467" not in table


@pytest.mark.slow
def test_compare_part_trains_each_recipe_into_one_experiment_and_reports(store, tmp_path):
    folder = fer_data.write_synthetic(tmp_path / "faces", n=400, seed=4)
    out = tmp_path / "results"
    args = ["--data", str(folder), "--out", str(out), "--part", "compare",
            "--recipe", "custom:epochs=1", "--recipe", "vgg16:weights=none,image_size=32,epochs=1,limit=64"]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    c = json.loads((out / "results.json").read_text())["compare"]
    assert [r["init"] for r in c["runs"]] == ["from scratch", "from scratch"]
    runs = {r.info.run_id: r for r in mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name(c["experiment"]).experiment_id])}
    vgg = runs[c["runs"][1]["run_id"]]
    assert vgg.info.run_name.startswith("vgg16-from-scratch") and vgg.data.tags["fer.init"] == "from scratch"
    assert vgg.data.params["unfreeze"] == "5"  # from scratch: every block trains, and the record says so
    report_md = (out / "comparison" / "report.md").read_text()
    assert "vgg16 (from scratch)" in report_md and "custom" in report_md
    assert "seed's four-model comparison" in (out / "results.md").read_text()


@pytest.mark.slow
def test_backends_part_times_every_arm_interleaved_and_ratios_come_from_the_rounds(data_cache, tmp_path):
    """Each backend in a worker process of its own; kept small: the plain CNN (no augmenter to compile)
    at batch 16, one batch per measurement, three rounds."""

    from benchmarks.backends import ARMS

    folder = fer_data.write_synthetic(tmp_path / "faces", n=700, seed=3)
    preset = tmp_path / "tiny.yaml"
    preset.write_text("model: custom\nbatch_size: 16\n")
    out = tmp_path / "results"
    args = ["--data", str(folder), "--out", str(out), "--part", "backends", "--step-batches", "1", "--repeats", "3",
            "--step-model", str(preset)]
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    b = json.loads((out / "results.json").read_text())["backends"]
    assert b["order"] == [a[0] for a in ARMS] and set(b["arms"]) == set(b["order"])
    assert {(a["backend"], a["precision"]) for a in b["arms"].values()} >= {
        (k, p) for k in ("tensorflow", "jax") for p in ("float32", "mixed_bfloat16")}
    for name, a in b["arms"].items():
        assert len(a["ips"]["samples"]) == 3 and all(v > 0 for v in a["ips"]["samples"]), name
        assert a["ips"]["min"] <= a["ips"]["median"] <= a["ips"]["max"]
        assert a["device_kind"] == "cpu" and a["dtype_policy"] == a["precision"] and a["batch_size"] == 16
    # the trainer's XLA choice: on for JAX, Keras's rule (off on CPU) for TensorFlow; off where the arm asks
    assert [b["arms"][n]["jit_compile_used"] for n in b["order"]] == [False, True, False, True, False]
    for p in ("float32", "mixed_bfloat16"):  # one ratio per round, each from the same round's two arms
        assert len(b["ratios"][p]["per_round"]) == 3 and b["ratios"][p]["ratio"] > 0
    assert b["ratios"]["jax_compiled_over_uncompiled"]["ratio"] > 0
    assert b["images_timed"] == 16 and all(b["versions"][k] for k in ("keras", "tensorflow", "jax"))
    assert isinstance(b["bf16_native"], bool) and b["cpu_flags"]
    assert b["command"] == (f"python -m benchmarks.run --data {folder} --part backends --step-batches 1 --repeats 3 "
                            f"--step-model {preset}")
    table = (out / "results.md").read_text()
    assert "TensorFlow vs JAX on this CPU" in table and b["command"] in table
