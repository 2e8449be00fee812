"""The Kaggle folder layout: `<root>/train/<class>/*.jpg|png`, `<root>/test/<class>/...`.

Image rules: grayscale 48×48 is the format. A gray image stored as RGB(A) is accepted; a truly
coloured one is rejected (FER-2013 is grayscale — convert it first). Other sizes are resized to
48×48 (bilinear) and counted in the dataset's notes. Corrupt or unreadable files are rejected. Every
rejection is a one-line DataError naming the file and the fix.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .labels import CLASSES, IMAGE_SIZE, DataError, class_index

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """One image as (48, 48) uint8, and whether it had to be resized."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "RGBA", "P", "LA"):
                rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
                if np.abs(rgb[..., 0] - rgb[..., 1]).max() > 2 or np.abs(rgb[..., 1] - rgb[..., 2]).max() > 2:
                    raise DataError(f"image {path} is in colour but FER-2013 is grayscale: convert it "
                                    f"(e.g. PIL Image.convert('L')) or remove it")
            gray = im.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"image {path} is corrupt or unreadable ({type(exc).__name__}): delete or replace it") from None
    resized = gray.size != (IMAGE_SIZE, IMAGE_SIZE)
    if resized:
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    return np.asarray(gray, dtype=np.uint8), resized


def _class_files(split_dir: Path, notes: list[str]) -> list[tuple[Path, int]]:
    files = []
    seen = set()
    for sub in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        label = class_index(sub.name)
        if label is None:
            raise DataError(f"unknown class folder {sub}: FER-2013 class folders are {', '.join(CLASSES)}; "
                            f"rename or remove it")
        images = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"class folder {sub} is empty: add its images or remove the folder")
        seen.add(label)
        files += [(p, label) for p in images]
    missing = [c for i, c in enumerate(CLASSES) if i not in seen]
    if missing:
        notes.append(f"{split_dir.name}/ has no folder for {', '.join(missing)}")
    return files


def _decode_all(files: list[tuple[Path, int]], notes: list[str], where: str):
    with ThreadPoolExecutor(max_workers=8) as pool:  # Pillow releases the GIL while decoding
        decoded = list(pool.map(lambda f: _decode(f[0]), files, chunksize=64))
    x = np.stack([d[0] for d in decoded])[..., None] if decoded else np.zeros((0, 48, 48, 1), np.uint8)
    y = np.array([label for _, label in files], dtype=np.int64)
    n_resized = sum(d[1] for d in decoded)
    if n_resized:
        notes.append(f"{n_resized} images in {where}/ were not {IMAGE_SIZE}x{IMAGE_SIZE} and were resized")
    return x, y


def read_folder(root: Path):
    """{split: (x, y)} and notes. PublicTest_/PrivateTest_ files in test/ → val/test (FER-2013 protocol)."""
    notes: list[str] = []
    dirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    if "train" not in dirs and "test" not in dirs:
        raise DataError(f"folder {root} has neither train/ nor test/: use the Kaggle FER-2013 layout "
                        f"<root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg")
    parts = {}
    if "train" in dirs:
        parts["train"] = _decode_all(_class_files(dirs["train"], notes), notes, "train")
    if "test" in dirs:
        files = _class_files(dirs["test"], notes)
        public = [f for f in files if f[0].name.startswith("PublicTest")]
        private = [f for f in files if f[0].name.startswith("PrivateTest")]
        if public and private:
            parts["val"] = _decode_all(public, notes, "test (PublicTest)")
            parts["test"] = _decode_all(private, notes, "test (PrivateTest)")
        else:
            parts["test"] = _decode_all(files, notes, "test")
    return parts, notes


def write_split(root: Path, split: str, prefix: str, x: np.ndarray, y: np.ndarray) -> None:
    for label in np.unique(y):  # only classes present: an empty class folder is an error on reading
        (root / split / CLASSES[int(label)]).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(x, y)):
        Image.fromarray(np.asarray(img).reshape(IMAGE_SIZE, IMAGE_SIZE)).save(
            root / split / CLASSES[int(label)] / f"{prefix}_{i:06d}.png")
