"""`fer-exp predict`: the emotion of every face in ordinary photos.

Faces are found and cropped by `faces.prepare` (the chosen detector: OpenCV's bundled Haar cascade by
default, or MTCNN); the crops of many images are classified in one `model.predict` call → one row per
face. An image with no face, or one that cannot be read, still gets its row (status `no_face` /
`error`): one bad file never stops a batch.
"""
from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from ..data import CLASSES
from .detectors import get_detector
from .faces import IMAGE_EXTS, FaceImage, InferenceError, find_images, line_width, prepare, read_image, row, unique_stem
from .loading import load_model

CHUNK = 64  # images per model.predict call: rows stream out, memory stays bounded
PROB_COLUMNS = tuple(f"p_{c}" for c in CLASSES)
COLUMNS = ("file", "face", "source", "x", "y", "w", "h", "label", "confidence", *PROB_COLUMNS, "status", "error")


def _face_row(im: FaceImage, i: int, probs: np.ndarray) -> dict:
    p = probs.astype(float)
    return row(COLUMNS, im.path, face=i, source=im.source, **dict(zip("xywh", im.boxes[i])),
               label=CLASSES[int(p.argmax())], confidence=float(p.max()), **dict(zip(PROB_COLUMNS, p.tolist())),
               status="ok")


def predict_images(files: Iterable[Path], model, *, margin: float = 0.2, detector="haar") -> Iterator[list[dict]]:
    """Each image's rows, in file order: one per face, else one `no_face` or `error` row. `detector`: a
    name in `detectors.DETECTORS`, or a detector object from `detectors.get_detector`."""
    detector = get_detector(detector) if isinstance(detector, str) else detector
    files = list(files)
    for start in range(0, len(files), CHUNK):
        images = [prepare(p, detector, margin) for p in files[start:start + CHUNK]]
        found = [im for im in images if im.crops]
        x = np.concatenate([im.batch() for im in found]) if found else None
        probs = iter(model.predict(x, batch_size=256, verbose=0) if found else ())
        for im in images:
            yield ([_face_row(im, i, next(probs)) for i in range(len(im.boxes))]
                   or [row(COLUMNS, im.path, status=im.status, error=im.error)])


def annotate(rows: list[dict], out_dir: Path, used: set[str]) -> Path:
    """A copy of one image (all `rows` are its faces) with boxes and 'label 87%' drawn, in out_dir."""
    src = Path(rows[0]["file"])
    img = read_image(src)
    thick = line_width(img.shape)
    for r in rows:
        x, y, w, h = (r[k] for k in "xywh")
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), thick)
        text, scale = f"{r['label']} {r['confidence']:.0%}", max(0.35, w / 250)
        (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (x, y - base - thick if y > th + base + thick else y + th + thick)  # above the box, else inside
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), thick, cv2.LINE_AA)
    suffix = src.suffix if src.suffix.lower() in IMAGE_EXTS else ".png"
    stem = unique_stem(src.stem, used, taken=lambda s: (out_dir / f"{s}{suffix}").resolve() == src.resolve())
    target = out_dir / f"{stem}{suffix}"  # never the original itself, nor another input's copy
    target.write_bytes(cv2.imencode(suffix, img)[1].tobytes())
    return target


class RowWriter:
    """JSON lines or CSV (the same columns) to an open text file, a row at a time."""

    def __init__(self, fh, fmt: str = "jsonl"):
        self.fh = fh
        self.csv = csv.DictWriter(fh, COLUMNS, lineterminator="\n") if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.csv:
            self.csv.writerow(row)
        else:
            self.fh.write(json.dumps(row) + "\n")


def run(paths, model_uri: str, out: str | None = None, *, fmt: str = "jsonl", margin: float = 0.2,
        annotate_dir: str | None = None, detector: str = "haar") -> str:
    """The whole command: rows to the file `out` (standard output if None), annotated copies to
    annotate_dir; returns the summary line. Nothing is written before the inputs, the detector and the
    model check out."""
    files = find_images(paths)  # before the (slow) model load: a typo fails at once
    face_detector = get_detector(detector)  # likewise an unknown name or a missing package
    model = load_model(model_uri, warn_synthetic=True)  # one line on stderr for a synthetic-data model
    out_dir = Path(annotate_dir) if annotate_dir else None
    with _open_out(out) as out_fh:
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
        return _write_rows(files, model, out_fh, out_dir, fmt=fmt, margin=margin, detector=face_detector)


@contextlib.contextmanager
def _open_out(out: str | None):
    if out is None:
        yield sys.stdout
        return
    try:
        fh = open(out, "w", newline="", encoding="utf-8")  # closed below
    except OSError as exc:
        raise InferenceError(f"--out '{out}' cannot be written ({exc.strerror}): pass another file path") from None
    with fh:
        yield fh


def _write_rows(files, model, out_fh, out_dir: Path | None, *, fmt: str, margin: float, detector) -> str:
    writer, used = RowWriter(out_fh, fmt), set()
    counts = {"ok": 0, "no_face": 0, "error": 0}
    for rows in predict_images(files, model, margin=margin, detector=detector):
        for face in rows:
            writer.write(face)
            counts[face["status"]] += 1
        if out_dir and rows[0]["status"] == "ok":
            annotate(rows, out_dir, used)
    return (f"predict: {len(files)} images, {counts['ok']} faces, {counts['no_face']} without a face, "
            f"{counts['error']} unreadable")
