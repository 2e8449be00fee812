"""The in-memory dataset every trainer and evaluator uses, and `load_dataset`, which detects the source.

Sources: the Kaggle folder layout, the original `fer2013.csv(.gz)`, or the built-in synthetic set
(written in the folder layout and read back through the same loader). Decoded arrays are cached by
a digest of the source (`cache.py`); validation is carved from train *after* loading, so another
seed or fraction never re-decodes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from . import cache, csvfile, folder, synthetic
from .labels import CLASSES, DataError


@dataclass
class Split:
    x: np.ndarray  # (N, 48, 48, 1) uint8
    y: np.ndarray  # (N,) int64, FER-2013 label order


@dataclass
class Dataset:
    name: str
    source: str
    kind: str  # folder | csv | synthetic
    digest: str
    splits: dict[str, Split]
    notes: list[str] = field(default_factory=list)

    @property
    def synthetic(self) -> bool:
        return self.kind == "synthetic"

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {c: int(n) for c, n in zip(CLASSES, np.bincount(s.y, minlength=len(CLASSES)))}
                for name, s in self.splits.items()}

    def majority_rate(self, split: str = "val") -> float:
        y = self.splits[split].y
        return float(np.bincount(y).max() / len(y))


def load_dataset(source: str | os.PathLike | None = None, *, val_fraction: float = 0.1, seed: int = 42,
                 cache_dir: str | os.PathLike | None = None, synthetic_size: int = 4000) -> Dataset:
    cache_root = Path(cache_dir) if cache_dir else cache.default_cache_dir()
    src = "synthetic" if source is None else str(source)
    kind = "folder"
    if src.split(":")[0] == "synthetic":
        n = _synthetic_size(src, synthetic_size)
        path = cache_root / "synthetic" / f"s0-n{n}"
        if not (path / ".complete").exists():
            synthetic.write_synthetic(path, n=n, seed=0)
        kind, name = "synthetic", f"synthetic-fer-n{n}"
    else:
        path = Path(src).expanduser()
        if not path.exists():
            raise DataError(f"data path '{src}' does not exist: pass a FER-2013 folder (train/, test/), "
                            f"a fer2013.csv, or 'synthetic'")
        if path.is_file() and not path.name.endswith((".csv", ".csv.gz")):
            raise DataError(f"data file '{src}' is not a .csv or .csv.gz: pass a fer2013.csv or a FER-2013 folder")
        if path.is_file():
            kind = "csv"
        name = path.name.removesuffix(".gz").removesuffix(".csv") if path.is_file() else path.resolve().name
    reader = csvfile.read_csv if kind == "csv" else folder.read_folder
    digest = cache.source_digest(path)
    parts, notes = cache.cached(cache_root, digest, lambda: reader(path))
    splits = {k: Split(x, y) for k, (x, y) in parts.items()}
    if "val" not in splits and "train" in splits:
        splits["train"], splits["val"] = _carve(splits["train"], val_fraction, seed)
    order = [k for k in ("train", "val", "test") if k in splits]
    return Dataset(name=name, source=str(path.resolve()), kind=kind, digest=digest,
                   splits={k: splits[k] for k in order}, notes=list(notes))


def _synthetic_size(src: str, default: int) -> int:
    if ":" not in src:
        return default
    try:
        n = int(src.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 70:
        raise DataError(f"data '{src}' is not a valid synthetic size: use synthetic:N with N >= 70, e.g. synthetic:4000")
    return n


def _carve(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A stratified, seeded validation split from train (classes too rare to stratify fall back)."""
    idx = np.arange(len(train.y))
    counts = np.bincount(train.y)
    stratify = train.y if counts[counts > 0].min() >= 2 and np.ceil(fraction * len(idx)) >= (counts > 0).sum() else None
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=stratify)
    tr, va = np.sort(tr), np.sort(va)
    return Split(train.x[tr], train.y[tr]), Split(train.x[va], train.y[va])
