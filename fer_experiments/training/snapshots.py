"""How a model's predictions evolve: after every epoch, one image of the same fixed validation faces
with what the model predicts for each, for MLflow's image view (`log_image` with key and step), so
its step slider replays training. Drawn with OpenCV (milliseconds per epoch, no matplotlib)."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import keras
import numpy as np

from ..data import CLASSES

SAMPLE = 16  # faces per image: divides evenly over 1, 2, 4, 8 or 16 devices under data parallelism
KEY = "epoch/predictions"  # the image key: MLflow's run page shows it first in the "epoch" chart group
CELL = 96  # px per face
CAPTION = 30  # px of text under each face
PER_ROW = 8


def fixed_sample(y: np.ndarray, n: int = SAMPLE, seed: int = 0) -> np.ndarray:
    """Indices of `n` faces taken round-robin over the classes (seeded), so rare classes show too."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(y == c))) for c in range(len(CLASSES))]
    chosen: list[int] = []
    while len(chosen) < min(n, len(y)):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop()))
    return np.array(chosen)


def sheet(x: np.ndarray, y: np.ndarray, probs: np.ndarray, heading: str = "") -> np.ndarray:
    """RGB uint8: the faces in rows of PER_ROW, each with a green (right) or red (wrong) frame, its
    true label above the predicted label and confidence."""
    rows = -(-len(x) // PER_ROW)
    top = 24 if heading else 0
    img = np.full((top + rows * (CELL + CAPTION), PER_ROW * CELL, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if heading:
        cv2.putText(img, heading, (4, 17), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (face, true, p) in enumerate(zip(x, y, probs)):
        r, c = divmod(i, PER_ROW)
        y0, x0 = top + r * (CELL + CAPTION), c * CELL
        gray = cv2.resize(np.clip(face.squeeze(), 0, 255).astype(np.uint8), (CELL, CELL), interpolation=cv2.INTER_CUBIC)
        img[y0:y0 + CELL, x0:x0 + CELL] = gray[..., None]
        pred = int(p.argmax())
        colour = (0, 150, 0) if pred == true else (210, 0, 0)
        cv2.rectangle(img, (x0 + 1, y0 + 1), (x0 + CELL - 2, y0 + CELL - 2), colour, 3)
        cv2.putText(img, f"true {CLASSES[true]}", (x0 + 3, y0 + CELL + 12), font, 0.33, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, f"{CLASSES[pred]} {100 * p.max():.0f}%", (x0 + 3, y0 + CELL + 26), font, 0.4, colour, 1,
                    cv2.LINE_AA)
    return img


class PredictionSnapshots(keras.callbacks.Callback):
    """At each epoch's end, predicts the fixed faces and calls ``sink(image, key=KEY, step=epoch)``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, sink: Callable[..., None], seed: int = 0):
        super().__init__()
        keep = fixed_sample(y, seed=seed)
        self.x, self.y, self.sink = x[keep].astype("float32"), y[keep], sink

    def on_epoch_end(self, epoch, logs=None):
        probs = np.asarray(self.model.predict(self.x, batch_size=len(self.x), verbose=0))
        right = int((probs.argmax(axis=1) == self.y).sum())
        self.sink(sheet(self.x, self.y, probs, f"epoch {epoch + 1}: {right}/{len(self.y)} validation faces right"),
                  key=KEY, step=epoch + 1)  # the step is the epoch's number, as in the heading
