"""`fer-exp predict`: the emotion of every face in ordinary photos.

The pipeline, per image: decode it (any size, colour or gray; EXIF rotation applied) → find faces with
the chosen detector (`detectors.py`: OpenCV's bundled Haar cascade by default, or MTCNN) → widen each
box by `margin`, crop the grayscale image, resize to 48×48 →
classify the crops of many images in one `model.predict` call → one row per face. An image that is
already a face crop (both sides ≤ 64 px, like FER-2013's 48×48) is classified whole. An image with no
face, or one that cannot be read, still gets its row (status `no_face` / `error`): one bad file never
stops a batch.
"""
from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import tracking
from .data import CLASSES
from .detectors import get_detector
from .errors import UserError
from .models import INPUT_SHAPE

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # what a folder is searched for
CROP_MAX_SIDE = 64  # an image no bigger than this on both sides is a face crop: classified whole
CHUNK = 64  # images per model.predict call: rows stream out, memory stays bounded
PROB_COLUMNS = tuple(f"p_{c}" for c in CLASSES)
COLUMNS = ("file", "face", "source", "x", "y", "w", "h", "label", "confidence", *PROB_COLUMNS, "status", "error")


class PredictError(UserError):
    """A problem with the user's paths or model: one line naming it and the fix."""


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the image files under each folder (recursively, sorted)."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            found.append(p)
        else:
            raise PredictError(f"path '{p}' does not exist: pass image files or folders of images")
    if not found:
        raise PredictError(f"no images ({', '.join(IMAGE_EXTS)}) in {', '.join(map(str, paths))}: "
                           "pass image files or folders that hold some")
    return found


def load_model(uri: str):
    """A logged model (models:/…, runs:/…) or a .keras file that maps 48×48 gray faces to CLASSES."""
    if ":/" not in uri and not Path(uri).exists():
        raise PredictError(f"model '{uri}' not found: pass models:/<model id>, runs:/<run id>/<model name> "
                           "or a .keras file")
    model = tracking.load_model(uri)
    if tuple(model.input_shape[1:]) != INPUT_SHAPE or model.output_shape[-1] != len(CLASSES):
        raise PredictError(f"model '{uri}' maps {model.input_shape} to {model.output_shape}, not 48×48×1 faces "
                           f"to {len(CLASSES)} emotions: pass a model trained by fer-exp")
    return model


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 (gray images come as three equal channels); ValueError if it cannot be decoded."""
    data = np.fromfile(path, np.uint8)  # not cv2.imread: that fails silently and on non-ASCII paths
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError("cannot decode the image: empty or corrupt file, or an unsupported format")
    return img


def crop_bounds(shape, box, margin: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the box grown by `margin` × its size (half on each side), clipped to the image."""
    x, y, w, h = box
    dx, dy = int(round(w * margin / 2)), int(round(h * margin / 2))
    return max(0, x - dx), max(0, y - dy), min(shape[1], x + w + dx), min(shape[0], y + h + dy)


def crop_face(gray: np.ndarray, box, margin: float) -> np.ndarray:
    """The `crop_bounds` window of the image, as 48×48."""
    x0, y0, x1, y1 = crop_bounds(gray.shape, box, margin)
    return cv2.resize(gray[y0:y1, x0:x1], INPUT_SHAPE[1::-1], interpolation=cv2.INTER_AREA)


@dataclass
class _Image:
    """One input image after detection: its face boxes and 48×48 crops, or why it has none."""
    path: Path
    source: str = ""  # "detected" | "whole_image"
    boxes: list = field(default_factory=list)
    crops: list = field(default_factory=list)
    error: str | None = None


def prepare(path: Path, detector, margin: float) -> _Image:
    """One image file read, its faces found by `detector` (from `detectors.get_detector`) and cropped;
    a small image is one face crop, an unreadable one an `error`: never an exception for a bad file."""
    try:
        image = read_image(path)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    except (OSError, ValueError, cv2.error) as exc:  # a bad file is a row, not the end of the batch
        return _Image(path, error=next((s for s in str(exc).splitlines() if s.strip()), repr(exc)))
    if max(gray.shape) <= CROP_MAX_SIDE:
        box = (0, 0, gray.shape[1], gray.shape[0])
        return _Image(path, "whole_image", [box], [crop_face(gray, box, 0.0)])
    boxes = detector.detect(image)
    return _Image(path, "detected", boxes, [crop_face(gray, b, margin) for b in boxes])


def _row(path: Path, **fields) -> dict:
    return {c: None for c in COLUMNS} | {"file": str(path)} | fields


def _face_row(im: _Image, i: int, probs: np.ndarray) -> dict:
    p = probs.astype(float)
    return _row(im.path, face=i, source=im.source, **dict(zip("xywh", im.boxes[i])), label=CLASSES[int(p.argmax())],
                confidence=float(p.max()), **dict(zip(PROB_COLUMNS, p.tolist())), status="ok")


def predict_images(files: Iterable[Path], model, *, margin: float = 0.2, detector="haar") -> Iterator[list[dict]]:
    """Each image's rows, in file order: one per face, else one `no_face` or `error` row. `detector`: a
    name in `detectors.DETECTORS`, or a detector object from `detectors.get_detector`."""
    detector = get_detector(detector) if isinstance(detector, str) else detector
    files = list(files)
    for start in range(0, len(files), CHUNK):
        images = [prepare(p, detector, margin) for p in files[start:start + CHUNK]]
        crops = [c for im in images for c in im.crops]
        x = np.stack(crops).astype(np.float32)[..., None] if crops else None
        probs = iter(model.predict(x, batch_size=256, verbose=0) if crops else ())
        for im in images:
            yield ([_face_row(im, i, next(probs)) for i in range(len(im.boxes))]
                   or [_row(im.path, status="error" if im.error else "no_face", error=im.error)])


def annotate(rows: list[dict], out_dir: Path, used: set[Path]) -> Path:
    """A copy of one image (all `rows` are its faces) with boxes and 'label 87%' drawn, in out_dir."""
    src = Path(rows[0]["file"])
    img = read_image(src)
    thick = max(2, round(max(img.shape[:2]) / 400))  # visible on big photos, after JPEG too
    for r in rows:
        x, y, w, h = (r[k] for k in "xywh")
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), (0, 255, 0), thick)
        text, scale = f"{r['label']} {r['confidence']:.0%}", max(0.35, w / 250)
        (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (x, y - base - thick if y > th + base + thick else y + th + thick)  # above the box, else inside
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 0), thick, cv2.LINE_AA)
    suffix = src.suffix if src.suffix.lower() in IMAGE_EXTS else ".png"
    target, n = out_dir / f"{src.stem}{suffix}", 0
    while target in used or target.resolve() == src.resolve():  # same name twice, or the original itself
        n += 1
        target = out_dir / f"{src.stem}-{n}{suffix}"
    used.add(target)
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
    model = load_model(model_uri)
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
        fh = open(out, "w", newline="", encoding="utf-8")  # noqa: SIM115 — closed below
    except OSError as exc:
        raise PredictError(f"--out '{out}' cannot be written ({exc.strerror}): pass another file path") from None
    with fh:
        yield fh


def _write_rows(files, model, out_fh, out_dir: Path | None, *, fmt: str, margin: float, detector) -> str:
    writer, used = RowWriter(out_fh, fmt), set()
    counts = {"ok": 0, "no_face": 0, "error": 0}
    for rows in predict_images(files, model, margin=margin, detector=detector):
        for row in rows:
            writer.write(row)
            counts[row["status"]] += 1
        if out_dir and rows[0]["status"] == "ok":
            annotate(rows, out_dir, used)
    return (f"predict: {len(files)} images, {counts['ok']} faces, {counts['no_face']} without a face, "
            f"{counts['error']} unreadable")
