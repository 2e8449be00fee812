"""Decode once: decoded arrays are cached as `.npz` keyed by a digest of the source.

Folder digest: sha1 of the sorted (relative path, size, mtime_ns) of its image files — cheap to
compute on 32k files and changes whenever a file is added, removed or rewritten. CSV digest: sha1
of the file's bytes (one sequential read, far cheaper than parsing it).

The folder walk follows symlinks, as the loader does (a class folder may be a link to another disk),
so it keeps the real paths of the folders it is inside: a link back to one of them (`up -> ..`,
`self -> .`) would make it walk forever and is refused with a DataError naming the link. (Two links to
one folder are no loop: it is hashed twice, as before.) A file link that loops or dangles is refused too.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .folder import IMAGE_SUFFIXES
from .labels import DataError

FORMAT = "v2"  # bump when the decoded layout or the reading rules change: old entries are then ignored


def default_cache_dir() -> Path:
    return Path(os.environ.get("FER_CACHE_DIR") or Path.home() / ".cache" / "fer_experiments")


def source_digest(path: Path) -> str:
    h = hashlib.sha1(FORMAT.encode())
    if path.is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:16]
    for rel, name, st in _walk_images(path):
        h.update(f"{rel}/{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _walk_images(root: Path):
    """(folder relative to root, file name, stat) of every image file under root, in sorted order,
    following symlinks like `os.walk(followlinks=True)` (the relative folder is "." for root itself)
    but never round a loop: see the module docstring."""
    def walk(folder: str, rel: str, parents: tuple[str, ...]):
        real = os.path.realpath(folder)
        if real in parents:
            raise DataError(f"folder {folder} is a symlink loop (it leads back to {real}): "
                            f"remove the link (rm {folder}) or point it outside the data folder")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)  # the digest must not depend on the file system's order
        except OSError:  # unreadable: skipped, as os.walk does (the loader says what is wrong if it needs it)
            return
        # os.walk's order, so digests (cache keys) from before this walker stay valid: a folder's
        # files, then its subfolders in name order.
        for entry in entries:
            if not _is_dir(entry) and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                yield rel, entry.name, _stat(entry.path)
        for entry in entries:
            if _is_dir(entry):  # follows links, as the loader does
                yield from walk(entry.path, entry.name if rel == "." else f"{rel}/{entry.name}", (*parents, real))

    yield from walk(str(root), ".", ())


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link that loops: not a folder (`_stat` then says what it is), as in os.walk
        return False


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"image {path} is a symlink loop (the links point at each other): "
                            f"remove it (rm {path}) or link it to a real image") from None
        if os.path.islink(path):
            raise DataError(f"image {path} is a broken symlink (its target {os.readlink(path)} is missing): "
                            f"remove it or restore the target") from None
        raise DataError(f"image {path} cannot be read ({exc.strerror}): fix its permissions or remove it") from None


def cached(root: Path, digest: str, decode):
    """Return (parts, notes) from `<root>/decoded/<digest>.npz`, decoding and writing it if absent."""
    path = root / "decoded" / f"{digest}.npz"
    if path.exists():
        try:
            return _read(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable (e.g. a disk filled up earlier): decode again and overwrite it
    parts, notes = decode()
    _write(path, parts, notes)
    return parts, notes


def write_packed(path: Path, parts, notes, origin: dict) -> Path:
    """`parts` compressed into one `.npz` with where they came from (`origin`: kind, name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{kind}_{k}": a for k, part in parts.items() for kind, a in zip("xyn", part)}
    np.savez_compressed(path, notes=np.array(json.dumps(notes)), origin=np.array(json.dumps(origin)), **arrays)
    return path


def packed_origin(path: Path) -> dict:
    """A packed file's origin; a DataError for a file that is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            origin = json.loads(str(z["origin"]))
        if origin.get("kind") not in ("folder", "csv", "synthetic") or not isinstance(origin.get("name"), str):
            raise ValueError(origin)
        return origin
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise DataError(f"data file '{path}' is not a packed FER data file ({type(exc).__name__}): make one with "
                        f"`fer-exp bundle`, or pass the FER-2013 folder or CSV") from None


def read_packed(path: Path):
    try:
        return _read(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"data file '{path}' is damaged ({type(exc).__name__}): make it again with `fer-exp bundle`") from None


def _read(path: Path):
    with np.load(path, allow_pickle=False) as z:
        notes = json.loads(str(z["notes"]))
        # A cache written before file names were kept lacks n_…: KeyError, so it is decoded again.
        parts = {k[2:]: (z[k], z["y_" + k[2:]], z["n_" + k[2:]]) for k in z.files if k.startswith("x_")}
    return parts, notes


def _write(path: Path, parts, notes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{kind}_{k}": a for k, part in parts.items() for kind, a in zip("xyn", part)}
    # Atomic write: concurrent workers never read a half-written cache, and the loser of a race
    # simply replaces an identical file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, notes=np.array(json.dumps(notes)), **arrays)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
