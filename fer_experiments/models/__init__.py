"""Model registry: every architecture is one small builder registered by name (timm's style).

A builder is a keyword-only function returning an UNCOMPILED ``keras.Model`` that maps
(N, 48, 48, 1) float pixel values 0..255 to (N, 7) float32 softmax probabilities. Its per-model
defaults (``aug_strength`` for the trainer, ``image_size`` for the builder) sit next to it as data,
so config, CLI and search spaces read them from here instead of repeating them.

Adding an architecture is one function::

    @register_model(family="custom", defaults={"aug_strength": 0.2})
    def tiny(*, dropout=0.3, num_classes=CLASSES_COUNT):
        \"\"\"One-line description shown by the CLI.\"\"\"
        return _build_tiny(dropout, num_classes)
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from ..errors import UserError

CLASSES_COUNT = 7
INPUT_SHAPE = (48, 48, 1)  # raw uint8-range pixel values 0..255 as float32, grayscale


class UnknownModelError(UserError):
    """A model name that is not registered; the message lists the registered ones."""


class WeightsError(UserError):
    """Backbone weights that cannot be had; the one-line message names the problem and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., keras.Model]
    family: str  # "custom" | "resnet50" | "vgg16"
    blocks: tuple[str, ...] = ()  # unfreezable backbone blocks, TOP first
    defaults: dict = field(default_factory=dict)
    description: str = ""

    def takes(self, setting: str) -> bool:
        """Whether the builder accepts `setting` (e.g. ``input_size`` for crop training)."""
        return setting in inspect.signature(self.builder).parameters


MODELS: dict[str, ModelSpec] = {}


def register_model(*, family: str, blocks: tuple[str, ...] = (), defaults: dict | None = None):
    """Register the decorated builder under its function name; its docstring becomes the description."""

    def decorator(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        name = builder.__name__
        if name in MODELS:
            raise ValueError(f"model '{name}' is registered twice: give the new builder another name")
        description = (inspect.getdoc(builder) or "").split("\n")[0]
        MODELS[name] = ModelSpec(name, builder, family, tuple(blocks), dict(defaults or {}), description)
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(MODELS)


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UnknownModelError(f"unknown model '{name}': choose one of {', '.join(list_models())}")
    return MODELS[name]


def create_model(name: str, *, dropout: float = 0.3, unfreeze: int = 0, weights: str | None = "none",
                 image_size: int | None = None, num_classes: int = CLASSES_COUNT, **kw) -> keras.Model:
    """Build the registered model `name`, uncompiled.

    None values mean "the model's default". Settings the builder does not take (``unfreeze``,
    ``weights``, ``image_size`` for the custom CNNs) are dropped, because the trainer passes the same
    settings to every model; any other unknown keyword is an error."""
    spec = get_spec(name)
    _validate(spec, dropout=dropout, unfreeze=unfreeze, image_size=image_size, num_classes=num_classes)
    given = dict(dropout=dropout, unfreeze=unfreeze, weights=weights, image_size=image_size,
                 num_classes=num_classes, **kw)
    accepted = inspect.signature(spec.builder).parameters
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise UserError(f"model '{name}' does not take {', '.join(unknown)}: "
                         f"its settings are {', '.join(accepted)}")
    args = {k: v for k, v in spec.defaults.items() if k in accepted}
    args.update({k: v for k, v in given.items() if v is not None and k in accepted})
    return spec.builder(**args)


def _validate(spec: ModelSpec, *, dropout, unfreeze, image_size, num_classes) -> None:
    checks = [
        (dropout is None or 0 <= dropout < 1, "dropout", dropout, "must be in [0, 1), e.g. 0.3"),
        (unfreeze is None or 0 <= unfreeze <= len(spec.blocks), "unfreeze", unfreeze,
         f"must be in 0..{len(spec.blocks)} for {spec.name} ({', '.join(spec.blocks) or 'no backbone blocks'})"),
        (image_size is None or image_size >= 32, "image_size", image_size, "must be >= 32 (the backbones' minimum)"),
        (num_classes >= 2, "num_classes", num_classes, "must be >= 2"),
    ]
    for ok, key, value, why in checks:
        if not ok:
            raise UserError(f"{key}={value!r} is out of range: it {why}")


def param_counts(model: keras.Model) -> dict:
    """Trainable / frozen / total parameter counts, as logged with every run."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable_params": trainable, "non_trainable_params": frozen, "total_params": trainable + frozen}


# Importing the builder modules registers them; they import the names above, hence the bottom.
from . import compact, custom, transfer  # noqa: E402,F401
