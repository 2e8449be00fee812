"""A study's own settings, in one place: `TuneSettings`'s defaults are the `tune` command's (the CLI
reads them) and MLproject's `tune` entry point declares none of its own. Light: no Optuna here."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import TrainConfig

TRIAL_EPOCHS = 8  # epochs per trial unless --epochs is given (a preset's long schedule is not a trial's)


@dataclass
class TuneSettings:
    """What a study needs beyond the trials' fixed training settings (`base`)."""
    base: TrainConfig               # model, data, epochs per trial … (searched keys are overridden)
    n_trials: int = 20              # the study's target of finished (complete + pruned) trials
    timeout: float = 0              # seconds for this worker; 0 = none
    study: str = ""                 # "" → fer-<model>-<dataset>
    storage: str = ""               # "" → journal file under mlruns/; or any SQLAlchemy URL
    sampler: str = "tpe"            # a name in registry.SAMPLERS
    pruner: str = "percentile"      # a name in registry.PRUNERS
    search_space: str = ""          # "" → experiments/search_spaces/<family>.yaml
    experiment: str = ""            # MLflow experiment; "" → fer2013 / fer2013-synthetic
    # Once the study is done, its best `confirm_top` complete trials are trained `confirm_seeds` more times
    # and the champion is the best mean over seeds (`confirmation`); 0 in either turns that off.
    confirm_top: int = 3
    confirm_seeds: int = 2


def defaults() -> dict:
    """The defaults of every setting but `base`."""
    return {f.name: f.default for f in fields(TuneSettings) if f.name != "base"}
