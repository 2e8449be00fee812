"""Test-time augmentation: predictions averaged over views of each face (flip; ten-crop: the centre and
corner windows and their mirrors) and over the models of an ensemble."""
from __future__ import annotations

import numpy as np

TENCROP_SHIFT = 4  # px, for models without a centre crop: the 40-px windows of a 48-px face lie within ±4 px
TENCROP_OFFSETS = ((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))  # centre, then the four corners


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.asarray(model.predict(x.astype("float32"), batch_size=batch_size, verbose=0))


def shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The batch moved by (dy, dx) px with edge padding: the window a centre-crop model sees moves by
    (−dy, −dx), so a shift by ±4 px puts a corner 40-px crop of the 48-px face in the centre."""
    s = max(abs(dy), abs(dx))
    padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")
    h, w = x.shape[1:3]
    return padded[:, s - dy:s - dy + h, s - dx:s - dx + w]


def view_probs(models, x: np.ndarray, tta: str) -> list[np.ndarray]:
    """Per test-time view, the mean probabilities over the models; views in the order
    original, the tencrop shifts (if any), then their mirrors — so view 0 is the plain prediction
    and views [0, len/2] are the flip pair."""
    models = models if isinstance(models, (list, tuple)) else [models]
    return list(np.mean([[predict(m, v) for v in _views(x, tta, tencrop_shift(m))] for m in models], axis=0))


def _views(x: np.ndarray, tta: str, margin: int) -> list[np.ndarray]:
    offsets = TENCROP_OFFSETS if tta == "tencrop" else ((0, 0),)
    views = [shift(x, dy * margin, dx * margin) if dy or dx else x for dy, dx in offsets]
    if tta in ("flip", "tencrop"):
        views += [v[:, :, ::-1, :] for v in views]
    return views


def tencrop_shift(model) -> int:
    """How far the corner windows lie from the centre one: (face − crop) / 2 for a model trained with
    `crop` (its in-model centre crop says how big), else TENCROP_SHIFT."""
    for layer in getattr(model, "layers", ()):
        if layer.name == "centre_crop" and hasattr(layer, "height"):
            return (model.input_shape[1] - layer.height) // 2
    return TENCROP_SHIFT


def combine(per_view: list[np.ndarray], tta: str) -> np.ndarray:
    if tta == "none":
        return per_view[0]
    if tta == "flip":
        return (per_view[0] + per_view[len(per_view) // 2]) / 2
    return np.mean(per_view, axis=0)


def predict_views(models, x: np.ndarray, tta: str = "none") -> np.ndarray:
    """Mean probabilities over models (an ensemble) and test-time views.

    tta: ``none``; ``flip`` (original + mirror); ``tencrop`` (the five crop×crop windows — centre and
    corners — and their mirrors: exact for models trained with any ``crop``, which predict on the
    centre window; for other models ±TENCROP_SHIFT px shifts of the whole face)."""
    return combine(view_probs(models, x, tta), tta)
