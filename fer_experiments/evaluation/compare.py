"""`fer-exp compare`: which of several models is better on the same test images, and by how much.

Each *arm* is one run or a repeat set of runs (one per seed), each run given by its per-image
predictions table (`SplitEvaluation.predictions`). Per arm: accuracy with its 95 % interval (Wilson
over the images for one run; the t-interval over seeds for a set). Per pair: the accuracy difference
with its interval and a p-value — for two single runs a paired bootstrap over the images and the exact
McNemar test, for sets the difference of the means over seeds (Welch's t; one-sample t against a
single run) — Holm-corrected over all pairs, and a verdict in words. Pure computation: the CLI and the
tracker read the tables and record what this returns.
"""
from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import UserError
from . import intervals
from .curves import plt  # matplotlib with its headless backend selected

ALPHA = 0.05


@dataclass
class Arm:
    label: str
    tables: list  # one predictions DataFrame per run (image, label, predicted, correct, …)
    run_ids: list = field(default_factory=list)
    digests: list = field(default_factory=list)  # each run's digest of the compared split's images ("" if unrecorded)

    def accuracies(self) -> np.ndarray:
        return np.array([t["correct"].astype(bool).mean() for t in self.tables])

    def summary(self) -> dict:
        acc = self.accuracies()
        if len(acc) == 1:
            n = len(self.tables[0])
            low, high = intervals.wilson(int(round(acc[0] * n)), n)
            return {"arm": self.label, "runs": 1, "accuracy": acc[0], "sd": np.nan, "ci_low": low, "ci_high": high,
                    "interval": f"Wilson over {n} images"}
        s = intervals.over_seeds(acc)
        return {"arm": self.label, "runs": s.n, "accuracy": s.mean, "sd": s.sd, "ci_low": s.low, "ci_high": s.high,
                "interval": f"t over {s.n} seeds"}


def check_same_images(arms: list[Arm]) -> None:
    """Every run must have been evaluated on the same images with the same labels: else one line. The
    images' digest (pixels, labels, names) is checked where both runs record it; runs from before it was
    recorded are checked by their files and labels only (the dataset digest they carry counted file
    times, so one folder copied to two machines differed)."""
    ref_arm, ref = arms[0], arms[0].tables[0].sort_values("image").reset_index(drop=True)
    ref_digest = next((d for arm in arms for d in arm.digests if d), "")  # the first run that records one
    for arm in arms:
        ids = arm.run_ids or [arm.label] * len(arm.tables)
        for run_id, table, digest in zip(ids, arm.tables, arm.digests or [""] * len(arm.tables)):
            t = table.sort_values("image").reset_index(drop=True)
            why = ""
            if digest and ref_digest and digest != ref_digest:
                why = f"images digest {digest} vs {ref_digest}"
            elif len(t) != len(ref):
                why = f"{len(t)} images vs {len(ref)}"
            elif not t["image"].equals(ref["image"]):
                why = "their image files differ"
            elif not t["label"].equals(ref["label"]):
                why = "the same files carry different labels"
            if why:
                raise UserError(f"{arm.label} ({run_id}) and {ref_arm.label} were not evaluated on the same images "
                                f"({why}): compare runs evaluated on one test set (re-evaluate with `fer-exp evaluate "
                                f"MODEL --data SAME_DATA`)")


def _aligned(table: pd.DataFrame) -> np.ndarray:
    return table.sort_values("image")["correct"].astype(bool).to_numpy()


def pair(a: Arm, b: Arm, seed: int = 0) -> dict:
    """Accuracy(a) − accuracy(b) with its 95 % interval and an (unadjusted) p-value, and the test used."""
    acc_a, acc_b = a.accuracies(), b.accuracies()
    row = {"a": a.label, "b": b.label, "difference": float(acc_a.mean() - acc_b.mean())}
    if len(acc_a) == 1 and len(acc_b) == 1:
        right_a, right_b = _aligned(a.tables[0]), _aligned(b.tables[0])
        low, high = intervals.paired_bootstrap_difference(right_a, right_b, seed=seed)
        only_a, only_b, p = intervals.mcnemar_exact(right_a, right_b)
        return {**row, "ci_low": low, "ci_high": high, "p": p, "only_a_right": only_a, "only_b_right": only_b,
                "test": "paired bootstrap over images + exact McNemar"}
    if len(acc_a) > 1 and len(acc_b) > 1:
        res = stats.ttest_ind(acc_a, acc_b, equal_var=False)
        test = f"Welch t over seeds ({len(acc_a)} vs {len(acc_b)})"
    else:  # one side is a single run: the other's seeds against its value
        many, one, sign = (acc_a, acc_b[0], 1) if len(acc_a) > 1 else (acc_b, acc_a[0], -1)
        res = stats.ttest_1samp(sign * (many - one), 0.0)
        test = f"one-sample t over {len(many)} seeds against one run"
    ci = res.confidence_interval(confidence_level=1 - ALPHA)
    low, high, p = float(ci.low), float(ci.high), float(res.pvalue)
    if np.isnan(p):  # no spread over the seeds at all: the difference is exactly what it is
        low = high = row["difference"]
        p = 1.0 if row["difference"] == 0 else 0.0
    return {**row, "ci_low": low, "ci_high": high, "p": p,
            "only_a_right": np.nan, "only_b_right": np.nan, "test": test}


def verdict(row: dict) -> str:
    """The pair in plain words, by the Holm-adjusted p and the interval."""
    points = f"{100 * row['difference']:+.1f} points [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
    p = f"p = {row['p_holm']:.3g} (Holm)"
    if row["p_holm"] < ALPHA and (row["ci_low"] > 0 or row["ci_high"] < 0):
        better, worse = (row["a"], row["b"]) if row["difference"] > 0 else (row["b"], row["a"])
        return f"{better} better than {worse}, {points}, {p}"
    noise = "these seeds" if "seeds" in row["test"] else "this test set"
    return f"no difference detectable with {noise}: {points}, {p}"


def compare(arms: list[Arm], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per arm, one row per pair with `p_holm` and `verdict`), arms sorted by accuracy."""
    if len(arms) < 2:
        raise UserError("compare needs at least two runs, models or repeat sets: pass two or more")
    labels = [a.label for a in arms]
    if len(set(labels)) < len(labels):
        raise UserError(f"the same run or set was given twice ({', '.join(sorted({x for x in labels if labels.count(x) > 1}))}): "
                        f"pass each once")
    seen: dict = {}
    for arm in arms:
        for run_id in arm.run_ids:
            if run_id in seen:
                raise UserError(f"run {run_id} is in both {seen[run_id]} and {arm.label}: a comparison needs disjoint "
                                f"runs (pass a repeat set or its seeds, not both)")
            seen[run_id] = arm.label
    check_same_images(arms)
    table = pd.DataFrame([a.summary() for a in arms]).sort_values("accuracy", ascending=False).reset_index(drop=True)
    order = {label: i for i, label in enumerate(table["arm"])}
    ranked = sorted(arms, key=lambda a: order[a.label])
    pairs = pd.DataFrame([pair(a, b, seed) for a, b in itertools.combinations(ranked, 2)])
    pairs["p_holm"] = intervals.holm(pairs["p"])
    pairs["verdict"] = [verdict(r) for r in pairs.to_dict("records")]
    return table, pairs


def forest_figure(table: pd.DataFrame, pairs: pd.DataFrame, title: str):
    """Top: each arm's accuracy with its 95 % interval; below: each pair's difference with its interval.
    Stacked, so long run names (a repeat set's) take the left margin of both, not the width of one."""
    def wrap(text: str) -> str:
        return "\n".join(textwrap.wrap(text, 48, break_on_hyphens=False, break_long_words=True)) or text

    fig, (left, right) = plt.subplots(2, 1, figsize=(11, 0.55 * (len(table) + 1.6 * len(pairs)) + 2.4),
                                      height_ratios=[len(table) + 0.5, 1.6 * len(pairs) + 0.5], layout="constrained")
    y = np.arange(len(table))[::-1]
    left.errorbar(100 * table["accuracy"], y, xerr=[100 * (table["accuracy"] - table["ci_low"]),
                                                    100 * (table["ci_high"] - table["accuracy"])],
                  fmt="o", capsize=4, color="tab:blue")
    left.set_yticks(y, [wrap(f"{a} ({r} run{'s' if r > 1 else ''})") for a, r in zip(table["arm"], table["runs"])],
                    fontsize=8)
    left.set_ylim(-0.6, len(table) - 0.4)
    left.set_xlabel("test accuracy, % (95 % interval: Wilson for one run, t over seeds for a set)")
    left.grid(axis="x", alpha=0.3)
    yp = np.arange(len(pairs))[::-1]
    d = 100 * pairs["difference"]
    for yi, di, lo, hi, p in zip(yp, d, 100 * pairs["ci_low"], 100 * pairs["ci_high"], pairs["p_holm"]):
        right.errorbar([di], [yi], xerr=[[di - lo], [hi - di]], fmt="s", capsize=4,
                       color="tab:green" if p < ALPHA else "tab:gray")  # green: a difference called
    right.axvline(0, color="k", lw=0.8)
    right.set_yticks(yp, [f"{wrap(a)}\n − {wrap(b)}\np = {p:.3g}" for a, b, p in
                          zip(pairs["a"], pairs["b"], pairs["p_holm"])], fontsize=8)
    right.set_ylim(-0.6, len(pairs) - 0.4)
    right.set_xlabel("difference, points (95 % interval; p Holm-adjusted; green: a difference called)")
    right.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return fig


def markdown(table: pd.DataFrame, pairs: pd.DataFrame, title: str) -> str:
    arms = pd.DataFrame({"arm": table["arm"], "runs": table["runs"],
                         "accuracy": [f"{100 * a:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"
                                      for a, lo, hi in zip(table["accuracy"], table["ci_low"], table["ci_high"])],
                         "sd over seeds": ["–" if np.isnan(s) else f"{100 * s:.2f} points" for s in table["sd"]],
                         "interval": table["interval"]})
    shown = pd.DataFrame({"pair": pairs["a"] + " − " + pairs["b"], "verdict": pairs["verdict"], "test": pairs["test"],
                          "p (raw)": pairs["p"].map("{:.3g}".format)})
    return (f"## {title}\n\n{arms.to_markdown(index=False)}\n\n{shown.to_markdown(index=False)}\n\n"
            f"Intervals are 95 %; p-values Holm-adjusted over the {len(pairs)} pairs; a difference is called only "
            f"where the adjusted p < {ALPHA} and its interval excludes 0.\n")


def write(refs: list[str], out, *, split: str = "test", experiment: str | None = None, log: bool = True,
          seed: int = 0, tracker=None) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Compare the runs / models / repeat sets `refs` on `split`: (arms, pairs, files written); with
    `log`, the files also go to a compare run in `experiment` (else the first run's experiment)."""
    from pathlib import Path

    from ..tracking import MlflowTracker

    tracker = tracker or MlflowTracker()
    found = [tracker.comparison_arm(ref, split) for ref in refs]
    labels = [f["label"] for f in found]
    for f in found:  # two runs of one name (e.g. the same preset twice) are told apart by their id
        if labels.count(f["label"]) > 1:
            f["label"] = f"{f['label']} {f['run_ids'][0][:6]}"
    arms = [Arm(f["label"], f["tables"], f["run_ids"], f["digests"]) for f in found]
    table, pairs = compare(arms, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{split} accuracy of {len(arms)} models on the same {len(arms[0].tables[0])} images"
    table.to_csv(out / "arms.csv", index=False)
    pairs.to_csv(out / "pairs.csv", index=False)
    (out / "compare.md").write_text(markdown(table, pairs, title))
    fig = forest_figure(table, pairs, title)
    fig.savefig(out / "forest.png", dpi=100)
    plt.close(fig)
    files = [out / n for n in ("compare.md", "arms.csv", "pairs.csv", "forest.png")]
    if log:
        run_ids = [r for a in arms for r in a.run_ids]
        where = experiment or tracker.experiment_of(run_ids[0])
        files.append(f"runs:/{tracker.log_comparison(where, files, run_ids, split)}/compare")
    return table, pairs, files
