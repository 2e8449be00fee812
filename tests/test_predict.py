"""`fer-exp predict` on real image files: OpenCV's Haar cascade finds the faces, a real (untrained)
Keras model classifies them. The "photos" are synthetic FER faces, upscaled and pasted at a known
place onto larger colour backgrounds; faces 0 and 1 of `make_synthetic(70, seed=0)` are found by the
cascade at every size (96–200 px) and background (gradient, noise, flat) we tried."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import all_runs

from fer_experiments import models
from fer_experiments.cli import main
from fer_experiments.data import CLASSES
from fer_experiments.data.synthetic import make_synthetic

PROBS = [f"p_{c}" for c in CLASSES]
FACE_AT = {"photo.jpg": (120, 60, 144, 144), "sub/gray_photo.PNG": (40, 100, 180, 180)}  # x, y, w, h


def invoke(*args):
    return CliRunner().invoke(main, ["predict", *map(str, args)], catch_exceptions=False)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def photo(face: np.ndarray, box, rng, gray: bool = False) -> np.ndarray:
    """A 400×300 colour gradient with noise, the face scaled into box."""
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    img = np.dstack([xx * 0.5 + 30, yy * 0.6 + 20, 220 - xx * 0.4]) + rng.normal(0, 8, (300, 400, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    x, y, w, h = box
    img[y:y + h, x:x + w] = cv2.cvtColor(cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if gray else img


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = models.create_model("custom")
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return model, path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder as a user has it: photos with a face, a face crop, a photo without one, a corrupt file."""
    root = tmp_path_factory.mktemp("images")
    faces = make_synthetic(70, seed=0)[0]
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "photo.jpg"), photo(faces[0], FACE_AT["photo.jpg"], rng))
    cv2.imwrite(str(root / "sub/gray_photo.PNG"), photo(faces[1], FACE_AT["sub/gray_photo.PNG"], rng, gray=True))
    cv2.imwrite(str(root / "crop.png"), faces[1])  # 48×48 gray, like a FER-2013 image
    cv2.imwrite(str(root / "noface.png"), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    (root / "corrupt.jpg").write_bytes(rng.bytes(3000))
    (root / "notes.txt").write_text("not an image: skipped in a folder")
    return root, faces


@pytest.fixture(scope="module")
def batch(images, model_file, tmp_path_factory):
    """One jsonl run over the folder with --annotate; its result, rows by file and annotation folder."""
    root, _ = images
    ann = tmp_path_factory.mktemp("annotated")
    result = invoke(root, "--model", model_file[1], "--annotate", ann)
    rows = {Path(r["file"]).relative_to(root).as_posix(): r for r in jsonl(result.stdout)}
    return result, rows, ann


def test_every_image_gets_a_row_and_bad_files_do_not_stop_the_batch(batch):
    result, rows, _ = batch
    assert result.exit_code == 0, result.output
    assert sorted(rows) == ["corrupt.jpg", "crop.png", "noface.png", "photo.jpg", "sub/gray_photo.PNG"]
    assert {k: r["status"] for k, r in rows.items()} == {
        "corrupt.jpg": "error", "crop.png": "ok", "noface.png": "no_face", "photo.jpg": "ok",
        "sub/gray_photo.PNG": "ok"}
    assert "cannot decode" in rows["corrupt.jpg"]["error"]
    assert all(rows["noface.png"][c] is None for c in ("face", "x", "label", "confidence", *PROBS))
    assert "predict: 5 images, 3 faces, 1 without a face, 1 unreadable" in result.stderr
    assert len(result.stdout.splitlines()) == 5  # exactly one row per image here


@pytest.mark.parametrize("name", list(FACE_AT))
def test_face_in_a_photo_is_found_where_it_is(batch, name):
    row = batch[1][name]
    assert row["source"] == "detected" and row["face"] == 0
    assert iou((row["x"], row["y"], row["w"], row["h"]), FACE_AT[name]) > 0.3, row
    p = np.array([row[c] for c in PROBS])
    assert p.shape == (7,) and abs(p.sum() - 1) < 1e-4 and (p >= 0).all()
    assert row["label"] == CLASSES[int(p.argmax())] and row["confidence"] == pytest.approx(p.max())


def test_face_crop_is_classified_whole(batch, images, model_file):
    row, face, model = batch[1]["crop.png"], images[1][1], model_file[0]
    assert (row["source"], row["x"], row["y"], row["w"], row["h"]) == ("whole_image", 0, 0, 48, 48)
    expected = model.predict(face[None, :, :, None].astype(np.float32), verbose=0)[0]
    np.testing.assert_allclose([row[c] for c in PROBS], expected, atol=1e-5)


def test_annotate_draws_boxes_on_copies(batch, images):
    (_, rows, ann), root = batch, images[0]
    assert sorted(p.name for p in ann.iterdir()) == ["crop.png", "gray_photo.PNG", "photo.jpg"]
    drawn, original = cv2.imread(str(ann / "photo.jpg")), cv2.imread(str(root / "photo.jpg"))
    assert drawn.shape == original.shape
    r = rows["photo.jpg"]
    left_edge = np.s_[r["y"] + 10:r["y"] + r["h"] - 10, r["x"]]  # below the label text
    assert np.abs(drawn[left_edge].astype(int) - original[left_edge]).mean() > 40  # the box, not JPEG noise
    assert (drawn[left_edge][:, 1] > 180).mean() > 0.9  # and it is green


def test_csv_has_the_same_rows(batch, images, model_file, tmp_path):
    root, out = images[0], tmp_path / "pred.csv"
    result = invoke(root, "--model", model_file[1], "--format", "csv", "--out", out)
    assert result.exit_code == 0 and result.stdout == ""
    table = pd.read_csv(out)
    expected = pd.DataFrame(jsonl(batch[0].stdout))
    assert list(table.columns) == list(expected.columns)
    assert table["file"].tolist() == expected["file"].tolist()
    assert table["status"].tolist() == expected["status"].tolist()
    np.testing.assert_allclose(table[PROBS].to_numpy(float), expected[PROBS].to_numpy(float), atol=1e-6)


@pytest.mark.parametrize("args, needle", [
    (["/nonexistent/photos"], "path '/nonexistent/photos' does not exist"),
    (["{empty}"], "no images"),
    (["{images}", "--model", "/nonexistent/m.keras"], "model '/nonexistent/m.keras' not found"),
    (["{images}", "--model", "models:/m-nope"], "cannot be loaded"),
    (["{images}", "--model", "{three_classes}"], "not 48×48×1 faces to 7 emotions"),
])
def test_user_errors_are_one_line(store, images, model_file, tmp_path, args, needle):
    out = tmp_path / "rows.jsonl"
    (tmp_path / "empty").mkdir()
    all_runs()  # the tracking store exists before the command: its set-up logs are not part of the output
    three = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")])
    three.save(tmp_path / "three.keras")
    args = [a.format(empty=tmp_path / "empty", images=images[0], three_classes=tmp_path / "three.keras") for a in args]
    if "--model" not in args:
        args += ["--model", str(model_file[1])]
    result = CliRunner().invoke(main, ["predict", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not out.exists()  # nothing written (not even an empty file) before the inputs check out


def test_unwritable_out_is_a_user_error(images, model_file, tmp_path):
    result = CliRunner().invoke(main, ["predict", str(images[0]), "--model", str(model_file[1]),
                                       "--out", str(tmp_path / "no" / "such" / "dir" / "rows.jsonl")])
    assert result.exit_code == 2 and "cannot be written" in result.output, result.output


def test_big_photo_and_duplicate_names(images, model_file, tmp_path):
    """A photo larger than DETECT_MAX_SIDE (searched shrunk, boxes scaled back) named like another."""
    root = images[0]
    big = cv2.resize(cv2.imread(str(root / "photo.jpg")), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    (tmp_path / "big").mkdir()
    cv2.imwrite(str(tmp_path / "big/photo.jpg"), big)  # 1600×1200
    result = invoke(root / "photo.jpg", tmp_path / "big", "--model", model_file[1], "--annotate", tmp_path / "ann")
    small, large = jsonl(result.stdout)
    assert large["status"] == "ok" and large["file"].endswith("big/photo.jpg")
    assert iou([large[k] for k in "xywh"], [4 * v for v in FACE_AT["photo.jpg"]]) > 0.3, large
    assert iou([large[k] / 4 for k in "xywh"], [small[k] for k in "xywh"]) > 0.7
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == ["photo-1.jpg", "photo.jpg"]
    assert cv2.imread(str(tmp_path / "ann/photo-1.jpg")).shape == big.shape


def test_an_image_past_the_pixel_limit_is_an_error_row_before_decoding(images, model_file, tmp_path):
    """The issue's 20000×20000 PNG (400 MP; OpenCV decoded it into 1.2 GB, predict peaked at 3.3 GB) and
    one past MAX_PIXELS yet under Pillow's own limit: each an `error` row, the other images still run."""
    from test_data import bomb_png

    root = tmp_path / "in"
    root.mkdir()
    bomb_png(root / "bomb.png", 20000, 20000)
    bomb_png(root / "wide.png", 10000, 8000)  # 80 MP: Pillow would only warn
    cv2.imwrite(str(root / "crop.png"), images[1][1])
    out = tmp_path / "rows.csv"
    result = invoke(root, "--model", model_file[1], "--format", "csv", "--out", out)
    assert result.exit_code == 0, result.output
    rows = {Path(f).name: r for f, r in pd.read_csv(out).set_index("file").iterrows()}
    assert {k: r["status"] for k, r in rows.items()} == {"bomb.png": "error", "crop.png": "ok", "wide.png": "error"}
    assert "megapixel limit" in rows["bomb.png"]["error"]
    assert "10000x8000 (80 megapixels), over the 50-megapixel limit" in rows["wide.png"]["error"]
    assert "predict: 3 images, 1 faces, 0 without a face, 2 unreadable" in result.stderr


def test_a_model_trained_on_synthetic_faces_is_said_to_be_once(store, images, model_file, tmp_path):
    """A logged model is traced to the run that logged it (its `fer.synthetic` tag); a .keras file names
    no run and gets no warning. `explain` loads models the same way."""
    crop = images[0] / "crop.png"
    uris = {}
    for synthetic in ("true", "false"):
        with mlflow.start_run(tags={"fer.synthetic": synthetic, "fer.dataset": "synthetic-fer-s0-n1200"}) as run:
            # no requirements to infer: MLflow would load the model in a subprocess for them (seconds)
            uris[synthetic] = mlflow.keras.log_model(model_file[0], name="m", pip_requirements=[]).model_uri
        uris[f"runs-{synthetic}"] = f"runs:/{run.info.run_id}/m"
    warning = "warning: this model was trained on SYNTHETIC faces (synthetic-fer-s0-n1200, run "
    for uri in (uris["true"], uris["runs-true"]):
        result = invoke(crop, "--model", uri)
        assert result.exit_code == 0 and result.stderr.count(warning) == 1, result.stderr
        assert "its predictions on real photos mean nothing" in result.stderr and warning not in result.stdout
    for model in (uris["false"], model_file[1]):
        assert "SYNTHETIC" not in invoke(crop, "--model", model).stderr
    explained = CliRunner().invoke(main, ["explain", str(crop), "--model", uris["true"], "--out", str(tmp_path / "x")],
                                   catch_exceptions=False)
    assert explained.exit_code == 0 and explained.stderr.count(warning) == 1, explained.output
