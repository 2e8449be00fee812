"""The in-memory dataset every trainer and evaluator uses, and `load_dataset`, which detects the source.

Sources: the Kaggle folder layout, the original `fer2013.csv(.gz)`, or the built-in synthetic set
(written in the folder layout and read back through the same loader). Decoded arrays are cached by
a digest of the source files' names, sizes and times (`cache.py`); validation is carved from train
*after* loading, so another seed or fraction never re-decodes. What runs record is another digest, of the
decoded images, labels and file names (`Dataset.digest`, `Split.digest`): the same data copied to
another machine (other file times) keeps it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from . import cache, csvfile, folder, synthetic
from .labels import CLASSES, DataError

SYNTHETIC_SEED = 0
MIN_SYNTHETIC = 70  # below this the rare classes (disgust) get too few images to split three ways


@dataclass
class Split:
    x: np.ndarray  # (N, 48, 48, 1) uint8
    y: np.ndarray  # (N,) int64, FER-2013 label order
    names: np.ndarray | None = None  # (N,) str: each image's file (relative to the source) or CSV file:line

    def take(self, idx: np.ndarray) -> Split:
        """The images at `idx`, names and all."""
        return Split(self.x[idx], self.y[idx], None if self.names is None else self.names[idx])

    def digest(self) -> str:
        """Of these images' pixels, labels and file names, in order: equal digests, the same images."""
        return _content_digest([self])


@dataclass
class Dataset:
    name: str  # folder or CSV base name; synthetic sets are always named synthetic-…
    source: str  # absolute path read (for synthetic: the folder it was written to)
    kind: str  # folder | csv | synthetic
    digest: str  # of the decoded images, labels and names of every split as read (before a carve): machine-independent
    splits: dict[str, Split]  # in order train, val, test; a test-only folder has just "test"
    notes: list[str] = field(default_factory=list)  # warnings for the user (resized images, missing classes)
    cache_key: str = ""  # of the source files (names, sizes, times): the decoded cache's entry

    @property
    def synthetic(self) -> bool:
        return self.kind == "synthetic"

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {c: int(n) for c, n in zip(CLASSES, np.bincount(s.y, minlength=len(CLASSES)))}
                for name, s in self.splits.items()}

    def majority_rate(self, split: str = "val") -> float:
        """Accuracy of always predicting the split's most frequent class: the floor a model must beat."""
        if split not in self.splits or not len(self.splits[split].y):
            raise DataError(f"dataset {self.name} has no {split} split (it has {', '.join(self.splits)})")
        y = self.splits[split].y
        return float(np.bincount(y).max() / len(y))


def load_dataset(source: str | os.PathLike | None = None, *, val_fraction: float = 0.1, seed: int = 42,
                 cache_dir: str | os.PathLike | None = None, synthetic_size: int = 4000) -> Dataset:
    """Load a FER-2013 folder, a fer2013.csv(.gz), a packed `.npz` (`pack`) or the synthetic set
    ("synthetic", "synthetic:N", None).

    `val_fraction` and `seed` only shape the validation split carved from train when the source has
    no PublicTest/PrivateTest pair; they never change what is decoded or cached."""
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction {val_fraction} must be between 0 and 1 (exclusive), e.g. 0.1")
    cache_root = Path(cache_dir) if cache_dir else cache.default_cache_dir()
    path, kind, name = _resolve("synthetic" if source is None else str(source), cache_root, synthetic_size)
    key = cache.source_digest(path)
    if path.name.endswith(PACKED):  # already decoded arrays: read as they are, not cached again
        parts, notes = cache.read_packed(path)
    else:
        reader = csvfile.read_csv if kind == "csv" else folder.read_folder
        parts, notes = cache.cached(cache_root, key, lambda: reader(path))
    splits = {k: Split(*part) for k, part in parts.items()}
    digest = _content_digest([splits[k] for k in sorted(splits)])
    if "val" not in splits and "train" in splits:
        splits["train"], splits["val"] = _carve(splits["train"], val_fraction, seed)
    order = [k for k in ("train", "val", "test") if k in splits]
    return Dataset(name=name, source=str(path.resolve()), kind=kind, digest=digest,
                   splits={k: splits[k] for k in order}, notes=list(notes), cache_key=key)


def pack(source: str | os.PathLike, out: str | os.PathLike, *, synthetic_size: int = 4000) -> Path:
    """The decoded images of `source` (before any validation carving) as one compressed `.npz`, which
    `load_dataset` reads as the source itself: the same name, kind (synthetic stays synthetic) and
    content digest, so runs on it compare with runs on the source."""
    cache_root = cache.default_cache_dir()
    path, kind, name = _resolve(str(source), cache_root, synthetic_size)
    if path.name.endswith(PACKED):
        parts, notes = cache.read_packed(path)
    else:
        reader = csvfile.read_csv if kind == "csv" else folder.read_folder
        parts, notes = cache.cached(cache_root, cache.source_digest(path), lambda: reader(path))
    return cache.write_packed(Path(out), parts, notes, {"kind": kind, "name": name})


def _content_digest(splits: list[Split]) -> str:
    h = hashlib.sha1()
    for s in splits:
        h.update(np.ascontiguousarray(s.x, np.uint8).tobytes())
        h.update(np.asarray(s.y, np.int64).tobytes())
        h.update("\n".join(map(str, s.names if s.names is not None else [])).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def _resolve(src: str, cache_root: Path, synthetic_size: int) -> tuple[Path, str, str]:
    """(path to read, kind, name) for a source string; the synthetic set is written on first use."""
    if src.split(":")[0] == "synthetic":
        n = _synthetic_size(src, synthetic_size)
        # Generation seed fixed at 0: every run, whatever its training seed, sees the same images.
        path = synthetic.ensure_synthetic(cache_root / "synthetic" / f"s{SYNTHETIC_SEED}-n{n}", n, SYNTHETIC_SEED)
        return path, "synthetic", f"synthetic-fer-s{SYNTHETIC_SEED}-n{n}"
    path = Path(src).expanduser()
    if not path.exists():
        raise DataError(f"data path '{src}' does not exist: pass a FER-2013 folder (train/, test/), "
                        f"a fer2013.csv, or 'synthetic'")
    if path.is_dir():
        name = synthetic.synthetic_name(path)  # written by write_synthetic: still synthetic
        return (path, "synthetic", name) if name else (path, "folder", path.resolve().name)
    if path.name.endswith(PACKED):
        origin = cache.packed_origin(path)
        return path, origin["kind"], origin["name"]
    if not path.name.endswith((".csv", ".csv.gz")):
        raise DataError(f"data file '{src}' is not a .csv, .csv.gz or packed {PACKED}: pass a fer2013.csv, a "
                        f"FER-2013 folder or a file of `fer-exp bundle`")
    return path, "csv", path.name.removesuffix(".gz").removesuffix(".csv")


PACKED = ".npz"


def _synthetic_size(src: str, default: int) -> int:
    if ":" not in src:
        return default
    try:
        n = int(src.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < MIN_SYNTHETIC:
        raise DataError(f"data '{src}' is not a valid synthetic size: use synthetic:N with N >= {MIN_SYNTHETIC}, "
                        f"e.g. synthetic:4000")
    return n


def _carve(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """A stratified, seeded validation split from train; unstratified where a class is too rare."""
    idx = np.arange(len(train.y))
    try:
        tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=train.y)
    except ValueError:  # a class with < 2 images, or fewer val images than classes
        tr, va = train_test_split(idx, test_size=fraction, random_state=seed)
    tr, va = np.sort(tr), np.sort(va)  # keep the source order (grouped by class) within each split
    return train.take(tr), train.take(va)
