"""The one trainer: `train`, `tune` and the benchmarks all call `train(cfg)`.

data → registered model (+ augmentation in front of it) → Keras `fit` on in-memory arrays →
evaluation of validation and test → everything recorded through a `tracking.Tracker`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from .. import augment, models, tracking
from .. import data as fer_data
from ..config import ConfigError, TrainConfig
from ..evaluation import baseline, calibration
from ..evaluation.curves import curves_figure
from ..evaluation.split import calibrate, evaluate_split
from ..tracking import tags as T
from . import devices, processes, progress, snapshots
from .build import (
    build_model,
    class_weights,
    describe,
    float32_copy,
    initialisation,
    jit_compile,
    loss_and_targets,
    make_optimizer,
    run_name,
    shrink,
)
from .resume import ResumableEarlyStopping, ResumablePlateau, TrainedWeights


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    metrics: dict
    model: keras.Model
    epochs_run: int


def backup_dir(run_id: str) -> Path:
    """Per-run checkpoint for `keras.callbacks.BackupAndRestore`: a killed run resumes from here. Over
    several processes each keeps its own copy (Keras's weight saving is a collective every process
    joins), process i > 0 in `process-<i>/` of it."""
    folder = fer_data.default_cache_dir() / "backups" / run_id
    return folder / f"process-{processes.index()}" if processes.index() else folder



def train(cfg: TrainConfig, *, callbacks=(), experiment: str | None = None, resume_run_id: str | None = None,
          parent_run_id: str | None = None, extra_tags: dict | None = None, verbose: int = 2,
          tracker=None, preset: str = "", name: str = "") -> TrainResult:
    """Train `cfg` and record it through `tracker` (MLflow by default; `tracking.NullTracker()` records
    nothing). `callbacks` are extra Keras callbacks (e.g. Optuna pruning); `name` the run's name (default:
    from the config). Over several processes only process 0 records: the others' tracker records nothing."""
    tracker = (tracker or tracking.MlflowTracker()) if processes.is_recorder() else tracking.NullTracker()
    cfg = cfg.resolved()
    keras.utils.set_random_seed(cfg.seed)
    ds = fer_data.load_dataset(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    ds = shrink(ds, cfg.limit, cfg.seed)
    for needed in ("train", "val"):
        if needed not in ds.splits:
            raise fer_data.DataError(f"data '{cfg.data}' has no {needed} split: training needs train/ "
                                     f"(validation is carved from it); use `fer-exp evaluate` for a test-only folder")
    n_devices = devices.resolve(cfg.devices)
    if cfg.batch_size % n_devices:
        raise ConfigError(f"batch_size={cfg.batch_size} does not split over {n_devices} devices: pass a multiple "
                          f"of {n_devices} (it is the global batch)")
    parallel = contextlib.ExitStack()
    parallel.enter_context(devices.data_parallel(n_devices))  # variables are created replicated
    try:
        model, aug = build_model(cfg)  # before the run: a bad model or weights leaves no run behind
    except BaseException:
        parallel.close()
        raise
    tags = {T.SYNTHETIC: str(ds.synthetic).lower(), T.MODEL: cfg.model, T.DATASET: ds.name,
            T.INIT: initialisation(cfg), T.PRESET: preset or "none", **(extra_tags or {})}
    with parallel, tracker.run(experiment=experiment or tracking.experiment_name_for(ds.synthetic),
                     run_name=name or run_name(cfg, ds, preset, tags.get(T.TRIAL_NUMBER) or tags.get(T.CONFIRM_TRIAL, ""))
                     + (f"-seed{cfg.seed}" if T.REPEAT_SEED in tags and not name else ""), tags=tags,
                     description=describe(cfg, ds, preset), resume_run_id=resume_run_id,
                     parent_run_id=parent_run_id) as run_id:
        run_id = processes.broadcast_text(run_id)  # process 0's: every process reads its checkpoint folder
        tracker.log_config(dataclasses.asdict(cfg))
        # The values aug_strength resolved to are a file, not params: params are the settings a user
        # chose, so MLflow's compare page and parallel-coordinates plot start on them (its defaults are
        # the first params, by name, that differ between the runs).
        tracker.log_config(dataclasses.asdict(aug), "augmentation.json")
        tracker.log_params({**dataclasses.asdict(cfg), **models.param_counts(model), **devices.describe(),
                            "devices_used": n_devices, **processes.describe(),
                            # the learning rate is the global batch's, whatever the device count
                            **({"batch_per_device": cfg.batch_size // n_devices} if n_devices > 1 else {})})
        tracker.log_dataset(ds)
        try:
            return _train_in_run(cfg, ds, model, aug, run_id, n_devices, parallel, tracker, callbacks, verbose, preset,
                                 trial=bool(parent_run_id))
        except Exception:  # the run ends FAILED and is not resumed (--resume refuses it): free the disk
            if processes.is_recorder():
                shutil.rmtree(backup_dir(run_id), ignore_errors=True)
            raise


def _train_in_run(cfg: TrainConfig, ds, model, aug, run_id: str, n_devices: int, parallel, tracker, callbacks,
                  verbose: int, preset: str, trial: bool = False) -> TrainResult:
    train_split, val_split = ds.splits["train"], ds.splits["val"]
    steps = -(-len(train_split.y) // cfg.batch_size)
    loss, targets = loss_and_targets(cfg)
    # Over several devices validation is padded with copies that weigh 0 (`_feeds`): accuracy is
    # then a weighted metric (plain `metrics` ignore sample weights), exact for the real images.
    accuracy = {"weighted_metrics" if n_devices > 1 else "metrics": ["accuracy"]}
    model.compile(optimizer=make_optimizer(cfg, steps), loss=loss, **accuracy, jit_compile=jit_compile(cfg))
    tracker.log_params({"jit_compile_used": model.jit_compile})
    history_csv = backup_dir(run_id) / "history.csv"
    history_csv.parent.mkdir(parents=True, exist_ok=True)
    trained = TrainedWeights(backup_dir(run_id) / "trained.weights.h5")
    recorder = processes.is_recorder()
    processes.check_same("checkpoint", _checkpoint_state(run_id),
                         f"a resumed run needs every process's checkpoint folder ({backup_dir(run_id)} here): resume "
                         f"on the same machines, or keep FER_CACHE_DIR on a filesystem they share")
    if not trained.restore(model):  # else a resumed run whose training had ended: only the end-of-run work is left
        state = backup_dir(run_id) / "state"
        fit_callbacks = [
            # Selection on validation only: the best epoch's weights are restored at the end. Their
            # state (best weights included) is saved each epoch BEFORE the backup below, so a kill
            # between the two can only repeat an epoch, never lose its improvement.
            ResumableEarlyStopping(state, monitor="val_accuracy", patience=cfg.patience or cfg.epochs,
                                   restore_best_weights=True, mode="max", announce=verbose > 0 and recorder),
            *([ResumablePlateau(state, monitor="val_accuracy", factor=cfg.lr_factor, patience=cfg.lr_patience,
                                mode="max", min_lr=1e-6)] if cfg.schedule == "plateau" else []),
            # Weights, optimizer and epoch: a run killed after an epoch's metrics were logged resumes
            # after it. Kept at the end of fit (the folder goes when the run is complete): a kill
            # before `trained` is written still resumes after the last epoch, not from epoch 0.
            keras.callbacks.BackupAndRestore(str(backup_dir(run_id) / "checkpoint"), double_checkpoint=True,
                                             delete_checkpoint=False),
            *([keras.callbacks.CSVLogger(str(history_csv), append=True)] if recorder else []),
            tracker.epoch_callback(len(train_split.y)),
            # The same validation faces after every epoch: MLflow's image view replays training (on one
            # process: a prediction inside `fit` over several would need every process to join it).
            *([snapshots.PredictionSnapshots(val_split.x, val_split.y, tracker.log_image, seed=cfg.seed)]
              if tracker.enabled and processes.count() == 1 else []),
            *callbacks,
            trained,  # last: after EarlyStopping restored the best epoch's weights
        ]
        feed, validation = _feeds(cfg, train_split, val_split, targets, n_devices)
        try:
            model.fit(**feed, epochs=cfg.epochs, validation_data=validation, callbacks=fit_callbacks,
                      verbose=verbose if recorder else 0)
        except Exception as exc:
            if why := processes.peer_failure(exc):
                raise processes.PeerFailed(f"training stopped: {why}; the run is FAILED (rerun every process "
                                           f"to train it again)") from None
            raise
    parallel.close()  # one device from here on: evaluation, saving and logging take any batch size
    if not recorder:  # process 0 evaluates and records
        shutil.rmtree(backup_dir(run_id), ignore_errors=True)
        return TrainResult(run_id, "", {}, model, 0)
    model = float32_copy(cfg, model, always=n_devices > 1)
    metrics, temperature = _log_results(cfg, ds, model, history_csv, tracker, echo=verbose > 0)
    # What is logged, served and exported reports calibrated probabilities (same decisions); the
    # model before temperature scaling is kept beside it where the temperature changed anything.
    # A trial keeps the LoggedModel only: no .keras copies (a study of 100 trials would hold 300).
    plain, model = model, calibration.with_temperature(model, temperature)
    with progress.step("logging the model", verbose > 0):
        model_uri = tracker.log_model(model, val_split.x, file_stem=cfg.model, register=cfg.register,
                                      name=preset or cfg.model, plain=plain if temperature != 1 else None,
                                      diagram=cfg.diagnostics, copies=not trial, metrics=model_figures(metrics))
    tracker.set_tag(T.MODEL_URI, model_uri)
    # What the run used, and whether it beat always answering the majority class: tags on every run
    # (Optuna trials too), a warning on the console when one is shown.
    if verdict := baseline.judge(ds, metrics):
        for key, value in verdict.tags().items():
            tracker.set_tag(key, value)
        if verdict.learned_nothing and verbose:
            verdict.warn()
    shutil.rmtree(backup_dir(run_id), ignore_errors=True)
    return TrainResult(run_id, model_uri, metrics, model, int(metrics["epochs_run"]))


def _checkpoint_state(run_id: str) -> str:
    """What a resume finds of this run's checkpoints (the same on every process, or they would diverge)."""
    folder = backup_dir(run_id)
    return ",".join(n for n in ("trained.weights.h5", "checkpoint", "state") if (folder / n).exists()) or "none"


def model_figures(metrics: dict) -> dict:
    """What a LoggedModel carries: its own final figures on each split, as the loaded model gives them
    (accuracy, macro-F1; no TTA, no per-class detail, no epoch history)."""
    return {k: v for k, v in metrics.items() if k.startswith(("validation_", "test_")) and "/" not in k
            and "_tta_" not in k and "_ci_" not in k}


def _feeds(cfg: TrainConfig, train_split, val_split, targets, n_devices: int) -> tuple[dict, tuple]:
    """`fit`'s training feed and validation data. On one device, plain arrays (the fastest feed here),
    or `augment.Batches` for mixup. Over several, every batch must split evenly: training batches are
    all full (`Batches(full_batches=True)`), and validation is padded to whole batches with copies
    that weigh 0, so its accuracy is exactly that of the real images (its loss, averaged over the
    padded batch, is low by at most the padding's share: < one batch of the split)."""
    weights = class_weights(cfg, train_split.y)
    if n_devices == 1 and not cfg.mixup:
        feed = dict(x=train_split.x.astype("float32"), y=targets(train_split.y), batch_size=cfg.batch_size,
                    class_weight=weights)
        return feed, (val_split.x.astype("float32"), targets(val_split.y))
    per_image = None if weights is None else np.array([weights[int(c)] for c in train_split.y], dtype="float32")
    onehot = bool(cfg.label_smoothing or cfg.mixup)
    feed = dict(x=augment.Batches(train_split.x, train_split.y, batch_size=cfg.batch_size, alpha=cfg.mixup,
                                  num_classes=models.CLASSES_COUNT, seed=cfg.seed, full_batches=n_devices > 1,
                                  onehot=onehot, sample_weight=per_image, shard=(processes.index(), processes.count())))
    x, y = val_split.x.astype("float32"), targets(val_split.y)
    if n_devices == 1:
        return feed, (x, y)
    copies = np.arange(-len(x) % cfg.batch_size) % len(x)  # any split size, even under one batch
    w = np.concatenate([np.ones(len(x), "float32"), np.zeros(len(copies), "float32")])
    # Over several processes each validates its shard of every batch; the metrics are of them all.
    x, y, w = (processes.shard(a, cfg.batch_size) for a in (np.concatenate([x, x[copies]]),
                                                              np.concatenate([y, y[copies]]), w))
    feed["validation_batch_size"] = cfg.batch_size // processes.count()
    return feed, (x, y, w)


def _log_results(cfg: TrainConfig, ds: fer_data.Dataset, model: keras.Model, history_csv: Path,
                 tracker, echo: bool = False) -> tuple[dict, float]:
    """Evaluate validation and test, fit the temperature on validation only, record it all; returns
    the metrics and the temperature. `echo`: a console line per step, with its seconds (`progress`)."""
    # Ten-crop is the matching evaluation of crop training; flip TTA is cheap for every model.
    # `diagnostics=false` (quick runs, tests that check other things) skips TTA and Grad-CAM.
    tta = (("flip", "tencrop") if cfg.crop else ("flip",)) if cfg.diagnostics else ()
    evaluations = [evaluate_split(model, split, ds.splits[split].x, ds.splits[split].y, names=ds.splits[split].names,
                                  tta=tta, explain=cfg.diagnostics, step=progress.steps(echo))
                   for split in ("val", "test") if split in ds.splits]
    with progress.step("calibration (temperature fitted on validation)", echo):
        params = calibrate(evaluations)  # on validation only
        tracker.log_params(params)
    metrics: dict = {}
    for ev in evaluations:
        with progress.step(f"metrics and figures of {ev.prefix}", echo):
            metrics.update(tracker.log_evaluation(ev, f"{cfg.model} on {ds.name} — {ev.split}"))
    with progress.step("history and curves", echo):
        history = pd.read_csv(history_csv)
        summary = {"epochs_run": float(len(history)), "best_val_accuracy": float(history["val_accuracy"].max())}
        tracker.log_history(history_csv, curves_figure(history, f"{cfg.model} on {ds.name}"))
        tracker.log_summary(summary, all_metrics={**metrics, **summary})
    return {**metrics, **summary}, params["temperature"]
