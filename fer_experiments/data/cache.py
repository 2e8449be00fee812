"""Decode once: decoded arrays are cached as `.npz` keyed by a digest of the source.

Folder digest: sha1 of the sorted (relative path, size, mtime_ns) of its image files — cheap to
compute on 32k files and changes whenever a file is added, removed or rewritten. CSV digest: sha1
of the file's bytes (one sequential read, far cheaper than parsing it).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .folder import IMAGE_SUFFIXES

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
    for top, dirs, names in os.walk(path, followlinks=True):  # as the loader, which follows links
        dirs.sort()  # os.walk visits in this order: the digest must not depend on the file system's
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                st = os.stat(os.path.join(top, name))
                h.update(f"{os.path.relpath(top, path)}/{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


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
