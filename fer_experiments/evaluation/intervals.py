"""How sure a figure is: 95 % intervals of one run's accuracy and macro-F1 (over its test images), of
a figure over seeds, and the paired tests between two models on the same images (`compare`).

All from `scipy.stats` (Wilson interval, bootstrap, exact binomial test, t-interval); only Holm's
step-down correction, which scipy does not have, is written here. No tracking, no Keras.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by ~0.1 point between seeds at this count
CLASSES_COUNT = 7


def wilson(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a proportion `correct`/`n` (accuracy over n images)."""
    ci = stats.binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def macro_f1(y_true, y_pred, axis: int = -1, classes: int = CLASSES_COUNT):
    """Macro-F1 over the last axis (vectorised for `stats.bootstrap`), classes absent from both the truth
    and the predictions counting 0 — scikit-learn's `f1_score(average="macro", labels=all, zero_division=0)`."""
    y_true, y_pred = np.moveaxis(np.asarray(y_true), axis, -1), np.moveaxis(np.asarray(y_pred), axis, -1)
    scores = []
    for c in range(classes):
        t, p = y_true == c, y_pred == c
        tp = np.sum(t & p, axis=-1)
        denom = np.sum(t, axis=-1) + np.sum(p, axis=-1)
        scores.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return np.mean(scores, axis=0)


def bootstrap_macro_f1(y_true, y_pred, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """A seeded percentile bootstrap over images of macro-F1 (images resampled with their labels)."""
    res = stats.bootstrap((np.asarray(y_true), np.asarray(y_pred)), macro_f1, paired=True, vectorized=True,
                          n_resamples=RESAMPLES, confidence_level=level, method="percentile",
                          rng=np.random.default_rng(seed), batch=250)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def split_intervals(prefix: str, y_true, y_pred, seed: int = 0) -> dict[str, float]:
    """`<prefix>_accuracy_ci_low/_high` (Wilson) and `<prefix>_macro_f1_ci_low/_high` (bootstrap)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(y_true):
        return {}
    acc = wilson(int(np.sum(y_true == y_pred)), len(y_true))
    f1 = bootstrap_macro_f1(y_true, y_pred, seed=seed) if len(y_true) > 1 else (np.nan, np.nan)
    return {f"{prefix}_accuracy_ci_low": acc[0], f"{prefix}_accuracy_ci_high": acc[1],
            f"{prefix}_macro_f1_ci_low": f1[0], f"{prefix}_macro_f1_ci_high": f1[1]}


@dataclass
class OverSeeds:
    """A figure over seeds: mean, sample standard deviation and the t-interval of the mean."""
    n: int
    mean: float
    sd: float
    low: float
    high: float


def over_seeds(values, level: float = LEVEL) -> OverSeeds:
    v = np.asarray(values, dtype=float)
    mean = float(np.mean(v))
    if len(v) < 2:
        return OverSeeds(len(v), mean, float("nan"), float("nan"), float("nan"))
    sd = float(np.std(v, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * sd / np.sqrt(len(v)))
    return OverSeeds(len(v), mean, sd, mean - half, mean + half)


def mcnemar_exact(a_right, b_right) -> tuple[int, int, float]:
    """Exact McNemar test of two predictors on the same images: (images only A got right, only B got
    right, two-sided p) — the binomial test of the discordant pairs at 1/2."""
    a, b = np.asarray(a_right, bool), np.asarray(b_right, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return only_a, only_b, p


def paired_bootstrap_difference(a_right, b_right, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """A seeded percentile bootstrap interval of accuracy(A) − accuracy(B), images resampled in pairs."""
    diff = np.asarray(a_right, float) - np.asarray(b_right, float)
    if np.all(diff == diff[0]):  # no spread to resample (e.g. identical predictors)
        return float(diff[0]), float(diff[0])
    res = stats.bootstrap((diff,), np.mean, vectorized=True, n_resamples=RESAMPLES, confidence_level=level,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over all the pairs compared)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
