"""FER-2013's label order (never the alphabetical order of folder names) and the data error."""
from __future__ import annotations

from ..errors import UserError

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_SIZE = 48
# FER-2013 train counts per class, in CLASSES order: the synthetic set copies this imbalance.
FER_TRAIN_COUNTS = (3995, 436, 4097, 7215, 4830, 3171, 4965)
USAGES = {"Training": "train", "PublicTest": "public", "PrivateTest": "private"}


class DataError(UserError):
    """A problem with the user's data: one line naming the file or value and the fix."""


def class_index(folder_name: str) -> int | None:
    name = folder_name.strip().lower()
    return CLASSES.index(name) if name in CLASSES else None


def data_words(name: str, synthetic: bool, detail: str = "") -> str:
    """How a run's data is named wherever a person reads it (console, run and study notes): synthetic
    faces said so, never to be taken for FER-2013; `detail` (e.g. the images per split) beside it."""
    if synthetic:
        return f"SYNTHETIC faces ({name}, not FER-2013{'; ' + detail if detail else ''})"
    return f"{name}{f' ({detail})' if detail else ''}"
