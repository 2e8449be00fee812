"""Face detectors for `fer-exp predict`, by name: `get_detector("haar" | "mtcnn")`.

Each detector has a `name` and `detect(image) -> [(x, y, w, h), …]`: face boxes in the pixels of the
BGR (or gray) uint8 image it is given, left to right. Both search big photos shrunk to DETECT_MAX_SIDE
and look for faces from MIN_FACE px up there, so `--detector` changes how faces are found, not which
sizes are looked for.

- `haar`: OpenCV's bundled Haar cascade (the default). Ships with opencv, starts at once; finds
  roughly frontal, upright faces.
- `mtcnn`: MTCNN (Zhang et al. 2016) from the `mtcnn` package (pip install 'fer_experiments[faces]'),
  which runs on TensorFlow and carries its weights in its wheel. Finds more faces (profiles too) with
  fewer false boxes at about the same time per photo, after a few seconds' loading.
Figures for both on real photos: `python -m benchmarks.detectors` (the README has them).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import UserError

MIN_FACE = 32  # px (at detection scale): smaller faces hold too little for a 48×48 classifier
DETECT_MAX_SIDE = 1280  # big photos are searched shrunk to this (detection time grows with pixels)
CASCADE = "haarcascade_frontalface_default.xml"  # ships with opencv-python(-headless) 4.x, in cv2.data
SCALE_FACTOR = 1.1  # 10 % between the scales searched: OpenCV's usual speed/recall trade
MIN_NEIGHBORS = 5  # overlapping hits a face needs; fewer finds more faces and more false ones
# MTCNN's score of a box; its last stage already drops those under 0.8. 0.9 keeps nearly every face
# 0.8 finds and drops part of the false boxes; the sweep behind it (found faces and false boxes per
# cut) is printed by `python -m benchmarks.detectors --fer-dir ../shared/fer2013 --detector mtcnn`
# and kept in benchmarks/results/detectors.json.
MTCNN_MIN_CONFIDENCE = 0.9
# mtcnn 1.0.0's default smallest face. Its image pyramid is built for it: from min_face_size ≈ 28 on,
# the last pyramid level comes out under the 12-px network window and detect_faces silently returns
# no face at all. So the photo is shrunk by MTCNN_NET_FACE / MIN_FACE instead, which makes a MIN_FACE
# face the network's smallest one (and costs less than searching at full size).
MTCNN_NET_FACE = 20

Box = tuple[int, int, int, int]


class DetectorError(UserError):
    """A face detector that cannot be had: one line naming it and the fix."""


def _shrunk(image: np.ndarray, scale: float) -> np.ndarray:
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image


def _detection_scale(image: np.ndarray) -> float:
    return min(1.0, DETECT_MAX_SIDE / max(image.shape[:2]))


class HaarDetector:
    """OpenCV's frontal-face cascade on the histogram-equalised gray photo: predict's detector since the start."""

    name = "haar"

    def __init__(self):
        if not hasattr(cv2, "CascadeClassifier"):  # OpenCV 5 moved the Haar cascades out of the main wheel
            raise DetectorError(f"OpenCV {cv2.__version__} has no Haar cascade: "
                                "pip install 'opencv-python-headless>=4.8,<5' (or use --detector mtcnn)")
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if self.cascade.empty():
            raise DetectorError(f"{cv2.data.haarcascades + CASCADE} is missing or unreadable: "
                                "reinstall opencv-python-headless")

    def detect(self, image: np.ndarray) -> list[Box]:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = _detection_scale(gray)
        boxes = self.cascade.detectMultiScale(cv2.equalizeHist(_shrunk(gray, scale)), scaleFactor=SCALE_FACTOR,
                                              minNeighbors=MIN_NEIGHBORS, minSize=(MIN_FACE, MIN_FACE))
        return sorted(tuple(int(round(v / scale)) for v in box) for box in boxes)


class MtcnnDetector:
    """MTCNN's three networks (proposal, refine, output) on the colour photo, boxes scored >= min_confidence."""

    name = "mtcnn"

    def __init__(self, min_confidence: float = MTCNN_MIN_CONFIDENCE):
        try:
            from mtcnn import MTCNN  # optional, and it imports TensorFlow
        except ImportError:
            raise DetectorError("face detector 'mtcnn' needs the mtcnn package: "
                                "pip install 'fer_experiments[faces]' (or pip install mtcnn)") from None
        import keras

        if keras.backend.backend() != "tensorflow":  # mtcnn calls .numpy() on its Keras outputs
            raise DetectorError(f"face detector 'mtcnn' runs on Keras's TensorFlow backend, not "
                                f"'{keras.backend.backend()}': unset KERAS_BACKEND (or use --detector haar)")
        self.net = MTCNN()
        self.min_confidence = min_confidence

    def scored(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """Every box MTCNN reports (confidence >= 0.8, its own last-stage cut) with its confidence."""
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
        scale = _detection_scale(rgb) * MTCNN_NET_FACE / MIN_FACE
        found = self.net.detect_faces(_shrunk(rgb, scale), min_face_size=MTCNN_NET_FACE)
        height, width = rgb.shape[:2]
        out = []
        for face in found:
            x, y, w, h = (float(v) / scale for v in face["box"])
            # A square of the box's area around its centre (clipped to the photo), like Haar's boxes and
            # FER's crops: MTCNN's boxes are ~1.3× taller than wide and would be squashed in the 48×48
            # crop (on the astronaut this square and Haar's box have IoU 0.91).
            side = (w * h) ** 0.5
            x0, y0 = max(0, round(x + w / 2 - side / 2)), max(0, round(y + h / 2 - side / 2))
            x1, y1 = min(width, round(x + w / 2 + side / 2)), min(height, round(y + h / 2 + side / 2))
            if x1 > x0 and y1 > y0:
                out.append(((x0, y0, x1 - x0, y1 - y0), float(face["confidence"])))
        return sorted(out)

    def detect(self, image: np.ndarray) -> list[Box]:
        return [box for box, confidence in self.scored(image) if confidence >= self.min_confidence]


DETECTORS = {"haar": HaarDetector, "mtcnn": MtcnnDetector}


def get_detector(name: str):
    """A ready detector; DetectorError for an unknown name or one whose package is missing."""
    if name not in DETECTORS:
        raise DetectorError(f"unknown face detector '{name}': choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name]()
