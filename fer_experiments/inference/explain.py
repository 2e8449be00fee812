"""`fer-exp explain`: where a model looks, for any faces or photos (Grad-CAM, `saliency.py`).

Faces are found exactly as `fer-exp predict` finds them (same detectors, margin and crops). Per face
the command writes `<image>-face<k>.png`: the 48×48 crop the model saw, enlarged, beside its Grad-CAM
overlay for the predicted class, captioned with label and confidence. For a photo it also writes
`<image>-explained.png`: the photo with each face's map laid over it. `explanations.csv` lists every
face with its box, prediction and files. Images without a face, or unreadable ones, get a row saying so.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from ..data import CLASSES
from ..evaluation import saliency
from .detectors import get_detector
from .faces import crop_bounds, find_images, line_width, prepare, read_image, row, unique_stem, write_png
from .loading import load_model

SIZE = 192  # px of each enlarged face and its overlay
COLUMNS = ("file", "face", "x", "y", "w", "h", "label", "confidence", "overlay", "photo", "status", "error")


def run(paths, model_uri: str, out_dir: str, *, detector: str = "haar", margin: float = 0.2) -> str:
    """The whole command; returns its summary line. Inputs, detector and model are checked first."""
    files = find_images(paths)
    finder = get_detector(detector)
    model = load_model(model_uri, warn_synthetic=True)  # one line on stderr for a synthetic-data model
    explainer = saliency.explainer(model)  # a 48×48 → 7 model from elsewhere: SaliencyError, one line
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for path in files:
        im = prepare(path, finder, margin)
        stem = unique_stem(path.stem, used)
        if not im.crops:
            rows.append(row(COLUMNS, path, status=im.status, error=im.error))
            continue
        x = im.batch()
        probs = np.asarray(model.predict(x, verbose=0))
        heat, _ = explainer.maps(x, probs.argmax(axis=1))
        photo = f"{stem}-explained.png" if im.source == "detected" else ""
        for k, (box, face, p, h) in enumerate(zip(im.boxes, x, probs, heat)):
            name = f"{stem}-face{k}.png"
            write_png(out / name, face_panel(face, h, p))
            rows.append(row(COLUMNS, path, face=k, **dict(zip("xywh", box)), label=CLASSES[int(p.argmax())],
                            confidence=round(float(p.max()), 4), overlay=name, photo=photo, status="ok"))
        if photo:
            write_png(out / photo, photo_overlay(read_image(path), im.boxes, heat, probs, margin))
    with open(out / "explanations.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    faces = sum(r["status"] == "ok" for r in rows)
    return (f"explain: {len(files)} images, {faces} faces explained (layer {explainer.layer}), "
            f"{sum(r['status'] == 'no_face' for r in rows)} without a face, "
            f"{sum(r['status'] == 'error' for r in rows)} unreadable → {out}")


def face_panel(face: np.ndarray, heat: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """RGB: the enlarged crop | its overlay, over a caption line."""
    gray = cv2.resize(face.squeeze().astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    panel = np.concatenate([cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), saliency.overlay(face, heat, SIZE)], axis=1)
    caption = np.full((28, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(caption, f"{CLASSES[int(probs.argmax())]} {100 * probs.max():.0f}%  (Grad-CAM: red = decisive)",
                (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([panel, caption], axis=0)


def photo_overlay(bgr: np.ndarray, boxes, heat: np.ndarray, probs: np.ndarray, margin: float) -> np.ndarray:
    """RGB: the photo with each face's map (over the crop the model saw) and its label."""
    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    thick = line_width(img.shape)
    for box, h, p in zip(boxes, heat, probs):
        x0, y0, x1, y1 = crop_bounds(img.shape, box, margin)
        img[y0:y1, x0:x1] = saliency.blend(img[y0:y1, x0:x1], h)
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), thick)
        cv2.putText(img, f"{CLASSES[int(p.argmax())]} {100 * p.max():.0f}%", (x0, max(y0 - 6, 14)),
                    cv2.FONT_HERSHEY_SIMPLEX, max(0.45, (x1 - x0) / 250), (255, 255, 255), thick, cv2.LINE_AA)
    return img
