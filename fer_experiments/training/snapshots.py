"""How a model's predictions evolve: after every epoch, one image of the same fixed validation faces
with what the model predicts for each, for MLflow's image view (`log_image` with key and step), so
its step slider replays training. Drawn with OpenCV (milliseconds per epoch, no matplotlib)."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import keras
import numpy as np

from ..data import CLASSES

SAMPLE = 8  # faces per image: one per class and one more; divides evenly over 1, 2, 4 or 8 devices
KEY = "epoch/predictions"  # the image key: MLflow's run page shows it in the "epoch" chart group
# MLflow shows a logged image, in its card and the card's full-screen view, as a copy whose longer
# side is 256 px (`mlflow.tracking.multimedia.COMPRESSED_IMAGE_SIZE`): an image exactly 256 px wide
# is shown as drawn, its text legible; clicking the image opens this original.
WIDTH = 256
PER_ROW = 4
CELL = WIDTH // PER_ROW  # px per face
CAPTION = 24  # px of text under each face: the predicted label and confidence, then the true label
HEADING = 16


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
    """RGB uint8, WIDTH px wide: the faces in rows of PER_ROW, each with a green (right) or red (wrong)
    frame, the predicted label and confidence under it, then the true label."""
    rows = -(-len(x) // PER_ROW)
    top = HEADING if heading else 0
    img = np.full((top + rows * (CELL + CAPTION), WIDTH, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if heading:
        cv2.putText(img, heading, (2, 12), font, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (face, true, p) in enumerate(zip(x, y, probs)):
        r, c = divmod(i, PER_ROW)
        y0, x0 = top + r * (CELL + CAPTION), c * CELL
        gray = cv2.resize(np.clip(face.squeeze(), 0, 255).astype(np.uint8), (CELL, CELL), interpolation=cv2.INTER_CUBIC)
        img[y0:y0 + CELL, x0:x0 + CELL] = gray[..., None]
        pred = int(p.argmax())
        colour = (0, 150, 0) if pred == true else (210, 0, 0)
        cv2.rectangle(img, (x0, y0), (x0 + CELL - 1, y0 + CELL - 1), colour, 2)
        said = f"{CLASSES[pred]} {100 * p.max():.0f}%"
        cv2.putText(img, said, (x0 + 1, y0 + CELL + 10), font, 0.3 if len(said) < 13 else 0.26, colour, 1, cv2.LINE_AA)
        cv2.putText(img, f"is {CLASSES[true]}", (x0 + 1, y0 + CELL + 21), font, 0.3, (70, 70, 70), 1, cv2.LINE_AA)
    return img


class PredictionSnapshots(keras.callbacks.Callback):
    """Predicts the fixed faces and calls ``sink(image, key=KEY, step=n)`` after epoch n (numbered as
    Keras prints it), and at step 0 before the first: MLflow's image slider starts at step 0, and the
    untrained network's guesses are where the replay begins."""

    def __init__(self, x: np.ndarray, y: np.ndarray, sink: Callable[..., None], seed: int = 0):
        super().__init__()
        keep = fixed_sample(y, seed=seed)
        self.x, self.y, self.sink = x[keep].astype("float32"), y[keep], sink

    def on_train_begin(self, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == 0:  # not a resumed run
            self._snap(0, "before training")

    def on_epoch_end(self, epoch, logs=None):
        self._snap(epoch + 1, f"epoch {epoch + 1}")

    def _snap(self, step: int, when: str) -> None:
        probs = np.asarray(self.model.predict(self.x, batch_size=len(self.x), verbose=0))
        right = int((probs.argmax(axis=1) == self.y).sum())
        self.sink(sheet(self.x, self.y, probs, f"{when}: {right} of {len(self.y)} right"), key=KEY, step=step)
