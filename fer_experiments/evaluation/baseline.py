"""Did a run learn anything? Its accuracy against always answering the split's most frequent class.

A network that has learned nothing (too few epochs, a learning rate too small or too large) answers
one class for every face — on FER-2013 "happy" — and scores the majority rate: 25 % on FER-2013's
test faces, however many epochs it ran. Pure arithmetic on the dataset and the metrics; the trainer
records the `Verdict` as tags (`tags()`) and prints its warning.

The margin. A predictor that ignores the face scores at most the majority rate m in expectation, and
on n images its accuracy scatters about that by at most the binomial sd √(m(1−m)/n). So an accuracy
less than Z = 1.96 such sds above m is what a face-blind predictor can reach by the luck of the split
(one-sided, 2.5 %): that is 5.5 points on the 240 test faces of `synthetic:1200`, 1.5 on 3,000
(`limit=3000`), 1.4 on FER-2013's 3,589 PublicTest faces. On large splits that noise vanishes, yet a
model 1 point above the majority class is still of no use: the margin is never under MIN_MARGIN, 2
points. Anything below the majority rate (a constant answer of another class, a random one) is
caught as well.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from ..data import CLASSES
from ..tracking import tags as T

Z = 1.96  # one-sided 2.5 %: how far sampling alone lifts a face-blind predictor above the majority rate
MIN_MARGIN = 0.02  # 2 points: below this, beating the majority class is of no practical use on any split size
SPLIT_METRIC = {"test": "test_accuracy", "val": "validation_accuracy"}  # judged on test, else validation


def margin(majority: float, images: int) -> float:
    """How far above the majority rate an accuracy on `images` images must be to count as learning."""
    return max(MIN_MARGIN, Z * math.sqrt(majority * (1 - majority) / max(images, 1)))


def learned_nothing(accuracy: float, majority: float, images: int) -> bool:
    """True when `accuracy` beats the majority rate by no more than `margin` (or does not beat it)."""
    return accuracy - majority <= margin(majority, images)


def images_per_split(ds) -> str:
    """The images a run really used, e.g. "train 3000, val 2871, test 3000" (after `limit`)."""
    return ", ".join(f"{name} {len(part.y)}" for name, part in ds.splits.items())


@dataclass(frozen=True)
class Verdict:
    split: str  # the split judged: test, else val
    accuracy: float
    majority: float  # the accuracy of always answering majority_class on that split
    majority_class: str
    images: int  # images in that split
    used: str  # images per split (`images_per_split`)

    @property
    def margin(self) -> float:
        return margin(self.majority, self.images)

    @property
    def learned_nothing(self) -> bool:
        return learned_nothing(self.accuracy, self.majority, self.images)

    def summary(self) -> str:
        return (f"{self.split} accuracy {self.accuracy:.4f}, majority rate {self.majority:.4f} (always "
                f"{self.majority_class}), margin {self.margin:.4f}, {self.images} images")

    def tags(self) -> dict[str, str]:
        return {T.LEARNED_NOTHING: str(self.learned_nothing).lower(), T.VS_MAJORITY: self.summary(), T.IMAGES: self.used}

    def warning(self) -> str:
        return (f"warning: this run learned nothing: its {self.split} accuracy {self.accuracy:.1%} is within "
                f"{100 * self.margin:.1f} points of always answering '{self.majority_class}' ({self.majority:.1%} of "
                f"{self.images} images); train longer, on more images, or with another learning rate")

    def warn(self) -> None:
        print(self.warning(), file=sys.stderr, flush=True)


def judge(ds, metrics: dict) -> Verdict | None:
    """The verdict on a run's test accuracy (its validation accuracy where it has no test split)."""
    split = next((s for s, key in SPLIT_METRIC.items() if s in ds.splits and key in metrics), None)
    if split is None:
        return None
    y = ds.splits[split].y
    counts = np.bincount(y, minlength=len(CLASSES))
    return Verdict(split, float(metrics[SPLIT_METRIC[split]]), ds.majority_rate(split), CLASSES[int(counts.argmax())],
                   len(y), images_per_split(ds))
