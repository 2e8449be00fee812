"""`fer-exp explain` on a real photograph (scikit-image's astronaut, Eileen Collins), a face crop, a
face-free photo and a broken file, with a real Keras model."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_predict import iou

from fer_experiments import models
from fer_experiments.cli import main
from fer_experiments.data.synthetic import make_synthetic

data = pytest.importorskip("skimage.data")
ASTRONAUT_FACE = (180, 60, 90, 110)  # x, y, w, h: her face in the 512×512 photo, by eye


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    cv2.imwrite(str(root / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "coffee.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    x, _ = make_synthetic(70, seed=0)
    cv2.imwrite(str(root / "crop.png"), x[0].squeeze())
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    model = root / "m.keras"
    models.create_model("custom").save(model)
    return root, model


def test_explain_writes_an_overlay_per_face_and_the_photo_with_its_map(inputs, tmp_path):
    root, model = inputs
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["explain", "--model", str(model), *(str(root / f) for f in
                                       ("astronaut.png", "crop.png", "coffee.png", "broken.jpg")), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2 faces explained" in result.output and "1 without a face" in result.output and "1 unreadable" in result.output
    table = pd.read_csv(out / "explanations.csv")
    rows = {r["file"].rsplit("/", 1)[1]: r for _, r in table.iterrows()}
    assert rows["coffee.png"]["status"] == "no_face" and rows["broken.jpg"]["status"] == "error"
    face = rows["astronaut.png"]
    assert face["status"] == "ok" and iou(tuple(face[k] for k in "xywh"), ASTRONAUT_FACE) > 0.5
    panel = cv2.imread(str(out / face["overlay"]))
    assert panel.shape == (192 + 28, 2 * 192, 3)
    left, right = panel[:192, :192].astype(int), panel[:192, 192:].astype(int)
    assert (np.abs(left[..., 0] - left[..., 2]) < 3).all()  # the crop: gray
    assert np.abs(right[..., 0] - right[..., 2]).mean() > 10  # the overlay: coloured by the map
    photo = cv2.imread(str(out / face["photo"]))
    original = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    assert photo.shape == original.shape
    x, y, w, h = (int(face[k]) for k in "xywh")
    assert np.array_equal(photo[y + h + 40:, :], original[y + h + 40:, :])  # untouched away from the face
    assert not np.array_equal(photo[y:y + h, x:x + w], original[y:y + h, x:x + w])
    assert rows["crop.png"]["status"] == "ok" and pd.isna(rows["crop.png"]["photo"])  # a crop is its own face


def test_explain_with_a_missing_model_is_one_line(inputs, tmp_path):
    root, _ = inputs
    result = CliRunner().invoke(main, ["explain", "--model", str(tmp_path / "nope.keras"), str(root / "crop.png"),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not found" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_explain_of_a_foreign_model_is_one_line(inputs, tmp_path):
    """A 48×48 → 7 Keras model not built here (no conv layer, no "probabilities" head): one line, exit 2."""
    import keras

    root, _ = inputs
    inputs_ = keras.Input((48, 48, 1))
    foreign = keras.Model(inputs_, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs_)))
    foreign.save(tmp_path / "foreign.keras")
    result = CliRunner().invoke(main, ["explain", "--model", str(tmp_path / "foreign.keras"), str(root / "crop.png"),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "to explain: pass a model trained by fer-exp" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_explain_gives_an_image_past_the_pixel_limit_an_error_row(inputs, tmp_path):
    """A small PNG holding 10000×8000 pixels (past faces.MAX_PIXELS): refused from its header, the crop still explained."""
    from test_data import bomb_png

    root, model = inputs
    bomb = bomb_png(tmp_path / "bomb.png", 10000, 8000)
    result = CliRunner().invoke(main, ["explain", "--model", str(model), str(bomb), str(root / "crop.png"),
                                       "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0 and "1 faces explained" in result.output and "1 unreadable" in result.output, result.output
    rows = pd.read_csv(tmp_path / "out" / "explanations.csv").set_index("file")
    assert rows.loc[str(bomb), "status"] == "error" and "over the 50-megapixel limit" in rows.loc[str(bomb), "error"]
    assert rows.loc[str(root / "crop.png"), "status"] == "ok"
