"""The Kaggle folder layout: `<root>/train/<class>/*.jpg|png`, `<root>/test/<class>/...`.

Layout rules: class folders match CLASSES case-insensitively and map to FER label order (never
alphabetical). A missing class folder is a note; an empty or unknown one is an error. Files with other
extensions and hidden entries (`.ipynb_checkpoints`, macOS `._*`) are ignored. File lists are sorted,
so the order of images is deterministic (grouped by class, then by file name).

Image rules: grayscale 48×48 is the format. A gray image stored as RGB(A) or palette is accepted; a
truly coloured one is rejected (FER-2013 is grayscale — convert it first). Other sizes are resized to
48×48 (bilinear) and counted in the dataset's notes. Corrupt or unreadable files are rejected, and so
is an image over MAX_PIXELS, from its header before anything is decoded (a decompression bomb: a small
file whose pixels fill gigabytes). Every rejection is a one-line DataError naming the file and the fix.
Decoding runs on a thread pool.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .labels import CLASSES, IMAGE_SIZE, DataError, class_index

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
COLOUR_TOLERANCE = 2  # max channel difference (0..255) still counted as gray
BATCH = 256  # files per decoding task
# A FER image is 48×48: anything near this size is a mistake or a decompression bomb. Below Pillow's
# own bomb limit (Image.MAX_IMAGE_PIXELS, ~89 MP, a warning; twice that, an error), so its warning
# adds nothing and is silenced while decoding. 50 MP: a full-size phone photo is still resized, not refused.
MAX_PIXELS = 50_000_000


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """One image as (48, 48) uint8, and whether it had to be resized."""
    try:
        with Image.open(path) as im:  # reads the header only: size and mode, no pixels yet
            pixels = im.width * im.height
            if pixels <= MAX_PIXELS:
                im.load()
    except Image.DecompressionBombError:  # Pillow refuses to even open it (over twice its own limit)
        raise DataError(_too_big(path, f"claims more than {2 * (Image.MAX_IMAGE_PIXELS or 0) // 10**6} megapixels")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # Pillow's ways to say "not an image"
        raise DataError(f"image {path} is corrupt or unreadable ({type(exc).__name__}): delete or replace it") from None
    if pixels > MAX_PIXELS:
        raise DataError(_too_big(path, f"is {im.width}x{im.height} ({pixels / 1e6:.0f} megapixels)"))
    if im.mode == "P" or len(set(im.getbands()) - {"A"}) > 1:  # a mode that can hold colour
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
        # Gray saved as RGB has equal channels (JPEG keeps them equal too); allow rounding slack.
        if np.abs(np.diff(rgb, axis=-1)).max() > COLOUR_TOLERANCE:
            raise DataError(f"image {path} is in colour but FER-2013 is grayscale: convert it "
                            f"(e.g. PIL Image.convert('L')) or remove it")
    gray = im.convert("L")
    resized = gray.size != (IMAGE_SIZE, IMAGE_SIZE)
    if resized:  # Pillow's bilinear filter widens its support when shrinking: an area-like average
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    return np.asarray(gray, dtype=np.uint8), resized


def _too_big(path: Path, size: str) -> str:
    return (f"image {path} {size}: a data image may have at most {MAX_PIXELS // 10**6} megapixels (is it a "
            f"decompression bomb?); FER-2013 images are 48x48: shrink it or remove it")


def _visible(path: Path) -> bool:
    """Skip hidden entries (.ipynb_checkpoints, macOS ._ files): they are never FER images."""
    return not path.name.startswith(".")


def _class_files(split_dir: Path, notes: list[str]) -> list[tuple[Path, int]]:
    files = []
    seen = set()
    for sub in sorted(p for p in split_dir.iterdir() if p.is_dir() and _visible(p)):
        label = class_index(sub.name)
        if label is None:
            raise DataError(f"unknown class folder {sub}: FER-2013 class folders are {', '.join(CLASSES)}; "
                            f"rename or remove it")
        images = sorted((p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and _visible(p)),
                        key=lambda p: p.name)  # by name: comparing Path objects is slow on 32k files
        if not images:
            raise DataError(f"class folder {sub} is empty: add its images or remove the folder")
        seen.add(label)
        files += [(p, label) for p in images]
    if not seen:
        raise DataError(f"{split_dir} has no class folders: put the images in {split_dir}/<class>/ "
                        f"with <class> among {', '.join(CLASSES)}")
    missing = [c for i, c in enumerate(CLASSES) if i not in seen]
    if missing:
        notes.append(f"{split_dir.name}/ has no folder for {', '.join(missing)}")
    return files


def _decode_all(files: list[tuple[Path, int]], notes: list[str], where: str, root: Path):
    """(x, y, names): names are the files' paths relative to `root`, to find an image again."""
    paths = [path for path, _ in files]
    batches = [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]
    # Threads, not processes: Pillow releases the GIL while decoding and nothing needs pickling.
    # Batches keep the per-task overhead (a future per file) small next to a 48x48 JPEG's decode.
    # Pillow's DecompressionBombWarning is silenced around the pool, not in each thread: warning
    # filters are process-wide, and catch_warnings in threads that overlap would restore them wrongly.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS, lower, is checked instead
        decoded = [d for batch in pool.map(lambda b: [_decode(p) for p in b], batches) for d in batch]
    x = np.stack([d[0] for d in decoded])[..., None] if decoded else np.zeros((0, 48, 48, 1), np.uint8)
    y = np.array([label for _, label in files], dtype=np.int64)
    n_resized = sum(d[1] for d in decoded)
    if n_resized:
        notes.append(f"{n_resized} images in {where}/ were not {IMAGE_SIZE}x{IMAGE_SIZE} and were resized")
    names = np.array([path.relative_to(root).as_posix() for path in paths], dtype=str)
    return x, y, names


def read_folder(root: Path):
    """{split: (x, y, file names)} and notes. PublicTest_/PrivateTest_ files in test/ → val/test (FER-2013 protocol)."""
    notes: list[str] = []
    dirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    if "train" not in dirs and "test" not in dirs:
        raise DataError(f"folder {root} has neither train/ nor test/: use the Kaggle FER-2013 layout "
                        f"<root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg")
    parts = {}
    if "train" in dirs:
        parts["train"] = _decode_all(_class_files(dirs["train"], notes), notes, "train", root)
    if "test" in dirs:
        parts |= _read_test(_class_files(dirs["test"], notes), notes, root)
    return parts, notes


def _read_test(files: list[tuple[Path, int]], notes: list[str], root: Path) -> dict:
    """Both PublicTest_ and PrivateTest_ present: the FER-2013 protocol (val, test); else all is test."""
    public = [f for f in files if f[0].name.startswith("PublicTest")]
    private = [f for f in files if f[0].name.startswith("PrivateTest")]
    if not (public and private):
        return {"test": _decode_all(files, notes, "test", root)}
    others = [f for f in files if not f[0].name.startswith(("PublicTest", "PrivateTest"))]
    if others:  # kept with the held-out half rather than silently dropped
        notes.append(f"{len(others)} files in test/ are neither PublicTest_ nor PrivateTest_: counted as test")
    return {"val": _decode_all(public, notes, "test (PublicTest)", root),
            "test": _decode_all(private + others, notes, "test (PrivateTest)", root)}


def write_split(root: Path, split: str, prefix: str, x: np.ndarray, y: np.ndarray) -> None:
    for label in np.unique(y):  # only classes present: an empty class folder is an error on reading
        (root / split / CLASSES[int(label)]).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(x, y)):
        Image.fromarray(np.asarray(img).reshape(IMAGE_SIZE, IMAGE_SIZE)).save(
            root / split / CLASSES[int(label)] / f"{prefix}_{i:06d}.png")
