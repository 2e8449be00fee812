"""Facial-emotion recognition experiments on FER-2013, tracked in MLflow and tuned with Optuna.

The package, by layer (each imports only downward): `cli` → `training`, `studies`, `inference`,
`evaluation` → `tracking` (all MLflow, behind one `Tracker` interface) → `data`, `models`, `augment`
(pure Keras/NumPy); `config` holds every setting, `errors` the error contract.

The Keras backend is Keras's own choice (KERAS_BACKEND, else ~/.keras/keras.json), with one default
of ours: where JAX with CUDA is installed (``pip install 'fer_experiments[gpu]'``) and KERAS_BACKEND is
not set, JAX is used — it is the install's only backend that trains on the GPU (TensorFlow comes as
tensorflow-cpu). On CPU TensorFlow stays the default, being the faster one there (README,
"Accelerators": `python -m benchmarks.run --part backends`). Set KERAS_BACKEND to choose yourself.
"""
import importlib.util
import logging
import os

CUDA_JAX_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin")


def _has_cuda_jax() -> bool:
    return any(importlib.util.find_spec(name) is not None for name in CUDA_JAX_PLUGINS)


if "KERAS_BACKEND" not in os.environ and _has_cuda_jax():
    os.environ["KERAS_BACKEND"] = "jax"


def _quiet_libraries() -> None:
    """TensorFlow's C++ start-up lines ("This TensorFlow binary is optimized…", absl's "All log
    messages before absl::InitializeLog()…"), its Python warnings ("… triggered tf.function
    retracing") and MLflow's four lines per run about its system-metrics thread tell a researcher
    nothing: hidden unless FER_DEBUG=1; errors still show, and a TF_CPP_MIN_LOG_LEVEL of your own
    wins. Here because this runs before anything in the package imports TensorFlow (`fer-exp`,
    `python -m fer_experiments`, MLproject's entry points), and the C++ level is read once, when
    TensorFlow loads."""
    if os.environ.get("FER_DEBUG"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # 2: errors only
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per artifact read (compare)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # tf_logging's logger: the retracing warning
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its metrics are still recorded


_quiet_libraries()
