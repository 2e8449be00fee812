"""The one typed place for a run's settings, and the named presets in `experiments/`.

Precedence, lowest first: the defaults below < the model's own defaults (``models.MODELS[...]
.defaults``, e.g. ``custom_aug`` → ``aug_strength=0.5``) < an experiment preset < explicit values.
Unknown keys are errors everywhere (presets, overrides), never silently ignored.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from .errors import UserError

EXPERIMENTS_DIR = Path(os.environ.get("FER_EXPERIMENTS_DIR", Path(__file__).resolve().parent.parent / "experiments"))


# The fixed sets of values a setting may take: `TrainConfig.validate` checks them and `--help` lists them.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
JIT_CHOICES = ("auto", "true", "false")
OPTIMIZERS = ("adam", "adamw", "sgd")
CLASS_WEIGHTS = ("none", "balanced")
SCHEDULES = ("plateau", "cosine", "onecycle", "constant")
# The model registry's names (`models.list_models()`) as plain data, so that `fer-exp train --help`
# lists them without importing Keras (seconds); tests/test_console.py checks the two are equal.
MODEL_NAMES = ("custom", "custom_aug", "fer_compact", "fer_vgg", "resnet50", "vgg16")


class ConfigError(UserError):
    """A setting the user gave is wrong; the message is one line naming it and the fix."""


def setting(default, help: str, choices: tuple[str, ...] = ()):
    """A TrainConfig field with what it does (the `--help` of its option) and, where it takes one of
    a fixed set of values, that set (checked by `validate`, listed by `help_text`)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    # Each setting's text is what `fer-exp train --help` says of it; a field with choices is checked against them.
    model: str = setting("custom_aug", f"registered architecture: {' | '.join(MODEL_NAMES)}")
    data: str = setting("synthetic", "FER-2013 folder (train/, test/), fer2013.csv(.gz), 'synthetic' or 'synthetic:N'")
    epochs: int = setting(30, "most epochs to train (early stopping may end sooner)")
    batch_size: int = setting(64, "images per training step (the global batch, over all devices)")
    optimizer: str = setting("adam", "optimizer (sgd: Nesterov momentum 0.9)", OPTIMIZERS)
    learning_rate: float = setting(1e-3, "learning rate (the peak of the cosine / onecycle schedules)")
    weight_decay: float = setting(0.0, "weight decay, used by adamw / sgd only")
    dropout: float = setting(0.3, "dropout rate of the model's dropout layers")
    aug_strength: float | None = setting(None, "0..1, one knob for all augmentations; 0.5 = the notebook's "
                                         "ImageDataGenerator; none = the model's default (custom 0, custom_aug 0.5)")
    erasing: bool = setting(False, "random erasing, scaled by aug_strength")
    crop: int = setting(0, ">0: train on random crop×crop windows, predict on the centre one (e.g. 40); 0 = off")
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing, e.g. 0.1; 0 = off")
    mixup: float = setting(0.0, ">0: mixup with Beta(mixup, mixup) weights (e.g. 0.2); 0 = off")
    unfreeze: int = setting(0, "top backbone blocks to fine-tune (transfer models); 0 = frozen feature extractor")
    weights: str = setting("imagenet", "transfer models: imagenet | none (from scratch) | path to a local weights file")
    image_size: int | None = setting(None, "backbone input size (transfer models); none = the model's default")
    val_fraction: float = setting(0.1, "validation carved from train when the data has no validation split")
    class_weight: str = setting("none", "loss weight per class (balanced: FER-2013 is imbalanced, disgust is "
                                "1.5 % of train)", CLASS_WEIGHTS)
    schedule: str = setting("plateau", "learning-rate schedule (plateau: ReduceLROnPlateau)", SCHEDULES)
    warmup_epochs: int = setting(0, "linear warm-up from lr/25 (cosine); onecycle always warms up 30 %")
    patience: int = setting(8, "early stopping: epochs without a better val_accuracy, then the best epoch's "
                            "weights are restored (0 = off)")
    lr_patience: int = setting(3, "epochs without a better val_accuracy before the rate is cut (schedule=plateau)")
    lr_factor: float = setting(0.5, "factor the rate is cut by (schedule=plateau)")
    seed: int = setting(42, "random seed: validation split, initial weights, augmentation, shuffling")
    limit: int = setting(0, "keep at most N images per split (smoke runs); 0 = all")
    register: str = setting("", "non-empty: register the logged model under this name")
    precision: str = setting("auto", "compute precision (auto: bf16 where native)", PRECISIONS)
    jit_compile: str = setting("auto", "XLA-compile the step (auto: Keras's per-device rule)", JIT_CHOICES)
    devices: int = setting(0, "data-parallel devices (JAX backend); 0 = every accelerator where several, else 1")
    diagnostics: bool = setting(True, "end-of-run extras: TTA accuracies, Grad-CAM grids, architecture diagram "
                                "(false: quicker runs)")

    def validate(self) -> TrainConfig:
        from . import models  # registry lookups only (imports Keras)

        for key, kind in FIELD_TYPES.items():  # e.g. a preset's `epochs: null` or a resumed run's config.json
            _typed(key, getattr(self, key), kind)
        spec = models.get_spec(self.model)  # raises UnknownModelError with the known names
        checks = [
            (0 <= self.seed < 2**32, "seed", "must be in 0..4294967295 (NumPy's seed range)"),
            (self.epochs >= 1, "epochs", "must be a positive integer"),
            (self.batch_size >= 1, "batch_size", "must be a positive integer"),
            (0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1), e.g. 0.001"),
            (0 <= self.weight_decay < 1, "weight_decay", "must be in [0, 1)"),
            (0 <= self.dropout < 1, "dropout", "must be in [0, 1), e.g. 0.3"),
            (self.aug_strength is None or 0 <= self.aug_strength <= 1, "aug_strength", "must be in [0, 1]"),
            (0 <= self.unfreeze <= len(spec.blocks), "unfreeze",
             f"must be in 0..{len(spec.blocks)} for {self.model}"),
            (self.image_size is None or self.image_size >= 32, "image_size", "must be >= 32"),
            (0 < self.val_fraction < 1, "val_fraction", "must be in (0, 1), e.g. 0.1"),
            (self.patience >= 0 and self.lr_patience >= 1, "patience", "must be >= 0 (0 = no early stopping); "
             "lr_patience >= 1"),
            (self.crop == 0 or 24 <= self.crop < models.INPUT_SHAPE[0], "crop",
             f"must be 0 (off) or in 24..{models.INPUT_SHAPE[0] - 1}, e.g. 40"),
            (self.crop == 0 or spec.takes("input_size"), "crop",
             f"is not supported by {self.model}: use a model built for 48-px faces "
             f"({', '.join(n for n in models.list_models() if models.get_spec(n).takes('input_size'))})"),
            (0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1), e.g. 0.1"),
            (0 <= self.mixup <= 10, "mixup", "must be in [0, 10] (the Beta(α, α) α; 0 = off), e.g. 0.2"),
            (0 <= self.warmup_epochs < self.epochs, "warmup_epochs", "must be in [0, epochs)"),
            (0 < self.lr_factor < 1, "lr_factor", "must be in (0, 1)"),
            (self.limit >= 0, "limit", "must be >= 0 (0 = no limit)"),
            (self.devices >= 0, "devices", "must be >= 0 (0 = every accelerator where there are several)"),
            *((getattr(self, f.name) in f.metadata["choices"], f.name, f"must be one of {', '.join(f.metadata['choices'])}")
              for f in fields(self) if f.metadata.get("choices")),
        ]
        for ok, key, why in checks:
            if not ok:
                raise ConfigError(f"{key}={getattr(self, key)!r} is out of range: it {why}")
        return self

    def resolved(self) -> TrainConfig:
        """Fill model-dependent defaults (aug_strength, image_size) from the model registry, the
        machine's precision for ``auto``, and ``unfreeze`` = every block for a backbone trained from
        scratch (``weights=none``: there is nothing pretrained to keep frozen)."""
        from . import models
        from .training import precision

        spec = models.get_spec(self.model)
        out = dataclasses.replace(self, precision=precision.resolve(self.precision))
        for key in ("aug_strength", "image_size"):
            if getattr(out, key) is None:
                setattr(out, key, spec.defaults.get(key, 0.0 if key == "aug_strength" else None))
        if spec.blocks and out.weights == "none":
            out.unfreeze = len(spec.blocks)
        return out


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def help_text(key: str) -> str:
    """What setting `key` does, with its choices where it has a fixed set: its option's `--help`."""
    meta = next(f.metadata for f in fields(TrainConfig) if f.name == key)
    return meta["help"] + (f"; one of {' | '.join(meta['choices'])}" if meta["choices"] else "")


BASE = "base"  # a preset key: the preset this one changes (its settings first, then these on top)
# Chosen per run, never by a recipe (and declared in MLproject, whose logged values must stay true).
RUN_LEVEL = {"data", "seed"}


def coerce(key: str, value):
    """Turn a string (from a CLI, a preset or MLflow) into the field's type."""
    if key not in FIELD_TYPES:
        raise ConfigError(f"unknown setting '{key}': known settings are {', '.join(FIELD_TYPES)}")
    if key == "jit_compile" and isinstance(value, bool):  # YAML's true/false
        return str(value).lower()
    kind = FIELD_TYPES[key]
    if not isinstance(value, str):
        return _typed(key, value, kind)
    try:
        if "None" in kind and value.lower() in ("", "none", "auto"):
            return None
        if kind.startswith("int"):  # "42.0" is 42 (MLflow's float params); "1.7", "inf" are refused
            return _typed(key, float(value), kind)
        if kind.startswith("float"):
            return _typed(key, float(value), kind)
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a valid {kind.replace(' | None', '')}") from None
    return value


def _typed(key: str, value, kind: str):
    """A value given as YAML or Python must already be of the field's type (ints may come as whole floats)."""
    base = kind.replace(" | None", "")
    if value is None and "None" in kind:
        return None
    if base == "int" and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
          "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str)}[base](value)
    if not ok:
        raise ConfigError(f"{key}={value!r} is not a valid {base}" + (" (a whole number)" if base == "int" else "")
                          + (f": give {key} a value" if value is None else ""))
    return float(value) if base == "float" else value


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    return Path(name) if name.endswith((".yaml", ".yml")) else EXPERIMENTS_DIR / f"{name}.yaml"


def read_preset(name: str) -> dict:
    """The keys `experiments/<name>.yaml` (or a path to a YAML file) sets itself, `base` included."""
    path = preset_path(name)
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}': choose one of {', '.join(list_experiments())} "
                          f"or pass a path to a .yaml preset")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset file {path} is not valid YAML ({str(exc).splitlines()[0]}): fix its syntax") from None
    if not isinstance(values, dict):
        raise ConfigError(f"preset file {path} must be a mapping of setting: value")
    run_level = sorted(set(values) & RUN_LEVEL)
    if run_level:
        raise ConfigError(f"preset file {path} sets {', '.join(run_level)}: a preset describes a recipe; "
                          f"remove it and pass it on the command line (--data/--seed, -P data=/-P seed=)")
    unknown = sorted(set(values) - set(FIELD_TYPES) - {BASE})
    if unknown:
        raise ConfigError(f"preset file {path} has unknown key(s) {', '.join(unknown)}: "
                          f"known settings are {', '.join(FIELD_TYPES)} (and {BASE}: another preset)")
    return values


def load_experiment(name: str, _seen: tuple[str, ...] = ()) -> dict:
    """A preset's settings: its `base` preset's (recursively), then its own on top; unknown keys
    are errors."""
    if name in _seen:
        raise ConfigError(f"presets {' → '.join((*_seen, name))} form a cycle through '{BASE}': break it")
    values = read_preset(name)
    base = values.pop(BASE, None)
    inherited = load_experiment(str(base), (*_seen, name)) if base else {}
    return {**inherited, **{k: coerce(k, v) for k, v in values.items()}}


def build_config(experiment: str | None = None, **overrides) -> TrainConfig:
    """Defaults < preset < explicit overrides (None means 'not given'), then validated."""
    values = load_experiment(experiment) if experiment and experiment != "none" else {}
    values.update({k: coerce(k, v) for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()
