"""Synthetic FER-format faces: 48×48 grayscale, the expression follows the class.

Each class sets a face's mouth curve, openness and width, eyebrow height and tilt, and eye openness
(happy smiles, surprise opens mouth and eyes wide and raises the brows, angry lowers the inner brow
ends and narrows the eyes …). Per-image noise on those parameters makes neighbouring classes overlap
a little, and pose (shift, scale, roll), lighting gradient, contrast and pixel noise vary freely. Class
frequencies follow FER-2013's train imbalance. Vectorised NumPy over the whole batch; deterministic
per seed. Runs on it are labelled synthetic everywhere.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .folder import write_split
from .labels import FER_TRAIN_COUNTS, IMAGE_SIZE

# Per class (FER order): mouth curve (+ = corners up), mouth open, mouth half-width, mouth skew,
# brow raise, brow tilt (+ = inner ends down), eye openness.
EXPRESSIONS = np.array([
    # curve open  width skew raise tilt  eye
    [-1.2, 0.4, 5.0, 0.0, -0.5, 1.8, 0.75],   # angry
    [-1.6, 0.6, 5.0, 1.6, -0.3, 0.9, 0.55],   # disgust
    [-0.6, 2.0, 6.0, 0.0, 2.0, -0.9, 1.35],   # fear
    [3.0, 1.0, 6.8, 0.0, 0.3, 0.0, 0.85],     # happy
    [-2.4, 0.3, 5.2, 0.0, 0.6, -1.4, 0.8],    # sad
    [0.0, 3.4, 3.6, 0.0, 2.6, 0.0, 1.45],     # surprise
    [0.0, 0.3, 5.2, 0.0, 0.0, 0.0, 1.0],      # neutral
], dtype=np.float32)
PARAM_NOISE = np.array([0.7, 0.35, 0.6, 0.4, 0.6, 0.45, 0.15], dtype=np.float32)


def class_counts(n: int) -> np.ndarray:
    p = np.array(FER_TRAIN_COUNTS, dtype=float) / sum(FER_TRAIN_COUNTS)
    counts = np.maximum(np.floor(p * n).astype(int), 2)
    counts[int(np.argmax(p))] += n - counts.sum()  # the remainder goes to the biggest class (happy)
    return counts


def _soft(d: np.ndarray) -> np.ndarray:
    """Anti-aliased inside-ness from a signed distance (negative = inside), ~1 px wide edge."""
    return np.clip(0.5 - d, 0.0, 1.0)


def make_synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(7), class_counts(n)))
    p = EXPRESSIONS[y] + rng.normal(0, 1, (n, 7)).astype(np.float32) * PARAM_NOISE
    curve, mouth_open, width, skew, raise_, tilt, eye = (p[:, i, None, None] for i in range(7))
    width, eye, mouth_open = np.maximum(width, 2.5), np.maximum(eye, 0.25), np.maximum(mouth_open, 0.25)
    # Pose: shift, scale and roll map the pixel grid into the face's own frame.
    g = np.arange(IMAGE_SIZE, dtype=np.float32) - (IMAGE_SIZE - 1) / 2
    gy, gx = np.meshgrid(g, g, indexing="ij")
    dx, dy = (rng.normal(0, 1.5, (2, n, 1, 1))).astype(np.float32)
    scale = rng.uniform(0.88, 1.12, (n, 1, 1)).astype(np.float32)
    roll = np.deg2rad(rng.normal(0, 6, (n, 1, 1))).astype(np.float32)
    u, v = (gx - dx) / scale, (gy - dy) / scale
    x = np.cos(roll) * u + np.sin(roll) * v
    yy = -np.sin(roll) * u + np.cos(roll) * v
    ax = np.abs(x)

    face = _soft((np.sqrt((x / 15.5) ** 2 + (yy / 19.5) ** 2) - 1) * 16)
    eyes = _soft((np.sqrt(((ax - 6.5) / 3.2) ** 2 + ((yy + 4.5) / (1.6 * eye)) ** 2) - 1) * 2.5)
    brow_y = -10.0 - raise_ + tilt * (6.5 - ax) / 3.0
    brows = _soft(np.abs(yy - brow_y) - 1.0) * (ax > 2.8) * (ax < 10.5)
    xm = x / width
    mouth_line = 9.5 - 1.5 * curve * xm ** 2 + 0.75 * curve + skew * xm
    half = np.maximum(1.0, mouth_open * np.sqrt(np.clip(1 - xm ** 2, 0, 1)))
    mouth = _soft(np.abs(yy - mouth_line) - half) * (np.abs(xm) < 1)
    nose = _soft(np.abs(x) - 0.6) * (yy > -2) * (yy < 4) * 0.35

    skin = rng.uniform(140, 200, (n, 1, 1)) + rng.uniform(-20, 20, (n, 1, 1)) * gx / 24
    background = rng.uniform(20, 110, (n, 1, 1)) + rng.uniform(-20, 20, (n, 1, 1)) * gy / 24
    img = background + face * (skin - background)
    img = img - face * np.clip(0.95 * eyes + 0.85 * brows + 0.95 * mouth + nose, 0, 1) * (skin - 15)
    img = (img - img.mean(axis=(1, 2), keepdims=True)) * rng.uniform(0.75, 1.2, (n, 1, 1)) \
        + img.mean(axis=(1, 2), keepdims=True)
    img = img + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), y.astype(np.int64)


def write_synthetic(root, *, n: int = 4000, seed: int = 0, test_fraction: float = 0.2) -> Path:
    """Write the set in the Kaggle folder layout (train/ Training_*, test/ PublicTest_*)."""
    root = Path(root)
    x, y = make_synthetic(n, seed)
    n_test = int(round(n * test_fraction))
    # Build beside the target and rename: parallel workers never see a half-written set.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-"))
    write_split(tmp, "train", "Training", x[n_test:], y[n_test:])
    write_split(tmp, "test", "PublicTest", x[:n_test], y[:n_test])
    (tmp / ".complete").write_text(f"synthetic FER faces, n={n}, seed={seed}\n")
    try:
        os.rename(tmp, root)
    except OSError:  # someone else finished first (or the folder exists): keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / ".complete").exists():
            raise
    return root
