"""The original `fer2013.csv` (`emotion,pixels,Usage`), plain or gzipped (pandas reads both).

Usage: Training → train, PublicTest → val and PrivateTest → test when both test usages are present;
with only one of them it is the test split (validation is then carved from train).

Errors name the file and the row as a spreadsheet shows it (the header is row 1, so the first image
is row 2). Rows are checked in order and the first problem is reported; the whole file is checked
before anything is cached. A byte that is not UTF-8 is reported with its row, and a damaged .gz
(truncated, corrupt, or not gzip at all) is named as such: pandas alone says neither.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import CLASSES, IMAGE_SIZE, USAGES, DataError

COLUMNS = ("emotion", "pixels", "Usage")
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE


def read_csv(path: Path):
    """{split: (x, y, names "<file>:<line>")} and notes (none yet) from a fer2013.csv(.gz); DataError on
    the first bad row."""
    df = _read_table(path)
    emotion = pd.to_numeric(df["emotion"], errors="coerce")
    bad = np.flatnonzero(~emotion.isin(range(len(CLASSES))))
    if len(bad):
        raise DataError(f"CSV {path} row {bad[0] + 2}: emotion {df['emotion'].iloc[bad[0]]} is not a label 0..6 "
                        f"(0 angry … 6 neutral): fix or drop the row")
    unknown = np.flatnonzero(~df["Usage"].isin(USAGES))
    if len(unknown):
        raise DataError(f"CSV {path} row {unknown[0] + 2}: Usage {df['Usage'].iloc[unknown[0]]!r} is unknown: "
                        f"use Training, PublicTest or PrivateTest")
    x = np.stack([_pixels(text, path, i + 2) for i, text in enumerate(df["pixels"].fillna(""))])
    names = np.array([f"{path.name}:{i + 2}" for i in range(len(df))], dtype=str)  # file:line, header = line 1
    return _by_usage(x[..., None], emotion.to_numpy(dtype=np.int64), df["Usage"].map(USAGES).to_numpy(), names), []


def _read_table(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"pixels": str, "Usage": str})
    except UnicodeDecodeError as exc:
        raise DataError(_not_utf8(path, exc)) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # only a .gz raises these
        raise DataError(_bad_gzip(path, exc)) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise DataError(f"CSV {path} cannot be parsed ({type(exc).__name__}): give a fer2013.csv with "
                        f"columns emotion,pixels,Usage") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"CSV {path} lacks column(s) {', '.join(missing)}: fer2013.csv has emotion,pixels,Usage")
    if df.empty:
        raise DataError(f"CSV {path} has no rows: give a fer2013.csv with at least one image")
    return df


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    bad = _first_non_utf8_row(path)
    where = f"row {bad[0]} (byte 0x{bad[1]:02x})" if bad else f"byte 0x{exc.object[exc.start]:02x}"
    return (f"CSV {path} is not UTF-8 text: {where} is not; fer2013.csv is plain ASCII (digits, commas, "
            f"Training/PublicTest/PrivateTest): fix or drop that row, or re-save the file as UTF-8")


def _first_non_utf8_row(path: Path) -> tuple[int, int] | None:
    """(row, byte) of the first line that is not UTF-8. pandas gives a position within one of its read
    buffers, so the file is read again a line at a time (only on this error path)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for row, line in enumerate(f, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return row, line[bad.start]
    except (OSError, EOFError, zlib.error):  # a damaged .gz as well: the byte alone is reported
        pass
    return None


def _bad_gzip(path: Path, exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return (f"CSV {path} is a truncated gzip file (it ends before gzip's end-of-stream marker, as after an "
                f"interrupted download or copy): fetch or copy it again (`gzip -t` checks it)")
    if "Not a gzipped file" in str(exc):
        return f"CSV {path} is not gzip data although named .gz: rename it to .csv, or gzip the CSV"
    return (f"CSV {path} is a corrupt gzip file ({exc}): fetch or copy it again (`gzip -t` checks it)")


def _pixels(text: str, path: Path, row: int) -> np.ndarray:
    """One row's space-separated pixels as a (48, 48) uint8 image, checked before any narrowing cast."""
    values = text.split()
    if len(values) != N_PIXELS:
        raise DataError(f"CSV {path} row {row}: {len(values)} pixels instead of {N_PIXELS} (48x48): fix or drop the row")
    try:
        image = np.array(values, dtype=np.int64)
    except ValueError:
        raise DataError(f"CSV {path} row {row}: pixels must be integers 0..255: fix or drop the row") from None
    if image.min() < 0 or image.max() > 255:
        raise DataError(f"CSV {path} row {row}: pixel values outside 0..255: fix or drop the row")
    return image.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _by_usage(x: np.ndarray, y: np.ndarray, usage: np.ndarray, names: np.ndarray) -> dict:
    def part(mask):
        return x[mask], y[mask], names[mask]

    parts = {}
    if (usage == "train").any():
        parts["train"] = part(usage == "train")
    has_public, has_private = (usage == "public").any(), (usage == "private").any()
    if has_public and has_private:
        parts["val"], parts["test"] = part(usage == "public"), part(usage == "private")
    elif has_public or has_private:  # one test usage only: it is the test split
        parts["test"] = part((usage == "public") | (usage == "private"))
    return parts


def write_csv(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """splits: {Usage: (x, y)} → one fer2013.csv (gzipped if the name ends .gz)."""
    # Look up ready-made strings for 0..255: ~5x faster than str() on every numpy pixel (32k images).
    text = [str(v) for v in range(256)]
    frames = [pd.DataFrame({"emotion": y.astype(int), "Usage": usage,
                            "pixels": [" ".join([text[v] for v in img.ravel().tolist()]) for img in x]})
              for usage, (x, y) in splits.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True)[list(COLUMNS)].to_csv(path, index=False)
    return path
