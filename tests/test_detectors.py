"""The face detectors of `fer-exp predict --detector` on real photographs that ship with scikit-image
(the astronaut: one frontal face; coffee: none), against the hand-set face box of benchmarks/detectors.py."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner
from test_predict import iou, jsonl, model_file  # noqa: F401 — model_file is a fixture used below

from benchmarks.detectors import REAL_FACES
from fer_experiments.cli import main
from fer_experiments.errors import UserError
from fer_experiments.inference.detectors import DETECTORS, get_detector

ASTRONAUT_FACE = REAL_FACES["astronaut"][0]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def detectors():
    return {name: get_detector(name) for name in DETECTORS}


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_detector_finds_the_astronaut_in_colour_and_gray(detectors, astronaut, name):
    det = detectors[name]
    assert det.name == name
    for image in (astronaut, cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)):
        boxes = det.detect(image)
        assert len(boxes) == 1 and all(isinstance(v, int) for v in boxes[0]), boxes
        assert iou(boxes[0], ASTRONAUT_FACE) >= 0.5, boxes


def test_mtcnn_finds_no_face_on_a_face_free_photo(detectors):
    assert detectors["mtcnn"].detect(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)) == []


def test_mtcnn_boxes_are_squares_left_to_right_in_the_photo_pixels(detectors, astronaut):
    """Two astronauts side by side, the photo upscaled past DETECT_MAX_SIDE (searched shrunk)."""
    pair = cv2.resize(np.hstack([astronaut, astronaut]), None, fx=1.5, fy=1.5, interpolation=cv2.INTER_CUBIC)
    boxes = detectors["mtcnn"].detect(pair)  # 1536×768
    x, y, w, h = (round(1.5 * v) for v in ASTRONAUT_FACE)
    assert len(boxes) == 2 and boxes[0][0] < boxes[1][0], boxes
    assert iou(boxes[0], (x, y, w, h)) >= 0.5 and iou(boxes[1], (x + 768, y, w, h)) >= 0.5, boxes
    assert all(abs(b[2] - b[3]) <= 1 for b in boxes), boxes


def _haar_before(gray: np.ndarray) -> list:
    """predict.py's Haar detection before the registry (its code, verbatim in effect)."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    scale = min(1.0, 1280 / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    boxes = cascade.detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=5, minSize=(32, 32))
    return sorted(tuple(int(round(v / scale)) for v in box) for box in boxes)


def test_haar_through_the_registry_finds_what_predict_found_before(detectors, astronaut):
    big = cv2.resize(astronaut, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 1536 px: the shrunk path
    for image in (astronaut, big):
        expected = _haar_before(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        assert expected and detectors["haar"].detect(image) == expected


def test_unknown_detector_is_a_one_line_user_error_naming_the_choices():
    with pytest.raises(UserError) as err:
        get_detector("dlib")
    msg = str(err.value)
    assert "'dlib'" in msg and "haar, mtcnn" in msg and "\n" not in msg


def test_the_cli_offers_the_registry():
    for command in ("predict", "explain"):
        option = next(p for p in main.commands[command].params if p.name == "detector")
        assert list(option.type.choices) == list(DETECTORS) and option.default == "haar", command


@pytest.fixture(scope="module")
def astronaut_png(astronaut, tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    cv2.imwrite(str(path), astronaut)
    return path


def test_predict_with_mtcnn_end_to_end(astronaut_png, model_file):  # noqa: F811 — the fixture
    result = CliRunner().invoke(main, ["predict", str(astronaut_png), "--model", str(model_file[1]),
                                       "--detector", "mtcnn"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = jsonl(result.stdout)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["source"] == "detected", rows
    assert iou([rows[0][k] for k in "xywh"], ASTRONAUT_FACE) >= 0.5, rows[0]
    assert "predict: 1 images, 1 faces, 0 without a face, 0 unreadable" in result.stderr


def test_missing_mtcnn_package_is_a_one_line_error_before_anything_is_written(
        astronaut_png, model_file, tmp_path, monkeypatch):  # noqa: F811 — the fixture
    monkeypatch.setitem(sys.modules, "mtcnn", None)  # `import mtcnn` now raises ImportError, as when not installed
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["predict", str(astronaut_png), "--model", str(model_file[1]),
                                       "--detector", "mtcnn", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'fer_experiments[faces]'" in lines[0], result.output
    assert not out.exists()
