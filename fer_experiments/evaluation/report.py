"""`fer-exp report`: the notebook's hand-typed comparison table, generated from an MLflow experiment.

Reads the experiment's finished training runs (runs tagged ``fer.model``; Optuna trial children only
with ``include_trials``), writes one markdown and one CSV table per kind of data — real and synthetic
are never mixed in a table or a figure — plus figures, and logs them all as artifacts of a report run
(``fer.run_kind=report``) in the same experiment. Rows are sorted by validation accuracy: the test
columns are reported, never used to rank.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import models
from ..data import CLASSES
from ..errors import UserError
from ..tracking import MlflowTracker
from ..tracking import tags as T
from .curves import plt  # matplotlib with its headless backend selected

PARAMS = ("model", "precision", "epochs", "optimizer", "learning_rate", "schedule", "dropout", "aug_strength", "crop",
          "mixup", "label_smoothing", "unfreeze", "weights", "image_size", "dataset", "limit", "n_train", "n_val", "n_test",
          "total_params", "temperature")
BACKBONE_ONLY = ("unfreeze", "weights", "image_size")  # knobs of the registry's backbones (with `blocks`) only
SIZES = ("limit", "n_train", "n_val", "n_test")  # what the run really used: `limit` (0 = none) and images per split
METRICS = ("epochs_run", "validation_accuracy", "test_accuracy", "test_macro_f1", "test_tta_flip_accuracy",
           "test_tta_tencrop_accuracy", "test_calibration/ece", "test_calibration/ece_calibrated")
# 95 % intervals: over the test images (Wilson, bootstrap) for one run, over the seeds for a repeat set.
INTERVALS = ("test_accuracy", "test_macro_f1")
CONFUSION_PANELS = 6  # at most this many confusion matrices side by side (the best by validation)


def collect(experiment: str, *, include_trials: bool = False, tracker=None) -> pd.DataFrame:
    """One row per finished training run of `experiment`: key params, metrics, minutes, synthetic flag."""
    runs = (tracker or MlflowTracker()).finished_runs(experiment)
    if runs.empty or f"tags.{T.MODEL}" not in runs:
        return pd.DataFrame()
    runs = runs[runs[f"tags.{T.MODEL}"].notna()]
    if not include_trials:  # a study's trials and a repeat set's seeds are summed up by their parent's row
        for child in (T.TRIAL_STATE, T.REPEAT_SEED):
            if f"tags.{child}" in runs:
                runs = runs[runs[f"tags.{child}"].isna()]
    table = pd.DataFrame({
        "run_id": runs["run_id"], "run_name": runs.get("tags.mlflow.runName"),
        "synthetic": runs[f"tags.{T.SYNTHETIC}"].eq("true"),
        **{p: runs.get(f"params.{p}") for p in PARAMS},
        "init": runs.get(f"tags.{T.INIT}"),
        "learned_nothing": runs.get(f"tags.{T.LEARNED_NOTHING}", pd.Series(index=runs.index, dtype=object)).map(
            {"true": True, "false": False}),  # None for runs made before the tag
        "seeds": pd.to_numeric(runs.get("metrics.seeds_finished", pd.Series(index=runs.index, dtype=float))),
        **{m: runs.get(f"metrics.{m}") for m in METRICS},
        **{f"{m}_ci_{end}": runs.get(f"metrics.{m}_ci_{end}") for m in INTERVALS for end in ("low", "high")},
        **{f"{m}_sd": runs.get(f"metrics.{m}_sd") for m in INTERVALS},
        "minutes": (runs["end_time"] - runs["start_time"]).dt.total_seconds() / 60,
        **{f"recall_{c}": _either(runs, f"metrics.test_per_class/recall_{c}", f"metrics.test_recall_{c}") for c in CLASSES},
    })
    # A backbone trained from scratch is not the seed's transfer model: say so wherever the model is named.
    backbone = table["model"].map(lambda m: m in models.MODELS and bool(models.get_spec(m).blocks))
    scratch = table["init"].eq("from scratch") & backbone
    table.loc[scratch, "model"] = table.loc[scratch, "model"] + " (from scratch)"
    # A custom net has no ImageNet weights, blocks to unfreeze or input size to resize to, whatever its params say.
    table.loc[~backbone, list(BACKBONE_ONLY)] = None
    for col in SIZES:
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("Int64")
    table["limit"] = table["limit"].where(table["limit"] > 0)  # shown only where the run was limited
    return table.sort_values("validation_accuracy", ascending=False, na_position="last").reset_index(drop=True)


def _either(runs: pd.DataFrame, key: str, older: str) -> pd.Series | None:
    """A metric under its current name, falling back to the name runs before the rename used."""
    new, old = runs.get(key), runs.get(older)
    return old if new is None else new if old is None else new.combine_first(old)


def markdown(table: pd.DataFrame, title: str) -> str:
    shown = table.drop(columns=[c for c in table if c.startswith("recall_")] + ["synthetic"])
    # What the run really used: SYNTHETIC data marked in its row, and the images per split in one column.
    shown["dataset"] = shown["dataset"].where(~table["synthetic"], shown["dataset"].fillna("?") + " (SYNTHETIC)")
    sizes = shown[["n_train", "n_val", "n_test"]].astype(object).where(shown[["n_train", "n_val", "n_test"]].notna(), "–")
    shown.insert(shown.columns.get_loc("n_train"), "images (train/val/test)",
                 sizes.astype(str).agg("/".join, axis=1).where(shown["n_train"].notna()))
    shown = shown.drop(columns=["n_train", "n_val", "n_test"])
    shown["learned_nothing"] = shown["learned_nothing"].map({True: "YES", False: "no"})
    for m in INTERVALS:  # "65.1 % [63.5, 66.6]"; a repeat set's mean ± sd over its seeds
        shown[m] = [with_interval(*v) for v in zip(table[m], table[f"{m}_ci_low"], table[f"{m}_ci_high"], table[f"{m}_sd"])]
        shown = shown.drop(columns=[f"{m}_ci_low", f"{m}_ci_high", f"{m}_sd"])
    shown["seeds"] = shown["seeds"].map(lambda v: None if pd.isna(v) else f"{int(v)}")  # repeat sets only
    shown = shown.assign(run_id=shown["run_id"].str[:8]).dropna(axis=1, how="all")
    fmt = {c: "{:.4f}".format for c in METRICS[1:] if c in shown and c not in INTERVALS}
    fmt["minutes"] = "{:.1f}".format
    for col, f in fmt.items():
        shown[col] = shown[col].map(lambda v, f=f: "–" if pd.isna(v) else f(v))
    shown = shown.astype(object).where(shown.notna(), "–")  # a blank cell is a dash, never "nan"
    return f"## {title}\n\n{len(shown)} runs, sorted by validation accuracy.\n\n{shown.to_markdown(index=False)}\n"


def with_interval(value, low, high, sd=None) -> str:
    """A figure as the report prints it: `65.1 % [63.5, 66.6]` (± sd over seeds where there is one)."""
    if pd.isna(value):
        return "–"
    spread = "" if sd is None or pd.isna(sd) else f" ± {100 * sd:.1f}"
    ends = "" if pd.isna(low) or pd.isna(high) else f" [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{100 * value:.1f} %{spread}{ends}"


def accuracy_figure(table: pd.DataFrame, title: str):
    best = table.groupby("model")[["validation_accuracy", "test_accuracy"]].max().sort_values("validation_accuracy")
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(best) + 1.5))
    best.plot.barh(ax=ax)
    ax.set_xlabel("accuracy (best run per model, by validation)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def recall_figure(table: pd.DataFrame, title: str):
    recall = table.set_index(table["run_name"].fillna("") + " " + table["run_id"].str[:6])[
        [f"recall_{c}" for c in CLASSES]].astype(float)
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(recall) + 2))
    im = ax.imshow(recall.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45)
    ax.set_yticks(range(len(recall)), recall.index)
    for (i, j), v in np.ndenumerate(recall.to_numpy()):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.5 else "k", fontsize=8)
    fig.colorbar(im, ax=ax, label="test recall")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_figure(table: pd.DataFrame, title: str, tracker):
    rows = table.head(CONFUSION_PANELS)
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 4.2), squeeze=False)
    for ax, (_, row) in zip(axes[0], rows.iterrows()):
        cm = tracker.confusion_matrix(row["run_id"], "test")
        if cm is None:  # a run without a test split
            ax.set_axis_off()
            continue
        ax.imshow(cm / np.maximum(cm.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=90, fontsize=7)
        ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=7)
        ax.set_title(f"{row['model']} {row['run_id'][:6]}", fontsize=9)
    fig.suptitle(title + " — test confusion (row-normalised)")
    fig.tight_layout()
    return fig


HIDDEN_ROWS = "; the seeds of a repeat set under way and study trials are rows with --include-trials"


def write(experiment: str, out: str | Path, *, include_trials: bool = False, log: bool = True,
          tracker=None) -> list[Path]:
    """Tables and figures into `out` (and, with `log`, a report run); returns the written files."""
    tracker = tracker or MlflowTracker()
    table = collect(experiment, include_trials=include_trials, tracker=tracker)
    if table.empty:
        raise UserError(f"MLflow experiment '{experiment}' has no finished training runs to report: train some first "
                         f"(fer-exp train --mlflow-experiment {experiment} …)"
                         f"{'' if include_trials else HIDDEN_ROWS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, sections = [], []
    for synthetic, part in table.groupby("synthetic"):
        kind = "synthetic" if synthetic else "real"
        title = f"{experiment}: {'SYNTHETIC data (not FER-2013)' if synthetic else 'real data'}"
        part.to_csv(out / f"runs_{kind}.csv", index=False)
        sections.append(markdown(part, title))
        figures = {"accuracy": accuracy_figure(part, title), "recall": recall_figure(part, title),
                   "confusion": confusion_figure(part, title, tracker)}
        for name, fig in figures.items():
            fig.savefig(out / f"{name}_{kind}.png", dpi=90)
            plt.close(fig)
        files += [out / f"runs_{kind}.csv"] + [out / f"{n}_{kind}.png" for n in ("accuracy", "recall", "confusion")]
    (out / "report.md").write_text(f"# Comparison of runs in MLflow experiment `{experiment}`\n\n" + "\n".join(sections))
    files.insert(0, out / "report.md")
    if log:
        files.append(Path(f"runs:/{tracker.log_report(experiment, files, len(table))}/report"))
    return files
