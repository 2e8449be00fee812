"""Optuna search spaces: one readable YAML per model family in `experiments/search_spaces/`.

Each key is a TrainConfig setting and its value one of
``{low, high}`` / ``{low, high, log: true}`` (float), ``{low, high, int: true}`` or ``{choices: [...]}``.
`unfreeze` is only sampled for transfer-learning models (families with backbone blocks).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

from .. import models
from ..config import EXPERIMENTS_DIR, FIELD_TYPES, ConfigError

SPACES_DIR = EXPERIMENTS_DIR / "search_spaces"
FAMILY_FILES = {"custom": "custom.yaml", "resnet50": "resnet50.yaml", "vgg16": "vgg16.yaml"}
MODEL_FILES = {"fer_compact": "fer_compact.yaml", "fer_vgg": "fer_compact.yaml"}  # the strong recipes' space


def default_file(model: str) -> Path:
    """The strong recipes' own space for fer_compact/fer_vgg, else the model family's."""
    return SPACES_DIR / MODEL_FILES.get(model, FAMILY_FILES.get(models.get_spec(model).family, "custom.yaml"))


def load(model: str, path: str | None = None) -> dict[str, dict]:
    """The space for `model` (its family's default file, or `path`), checked before any trial."""
    spec = models.get_spec(model)
    file = Path(path) if path else default_file(model)
    if not file.is_file():
        raise ConfigError(f"search space file {file} does not exist: pass a YAML file like "
                          f"{SPACES_DIR / 'custom.yaml'}")
    try:
        space = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"search space {file} is not valid YAML ({str(exc).splitlines()[0]}): fix its syntax") from None
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {file} is empty or not a mapping: give at least one setting to search")
    if not spec.blocks:
        space.pop("unfreeze", None)  # no backbone to unfreeze
    for key, dist in space.items():
        _check(file, key, dist, spec)
    return space


def _check(file: Path, key: str, dist, spec) -> None:
    where = f"search space {file}: '{key}'"
    if key not in FIELD_TYPES or key in ("model", "data", "seed", "epochs"):
        raise ConfigError(f"{where} is not a searchable setting: use TrainConfig keys such as dropout, learning_rate")
    if not isinstance(dist, dict):
        raise ConfigError(f"{where} must be {{low, high}} or {{choices: [...]}}")
    if "choices" in dist:
        if not isinstance(dist["choices"], list) or not dist["choices"]:
            raise ConfigError(f"{where} has empty choices: list at least one value")
        return
    try:
        low, high = float(dist["low"]), float(dist["high"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where} needs numeric low and high (or choices)") from None
    if not low < high:
        raise ConfigError(f"{where} has an empty or inverted range [{low}, {high}]: low must be below high")
    if dist.get("log") and low <= 0:
        raise ConfigError(f"{where} is log-scaled, so low must be > 0 (got {low})")
    if key == "unfreeze" and (low < 0 or high > len(spec.blocks)):
        raise ConfigError(f"{where} must stay within 0..{len(spec.blocks)} blocks for {spec.name}")
    if key in ("dropout",) and not (0 <= low and high < 1 + 1e-9):
        raise ConfigError(f"{where} must stay within [0, 1)")
    if math.isinf(low) or math.isinf(high):
        raise ConfigError(f"{where} must be finite")


def sample(trial, space: dict[str, dict]) -> dict:
    """Ask the trial for one value per setting (Optuna's define-by-run API)."""
    values = {}
    for key, dist in space.items():
        if "choices" in dist:
            values[key] = trial.suggest_categorical(key, dist["choices"])
        elif dist.get("int") or FIELD_TYPES[key].startswith("int"):
            values[key] = trial.suggest_int(key, int(dist["low"]), int(dist["high"]), log=bool(dist.get("log")))
        else:
            high = min(float(dist["high"]), 0.999) if key == "dropout" else float(dist["high"])
            values[key] = trial.suggest_float(key, float(dist["low"]), high, log=bool(dist.get("log")))
    return values


def apply(base, params: dict):
    """The configuration of a trial: the study's fixed settings `base` with the trial's sampled `params`."""
    return dataclasses.replace(base, **params).validate()
