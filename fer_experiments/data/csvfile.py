"""The original `fer2013.csv` (`emotion,pixels,Usage`), plain or gzipped (pandas reads both).

Usage: Training → train, PublicTest → val and PrivateTest → test when both test usages are present;
with only one of them it is the test split (validation is then carved from train).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .labels import CLASSES, IMAGE_SIZE, USAGES, DataError

COLUMNS = ("emotion", "pixels", "Usage")
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE


def read_csv(path: Path):
    try:
        df = pd.read_csv(path, dtype={"pixels": str, "Usage": str})
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"CSV {path} cannot be parsed ({type(exc).__name__}): give a fer2013.csv with "
                        f"columns emotion,pixels,Usage") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"CSV {path} lacks column(s) {', '.join(missing)}: fer2013.csv has emotion,pixels,Usage")
    emotion = pd.to_numeric(df["emotion"], errors="coerce")
    bad = np.flatnonzero(~emotion.isin(range(len(CLASSES))))
    if len(bad):
        raise DataError(f"CSV {path} row {bad[0] + 2}: emotion {str(df['emotion'].iloc[bad[0]])} is not a label 0..6 "
                        f"(0 angry … 6 neutral): fix or drop the row")
    unknown = np.flatnonzero(~df["Usage"].isin(USAGES))
    if len(unknown):
        raise DataError(f"CSV {path} row {unknown[0] + 2}: Usage {df['Usage'].iloc[unknown[0]]!r} is unknown: "
                        f"use Training, PublicTest or PrivateTest")
    x = np.zeros((len(df), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    for i, text in enumerate(df["pixels"].fillna("")):
        values = text.split()
        if len(values) != N_PIXELS:
            raise DataError(f"CSV {path} row {i + 2}: {len(values)} pixels instead of {N_PIXELS} (48x48): fix or drop the row")
        try:
            row = np.array(values, dtype=np.int64)
        except ValueError:
            raise DataError(f"CSV {path} row {i + 2}: pixels must be integers 0..255: fix or drop the row") from None
        if row.min() < 0 or row.max() > 255:
            raise DataError(f"CSV {path} row {i + 2}: pixel values outside 0..255: fix or drop the row")
        x[i, :, :, 0] = row.reshape(IMAGE_SIZE, IMAGE_SIZE)
    y = emotion.to_numpy(dtype=np.int64)
    usage = df["Usage"].map(USAGES).to_numpy()
    parts = {}
    if (usage == "train").any():
        parts["train"] = (x[usage == "train"], y[usage == "train"])
    has_public, has_private = (usage == "public").any(), (usage == "private").any()
    if has_public and has_private:
        parts["val"] = (x[usage == "public"], y[usage == "public"])
        parts["test"] = (x[usage == "private"], y[usage == "private"])
    elif has_public or has_private:
        mask = (usage == "public") | (usage == "private")
        parts["test"] = (x[mask], y[mask])
    return parts, []


def write_csv(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """splits: {Usage: (x, y)} → one fer2013.csv (gzipped if the name ends .gz)."""
    frames = [pd.DataFrame({"emotion": y.astype(int), "pixels": [" ".join(map(str, img.ravel())) for img in x],
                            "Usage": usage}) for usage, (x, y) in splits.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path
