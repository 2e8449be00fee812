"""`fer-exp export`: a really trained model → TFLite (and ONNX where installed), checked here with our
own runtime calls against Keras inference, not only through the command's printout."""
from __future__ import annotations

import importlib.util

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA, all_runs

from fer_experiments.data import load_dataset

TOL = 1e-4
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnx", "onnxruntime"))


def invoke(*args):
    from fer_experiments.cli import main

    return CliRunner().invoke(main, ["export", *map(str, args)])


def sample_faces() -> np.ndarray:
    """Test faces and random pixels (inputs unlike any face), float32 0..255."""
    faces = load_dataset(SMALL_DATA).splits["test"].x[:64].astype("float32")
    noise = np.random.default_rng(1).uniform(0, 255, (8, *faces.shape[1:])).astype("float32")
    return np.concatenate([faces, noise])


def tflite_predict(path, x: np.ndarray, interpreter=None) -> tuple[np.ndarray, object]:
    if interpreter is None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        interpreter = Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"]).copy(), interpreter


def assert_succeeded(result, path):
    assert result.exit_code == 0, result.output
    assert path.is_file() and f"wrote {path}" in result.output
    assert "max abs diff" in result.output and "label agreement 100.00%" in result.output


@pytest.mark.slow
def test_tflite_export_matches_keras_and_is_logged(in_shared_store, tmp_path):
    result = in_shared_store.result
    out = tmp_path / "exports" / "fer.tflite"  # folder made on the way
    cli = invoke(result.model_uri, "--format", "tflite", "--out", out, "--log")
    assert_succeeded(cli, out)

    x = sample_faces()
    expected = result.model.predict(x, verbose=0)
    got, _ = tflite_predict(out, x)
    assert got.shape == (len(x), 7)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=TOL)
    assert np.abs(got - expected).max() <= TOL
    assert (got.argmax(1) == expected.argmax(1)).all()

    (export_run,) = [r for r in all_runs() if r.data.tags.get("fer.run_kind") == "export"
                     and r.data.params["check_data"] == "synthetic:300"]
    assert export_run.data.tags["fer.exported_model"] == result.model_uri
    assert export_run.info.experiment_id == mlflow.get_run(result.run_id).info.experiment_id
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(export_run.info.run_id, "export")] == \
        ["export/fer.tflite"]
    assert export_run.data.metrics["export_max_abs_diff"] <= TOL


@pytest.fixture
def crop_model(in_shared_store):
    """fer_compact trained on random 40-px windows with every augmentation and erasing (the shared run)."""
    return in_shared_store.result


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", pytest.param("onnx", marks=pytest.mark.skipif(
    not HAS_ONNX, reason="ONNX export needs pip install 'fer_experiments[export]'"))])
def test_crop_model_exports_centre_crop_without_augmentation(crop_model, fmt, tmp_path):
    model = crop_model.model
    assert any(layer.name == "centre_crop" for layer in model.layers)
    out = tmp_path / f"crop.{fmt}"
    assert_succeeded(invoke(crop_model.model_uri, "--format", fmt, "--out", out), out)

    x = sample_faces()
    expected = model.predict(x, verbose=0)
    weights = model.get_weights()  # a training-mode call updates BatchNorm's moving statistics
    assert np.abs(model(x, training=True).numpy() - expected).max() > 1e-2  # augmentation would show
    model.set_weights(weights)
    if fmt == "tflite":
        first, interpreter = tflite_predict(out, x)
        second, _ = tflite_predict(out, x, interpreter)
        # The 48-px input is cropped inside the graph: a 40×40 feature map is in there.
        assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 48, 48, 1]
        assert any(list(t["shape"][1:3]) == [40, 40] for t in interpreter.get_tensor_details())
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        first, second = (session.run(None, {session.get_inputs()[0].name: x})[0] for _ in range(2))
    np.testing.assert_array_equal(first, second)  # no random op left: same input, same output
    assert np.abs(first - expected).max() <= TOL


@pytest.mark.parametrize("args, needle", [
    (["models:/m-0123456789abcdef", "--out", "x.tflite"], "cannot be loaded"),
    (["missing.keras", "--out", "x.tflite"], "not found"),
    (["models:/m-0123456789abcdef", "--out", "x.onnx"], "must end with .tflite"),
    (["missing.keras", "--out", "x.tflite", "--log"], "--log needs a logged model"),
])
def test_bad_input_is_one_line(store, tmp_path, args, needle):
    all_runs()  # the tracking store exists before the command: its set-up logs are not part of the output
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not list(tmp_path.glob("*.tflite"))  # store chdirs into tmp_path


def test_a_mismatch_fails_and_writes_nothing(store, tmp_path, monkeypatch):
    """The check is real: a runtime whose probabilities are off by 1e-3 fails the export."""
    import keras

    from fer_experiments.inference import export

    tiny = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                             keras.layers.Dense(7, activation="softmax")])
    tiny.save(tmp_path / "tiny.keras")
    assert_succeeded(invoke(tmp_path / "tiny.keras", "--out", tmp_path / "tiny.tflite"), tmp_path / "tiny.tflite")
    run = export._run_tflite
    monkeypatch.setattr(export, "_run_tflite", lambda path, x: run(path, x) + 1e-3)
    result = invoke(tmp_path / "tiny.keras", "--out", tmp_path / "off.tflite", "--check-data", "synthetic:100")
    assert result.exit_code == 2 and "does not match Keras: max abs diff 1.00e-03" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.glob("*tflite")) == ["tiny.tflite"]  # no partial file left
