"""Samplers and pruners by name: what `tune --sampler/--pruner` accept (the CLI's choices come from
here) and how each is made. Data only: Optuna is imported where they are built (`tuning`)."""
from __future__ import annotations

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler"}  # name → optuna.samplers class, seeded
# The first 4 trials always finish (a pruner needs company: with 2-3 start-up trials a 6-trial study
# pruned a trial that ended 2 points from the best), and no trial is judged before its 4th epoch (the
# seed CNN often needs 3-4 epochs to leave the majority class). The default, percentile, prunes only
# trials in the bottom quarter at the same epoch (median pruned 3 of the README's first 6 trials).
PRUNERS = {"percentile": ("PercentilePruner", {"percentile": 25.0, "n_startup_trials": 4, "n_warmup_steps": 3}),
           "median": ("MedianPruner", {"n_startup_trials": 4, "n_warmup_steps": 3}),
           "hyperband": ("HyperbandPruner", {"min_resource": 1}),
           "none": ("NopPruner", {})}
FLOOR_WARMUP = 5  # epochs a trial gets to beat the majority-class rate before the floor applies
