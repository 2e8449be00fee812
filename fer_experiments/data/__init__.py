"""FER-2013 data: the Kaggle folder layout, the original CSV, and synthetic faces — in FER label order.

Pure NumPy/Pillow/pandas/scikit-learn: no tracking, search or CLI code here.
"""
from __future__ import annotations

from pathlib import Path

from .cache import default_cache_dir
from .csvfile import write_csv
from .dataset import Dataset, Split, load_dataset
from .folder import write_split
from .labels import CLASSES, IMAGE_SIZE, DataError, data_words
from .synthetic import make_synthetic, write_synthetic

__all__ = ["CLASSES", "IMAGE_SIZE", "DataError", "data_words", "Dataset", "Split", "load_dataset", "make_synthetic",
           "write_synthetic", "default_cache_dir", "folder_to_csv", "csv_to_folder"]

USAGE_OF = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


def folder_to_csv(root, csv_path) -> Path:
    """Folder layout → fer2013.csv(.gz). A plain test/ (no PublicTest/PrivateTest split) → PublicTest."""
    from .folder import read_folder

    parts, _ = read_folder(Path(root))
    usage = dict(USAGE_OF) if "val" in parts else {**USAGE_OF, "test": "PublicTest"}
    return write_csv(Path(csv_path), {usage[k]: v[:2] for k, v in parts.items()})


def csv_to_folder(csv_path, root) -> Path:
    """fer2013.csv(.gz) → folder layout: Training → train/, PublicTest/PrivateTest → test/ (prefixed)."""
    from .csvfile import read_csv

    parts, _ = read_csv(Path(csv_path))
    root = Path(root)
    prefixes = {"train": ("train", "Training"), "val": ("test", "PublicTest"),
                "test": ("test", "PublicTest" if "val" not in parts else "PrivateTest")}
    for key, (x, y, _) in parts.items():
        split, prefix = prefixes[key]
        write_split(root, split, prefix, x, y)
    return root
