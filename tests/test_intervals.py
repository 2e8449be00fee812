"""Intervals and paired tests against answers known from the literature or worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from fer_experiments.errors import UserError
from fer_experiments.evaluation import compare, intervals
from fer_experiments.evaluation.report import with_interval


@pytest.mark.parametrize("k, n, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (Wilson score, no continuity correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe_1998(k, n, low, high):
    got = intervals.wilson(k, n)
    assert got == pytest.approx((low, high), abs=6e-5)


def test_wilson_of_the_issue_example_65_percent_of_publictest():
    low, high = intervals.wilson(2336, 3589)  # 65.1 % of FER-2013 PublicTest
    assert with_interval(2336 / 3589, low, high) == "65.1 % [63.5, 66.6]"


def test_mcnemar_exact_matches_fagerland_2013():
    # Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91: Bentur et al.'s airway
    # hyper-responsiveness pairs, discordant 1 and 7: exact conditional p = 0.070 (= 2·(1+8)/2^8).
    a = np.array([True] * 10 + [True] * 1 + [False] * 7 + [False] * 3)
    b = np.array([True] * 10 + [False] * 1 + [True] * 7 + [False] * 3)
    only_a, only_b, p = intervals.mcnemar_exact(a, b)
    assert (only_a, only_b) == (1, 7)
    assert p == pytest.approx(18 / 256, abs=1e-12) and round(p, 3) == 0.070


def test_paired_bootstrap_of_two_predictors_differing_on_a_known_set():
    # A is right on all 1000 images; B is wrong on exactly 100 of them: the difference is 0.100,
    # its interval about ±1.96·√(0.1·0.9/1000) = ±0.0186 around it, McNemar p = 2·0.5^100.
    a = np.ones(1000, bool)
    b = a.copy()
    b[np.random.default_rng(3).choice(1000, 100, replace=False)] = False
    low, high = intervals.paired_bootstrap_difference(a, b, seed=0)
    assert low < 0.100 < high
    assert (high - low) / 2 == pytest.approx(0.0186, abs=0.003)
    assert intervals.paired_bootstrap_difference(a, b, seed=0) == (low, high)  # seeded
    assert intervals.mcnemar_exact(a, b) == (100, 0, pytest.approx(2 * 0.5 ** 100))
    assert intervals.paired_bootstrap_difference(a, a) == (0.0, 0.0)  # identical predictors


def test_macro_f1_is_scikit_learns_and_its_bootstrap_covers_it():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 2000)
    p = np.where(rng.random(2000) < 0.6, y, rng.integers(0, 7, 2000))
    p[p == 1] = 0  # a class never predicted (zero_division=0)
    expected = f1_score(y, p, labels=range(7), average="macro", zero_division=0)
    assert intervals.macro_f1(y, p) == pytest.approx(expected, abs=1e-12)
    low, high = intervals.bootstrap_macro_f1(y, p, seed=1)
    assert low < expected < high and high - low < 0.06


def test_t_interval_over_seeds_by_hand():
    s = intervals.over_seeds([0.64, 0.65, 0.66])
    half = 4.302653 * 0.01 / np.sqrt(3)  # t(0.975, 2 df) · sd / √n
    assert (s.n, s.mean, s.sd) == (3, pytest.approx(0.65), pytest.approx(0.01))
    assert (s.low, s.high) == (pytest.approx(0.65 - half, abs=1e-6), pytest.approx(0.65 + half, abs=1e-6))
    assert np.isnan(intervals.over_seeds([0.6]).sd)


def test_holm_step_down_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone: 0.04 → 0.06
    assert intervals.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert intervals.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def _table(correct, names=None, labels=None):
    n = len(correct)
    return pd.DataFrame({"image": names if names is not None else [f"test/x/{i}.png" for i in range(n)],
                         "label": labels if labels is not None else ["happy"] * n,
                         "predicted": ["happy"] * n, "correct": correct})


def test_compare_calls_a_known_difference_and_not_noise():
    rng = np.random.default_rng(5)
    base = rng.random(3000) < 0.60
    better = base.copy()
    better[np.flatnonzero(~base)[:150]] = True  # right on 150 more images: +5 points
    noisy = base.copy()
    noisy[np.flatnonzero(base)[-10:]] = False  # 10 images lost, 10 others won: the same accuracy
    noisy[np.flatnonzero(~base)[-10:]] = True
    arms = [compare.Arm("base", [_table(base)], ["r1"]), compare.Arm("better", [_table(better)], ["r2"]),
            compare.Arm("noisy", [_table(noisy)], ["r3"])]
    table, pairs = compare.compare(arms)
    assert list(table["arm"])[0] == "better"
    row = pairs.set_index(["a", "b"]).loc[("better", "base")]
    assert row["difference"] == pytest.approx(0.05) and row["only_a_right"] == 150 and row["only_b_right"] == 0
    assert row["verdict"].startswith("better better than base, +5.0 points [")
    noise = pairs[pairs["a"].isin(["base", "noisy"]) & pairs["b"].isin(["base", "noisy"])].iloc[0]
    assert noise["verdict"].startswith("no difference detectable with this test set")
    assert (pairs["p_holm"] >= pairs["p"]).all()


def test_compare_of_seed_groups_uses_the_spread_over_seeds():
    n = 1000
    def arm(label, accs):
        return compare.Arm(label, [_table(np.arange(n) < int(a * n)) for a in accs], [f"{label}{i}" for i in range(len(accs))])
    table, pairs = compare.compare([arm("f32", [0.650, 0.655, 0.645]), arm("bf16", [0.630, 0.625, 0.635])])
    row = pairs.iloc[0]
    assert row["test"].startswith("Welch t over seeds") and row["difference"] == pytest.approx(0.02)
    assert row["ci_low"] > 0 and "f32 better than bf16" in row["verdict"]
    assert table.set_index("arm").loc["f32", "interval"] == "t over 3 seeds"


def test_compare_refuses_runs_on_different_images():
    same = [compare.Arm("a", [_table(np.ones(10, bool))], ["r1"])]
    other_files = compare.Arm("b", [_table(np.ones(10, bool), names=[f"test/y/{i}.png" for i in range(10)])], ["r2"])
    with pytest.raises(UserError, match="were not evaluated on the same images .their image files differ"):
        compare.compare(same + [other_files])
    with pytest.raises(UserError, match="9 images vs 10"):
        compare.compare(same + [compare.Arm("c", [_table(np.ones(9, bool))], ["r3"])])
    with pytest.raises(UserError, match="images digest d2 vs d1"):  # same files and labels, other pixels
        compare.compare([compare.Arm("a", same[0].tables, ["r1"], ["d1"]), compare.Arm("d", same[0].tables, ["r4"], ["d2"])])
    # a run from before the digest was recorded is checked by its files and labels
    compare.compare([compare.Arm("a", same[0].tables, ["r1"], ["d1"]), compare.Arm("d", same[0].tables, ["r4"], [""])])
    with pytest.raises(UserError, match="is in both"):
        compare.compare(same + [compare.Arm("e", same[0].tables, ["r1"])])



def test_compare_takes_runs_by_name_and_refuses_a_name_two_runs_bear(store, tmp_path):
    """Run names travel with `import-run` where ids do not, so compare takes a name that one run bears."""
    import mlflow
    from click.testing import CliRunner

    from fer_experiments.cli import main

    client = mlflow.MlflowClient()
    exp = client.create_experiment("named")
    right = np.arange(400) < 300
    for name, correct in (("ours", right), ("theirs", np.arange(400) < 200), ("twice", right), ("twice", right)):
        run = client.create_run(exp, run_name=name)
        client.log_param(run.info.run_id, "dataset_digest", "d1")
        client.log_text(run.info.run_id, _table(correct).to_csv(index=False), "evaluation/test/predictions.csv")
        client.set_terminated(run.info.run_id)
    out = CliRunner().invoke(main, ["compare", "ours", "theirs", "--no-log", "--out", str(tmp_path / "c")])
    assert out.exit_code == 0, out.output
    assert "ours: 75.0 %" in out.output and "ours better than theirs, +25.0 points" in out.output
    twice = CliRunner().invoke(main, ["compare", "ours", "twice", "--no-log", "--out", str(tmp_path / "c")])
    assert twice.exit_code == 2 and "2 runs (" in twice.output and len(twice.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(main, ["compare", "ours", "nobody", "--no-log", "--out", str(tmp_path / "c")])
    assert missing.exit_code == 2 and "'nobody' is not a run id, and no run" in missing.output
