"""`fer-exp export`: a trained model as one standalone file for inference without Keras, checked
against Keras before it is kept.

Formats: ``tflite`` (LiteRT, for phones and edge devices: Keras's own ``format="litert"`` exporter)
and ``onnx`` (ONNX Runtime, via tf2onnx; needs ``pip install 'fer_experiments[export]'``).

Both trace the model with ``training=False``: the augmentation layers in front of the network
(``augment``) and Dropout drop out of the graph, BatchNormalization uses its moving statistics, and
the crop models' CenterCrop stays. Keras's LiteRT exporter does this itself. Its ONNX and
``tf_saved_model`` exporters (TF backend, Keras 3.15) trace the default call instead, in which Keras
3's random preprocessing layers and Dropout are active: the SavedModel augments every request, and
the ONNX graph holds random ops that ONNX Runtime cannot load. So for ONNX we give tf2onnx our own
inference-mode function.

The check: the exported file runs in its own runtime (LiteRT's interpreter, ONNX Runtime) on up to
MAX_CHECK faces of ``check_data`` plus RANDOM_CHECK random-pixel images, and its probabilities must
equal ``model.predict``'s within TOLERANCE; otherwise nothing is written at ``out``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import data as fer_data
from ..errors import UserError
from ..models import INPUT_SHAPE
from ..tracking import MlflowTracker
from .loading import load_model

FORMATS = ("tflite", "onnx")
TOLERANCE = 1e-4  # float32 export: only rounding may differ (a few 1e-7 in practice)
MAX_CHECK = 1000  # faces taken from check_data, test split first
RANDOM_CHECK = 32  # plus uniform-noise images: inputs unlike any face, where numerics part first
CHUNK = 256  # images per runtime call


class ExportError(UserError):
    """A problem the user can fix (format, out path, missing package) or a failed check: one line."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    fmt: str
    size_bytes: int
    n_checked: int
    max_abs_diff: float
    agreement: float  # fraction of check images whose arg-max label equals Keras's
    run_id: str = ""

    def lines(self) -> list[str]:
        lines = [f"wrote {self.path} ({self.fmt}, {self.size_bytes / 2**20:.2f} MiB)",
                 f"checked on {self.n_checked} images against Keras: max abs diff of probabilities "
                 f"{self.max_abs_diff:.2e} (tolerance {TOLERANCE:.0e}), label agreement {self.agreement:.2%}"]
        if self.run_id:
            lines.append(f"export run {self.run_id}: artifact export/{self.path.name}")
        return lines


def export(model_uri: str, fmt: str, out: str | os.PathLike, *, check_data: str = "synthetic:300",
           log: bool = False) -> ExportResult:
    """Convert `model_uri` to `fmt` at `out`, check it against Keras, optionally log it to MLflow."""
    out = _check_out(Path(out), fmt)
    if log and ":/" not in model_uri:
        raise ExportError(f"--log needs a logged model (models:/… or runs:/…), not the file '{model_uri}'")
    if fmt == "onnx":
        _onnx_modules()  # a missing package is reported before minutes of loading and converting
    model = load_model(model_uri)
    x = check_images(check_data)
    expected = np.asarray(model.predict(x, batch_size=CHUNK, verbose=0))
    tmp = _partial(out)
    try:  # converted next to `out` and moved there only once it has passed the check
        convert, run = (_to_tflite, _run_tflite) if fmt == "tflite" else (_to_onnx, _run_onnx)
        convert(model, tmp)
        got = run(tmp, x)
        diff = float(np.abs(got - expected).max())
        agreement = float((got.argmax(1) == expected.argmax(1)).mean())
        if not diff <= TOLERANCE:  # also catches NaN
            raise ExportError(f"the {fmt} export of '{model_uri}' does not match Keras: max abs diff {diff:.2e} > "
                              f"{TOLERANCE:.0e} (label agreement {agreement:.2%}); nothing written")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    result = ExportResult(out, fmt, out.stat().st_size, len(x), diff, agreement)
    return _log(model_uri, result, check_data) if log else result


def _check_out(out: Path, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise ExportError(f"format '{fmt}' is not supported: use one of {', '.join(FORMATS)}")
    if out.suffix != f".{fmt}":
        raise ExportError(f"out path '{out}' must end with .{fmt} for --format {fmt}")
    if out.is_dir():
        raise ExportError(f"out path '{out}' is a folder: pass a file name ending with .{fmt}")
    try:  # tried now, not after minutes of converting
        out.parent.mkdir(parents=True, exist_ok=True)
        _partial(out).touch()
        _partial(out).unlink()
    except OSError as exc:
        raise ExportError(f"out path '{out}' cannot be written ({exc.strerror}): pass another --out") from None
    return out


def _partial(out: Path) -> Path:
    return out.with_name(f".{out.stem}.partial{out.suffix}")


def check_images(spec: str, seed: int = 0) -> np.ndarray:
    """Up to MAX_CHECK faces of dataset `spec` (test split first) and RANDOM_CHECK noise images, float32."""
    ds = fer_data.load_dataset(spec)
    faces = np.concatenate([ds.splits[s].x for s in ("test", "val", "train") if s in ds.splits])[:MAX_CHECK]
    noise = np.random.default_rng(seed).uniform(0, 255, (RANDOM_CHECK, *INPUT_SHAPE))
    return np.concatenate([faces.reshape(-1, *INPUT_SHAPE), noise]).astype("float32")


def _to_tflite(model, path: Path) -> None:
    import tensorflow as tf

    # Keras's exporter: an ExportArchive of model(x, training=False) → TFLiteConverter. Builtin ops
    # only (Keras would also allow select TF ops), so any LiteRT runtime runs it without the Flex delegate.
    model.export(str(path), format="litert", verbose=False,
                 target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})


def _run_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    try:
        from ai_edge_litert.interpreter import Interpreter  # what TF ≥ 2.20 recommends
    except ImportError:  # tf.lite.Interpreter: deprecated in TF 2.20+, still there in 2.21
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tf.lite.Interpreter's deprecation notice
        interpreter = Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    probs = []
    for batch in _chunks(x):
        interpreter.resize_tensor_input(inp["index"], batch.shape)  # the batch axis is dynamic (-1)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        probs.append(interpreter.get_tensor(out["index"]).copy())
    return np.concatenate(probs)


def _chunks(x: np.ndarray):
    return (x[i:i + CHUNK] for i in range(0, len(x), CHUNK))


def _onnx_modules():
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as exc:
        raise ExportError(f"--format onnx needs tf2onnx, onnx and onnxruntime ({exc}): "
                          "pip install 'fer_experiments[export]'") from None
    return tf2onnx, onnxruntime


def _to_onnx(model, path: Path) -> None:
    import tensorflow as tf

    tf2onnx, _ = _onnx_modules()
    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="pixels"),)
    infer = tf.function(lambda x: model(x, training=False), input_signature=spec)
    level = logging.getLogger("tf2onnx").level
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)  # its INFO/WARNING lines are about graph rewrites
    try:
        tf2onnx.convert.from_function(infer, spec, output_path=str(path))
    finally:
        logging.getLogger("tf2onnx").setLevel(level)


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    _, onnxruntime = _onnx_modules()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: batch})[0] for batch in _chunks(x)])


def _log(model_uri: str, result: ExportResult, check_data: str) -> ExportResult:
    """A new run in the logged model's experiment, tagged fer.run_kind=export, holding the file."""
    run_id = MlflowTracker().log_export(model_uri, result.fmt, str(result.path),
                                params={"model_uri": model_uri, "format": result.fmt, "check_data": check_data},
                                metrics={"export_max_abs_diff": result.max_abs_diff,
                                         "export_label_agreement": result.agreement,
                                         "export_size_bytes": result.size_bytes, "export_check_images": result.n_checked})
    return replace(result, run_id=run_id)
