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
from pathlib import Path

import numpy as np

from .folder import IMAGE_SUFFIXES

FORMAT = "v1"  # bump when the decoded layout changes


def default_cache_dir() -> Path:
    return Path(os.environ.get("FER_CACHE_DIR") or Path.home() / ".cache" / "fer_experiments")


def source_digest(path: Path) -> str:
    h = hashlib.sha1(FORMAT.encode())
    if path.is_file():
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:
        for p in sorted(path.rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                st = p.stat()
                h.update(f"{p.relative_to(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cached(root: Path, digest: str, decode):
    """Return (parts, notes) from `<root>/decoded/<digest>.npz`, decoding and writing it if absent."""
    path = root / "decoded" / f"{digest}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            notes = json.loads(str(z["notes"]))
            parts = {k[2:]: (z[k], z["y_" + k[2:]]) for k in z.files if k.startswith("x_")}
        return parts, notes
    parts, notes = decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"x_{k}": x for k, (x, _) in parts.items()} | {f"y_{k}": y for k, (_, y) in parts.items()}
    # Atomic write: concurrent workers never read a half-written cache.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, notes=np.array(json.dumps(notes)), **arrays)
    os.replace(tmp, path)
    return parts, notes
