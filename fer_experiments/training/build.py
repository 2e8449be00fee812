"""The pieces `trainer.train` assembles from a config: data shrinking, network and augmenter, the
float32 copy, optimizer and schedule, loss and targets, class weights, and how a run is named and
described. Pure Keras/NumPy/scikit-learn: no tracking here."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from .. import augment, models
from .. import data as fer_data
from ..config import TrainConfig
from ..evaluation.baseline import images_per_split
from .precision import dtype_policy


def shrink(ds: fer_data.Dataset, limit: int, seed: int) -> fer_data.Dataset:
    """Keep at most `limit` images per split (a seeded random subset): the smoke-run switch."""
    if not limit:
        return ds
    rng = np.random.default_rng(seed)
    splits = {}
    for name, part in ds.splits.items():
        keep = np.sort(rng.permutation(len(part.y))[:limit])
        splits[name] = part.take(keep)
    return dataclasses.replace(ds, splits=splits, notes=[*ds.notes, f"limited to {limit} images per split"])


def build_net(cfg: TrainConfig) -> keras.Model:
    """The registered network alone, under `cfg.precision` (resolved); crop models take crop-px faces."""
    with dtype_policy(cfg.precision):
        return models.create_model(cfg.model, dropout=cfg.dropout, unfreeze=cfg.unfreeze, weights=cfg.weights,
                                   image_size=cfg.image_size, **({"input_size": cfg.crop} if cfg.crop else {}))


def build_model(cfg: TrainConfig) -> tuple[keras.Model, augment.AugParams]:
    """`build_net` with the augmenter (always float32: pixel values 0..255 need float32's mantissa)
    in front of it."""
    net = build_net(cfg)
    aug = augment.resolve(cfg.aug_strength, erasing=cfg.erasing)
    augmenter = augment.build_augmenter(cfg.aug_strength, erasing=cfg.erasing, crop=cfg.crop,
                                        size=models.INPUT_SHAPE[0], seed=cfg.seed)
    if augmenter is None:
        return net, aug
    # Augmentation runs batched inside the graph and is inactive at inference, so the saved model
    # takes the same 48-px faces as every other and predicts exactly like `net` (on the centre crop).
    inputs = keras.Input(models.INPUT_SHAPE, name="pixels")
    x = augmenter(inputs)
    if cfg.crop:
        x = keras.layers.CenterCrop(cfg.crop, cfg.crop, name="centre_crop")(x)
    model = keras.Model(inputs, net(x), name=f"{cfg.model}_with_augmentation")
    return model, aug


def float32_copy(cfg: TrainConfig, model: keras.Model, *, always: bool = False) -> keras.Model:
    """The same model and weights in float32 (mixed precision keeps float32 variables): what is
    evaluated, saved and logged, so every recorded figure belongs to the model a user loads.
    `always`: a fresh copy even in float32 (after data parallelism: one device's plain arrays)."""
    if cfg.precision == "float32" and not always:
        return model
    copy, _ = build_model(dataclasses.replace(cfg, precision="float32"))
    copy.set_weights(model.get_weights())
    return copy


def jit_compile(cfg: TrainConfig) -> bool | str:
    """`auto`: XLA on JAX (its only fast path), else Keras's own rule (TensorFlow: XLA only where a GPU
    is visible; on this project's CPUs XLA made the TensorFlow step slower)."""
    if cfg.jit_compile == "auto":
        return True if keras.backend.backend() == "jax" else "auto"
    return cfg.jit_compile == "true"


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = learning_rate(cfg, steps_per_epoch)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay or None)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    return keras.optimizers.Adam(lr)


def learning_rate(cfg: TrainConfig, steps_per_epoch: int):
    """A float (plateau, constant) or a per-step schedule: cosine (with optional linear warm-up from
    lr/25), onecycle (warm-up over the first 30 % of steps from lr/25 to lr, then cosine to ~0)."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "cosine":
        warm = cfg.warmup_epochs * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            cfg.learning_rate / 25 if warm else cfg.learning_rate, total - warm,
            warmup_target=cfg.learning_rate if warm else None, warmup_steps=warm)
    if cfg.schedule == "onecycle":
        warm = int(0.3 * total)
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate / 25, total - warm, alpha=1e-3,
                                                      warmup_target=cfg.learning_rate, warmup_steps=warm)
    return cfg.learning_rate


def loss_and_targets(cfg: TrainConfig):
    """Sparse labels unless label smoothing or mixup needs one-hot targets."""
    if cfg.label_smoothing or cfg.mixup:
        onehot = np.eye(models.CLASSES_COUNT, dtype="float32")
        return keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing), lambda y: onehot[y]
    return keras.losses.SparseCategoricalCrossentropy(), lambda y: y


def class_weights(cfg: TrainConfig, y: np.ndarray) -> dict | None:
    if cfg.class_weight != "balanced":
        return None
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights)}


def initialisation(cfg: TrainConfig) -> str:
    """How the network starts: "from scratch" (custom nets, backbones with weights=none), "imagenet"
    or "weights file" — in the run name, a tag and the comparison table, never mixed up."""
    if not models.get_spec(cfg.model).blocks or cfg.weights == "none":
        return "from scratch"
    return "imagenet" if cfg.weights == "imagenet" else "weights file"


def run_name(cfg: TrainConfig, ds: fer_data.Dataset, preset: str = "", trial: str = "") -> str:
    """What the run is, at a glance in the runs list: [trial-<n>-]<preset or model>[-from-scratch][-limit<N>]-<data>,
    the data last (synthetic data as `synthetic`). The images each split kept are in the note and the
    `fer.images` tag (a column the runs list can show): in the name they would crowd out the rest."""
    scratch = "-from-scratch" if models.get_spec(cfg.model).blocks and cfg.weights == "none" else ""
    limit = f"-limit{cfg.limit}" if cfg.limit else ""
    return f"{f'trial-{trial}-' if trial else ''}{preset or cfg.model}{scratch}{limit}-{'synthetic' if ds.synthetic else ds.name}"


def describe(cfg: TrainConfig, ds: fer_data.Dataset, preset: str = "") -> str:
    """The run's description (MLflow's note): what was trained on what, in one paragraph."""
    data = fer_data.data_words(ds.name, ds.synthetic)
    used = f"{images_per_split(ds)} images" + (f" (limit {cfg.limit} per split)" if cfg.limit else "")
    recipe = f"preset `{preset}`: " if preset else ""
    extras = ", ".join(x for x in (f"{cfg.crop}-px crops" if cfg.crop else "", f"mixup {cfg.mixup}" if cfg.mixup else "",
                                   f"label smoothing {cfg.label_smoothing}" if cfg.label_smoothing else "") if x)
    return (f"{recipe}`{cfg.model}` ({initialisation(cfg)}) on {data}, {used}: up to {cfg.epochs} epochs, {cfg.optimizer} "
            f"lr {cfg.learning_rate} ({cfg.schedule}), augmentation strength {cfg.aug_strength}"
            f"{', ' + extras if extras else ''}, {cfg.precision}. Selected on validation; test is reported only.")


