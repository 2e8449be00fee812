"""Optuna studies over the one trainer (`fer-exp tune`).

- `tuning`: the study — objective, workers cooperating on one study, its MLflow parent and trials;
- `confirmation`: the done study's top trials trained with more seeds, the champion the best mean;
- `settings`: `TuneSettings`, the study's own settings and their defaults (light: no Optuna);
- `registry`: sampler and pruner names (the CLI's choices); `pruning`: building them, the
  majority-class floor, and the Keras callback that reports epochs to a trial;
- `search_space`: the YAML spaces in experiments/search_spaces/; `storage`: journal file or
  SQLAlchemy URL, heartbeats and dead-worker recovery; `journal`: the journal file's leases and its
  cut-line repair; `workers`: a joining worker's sampler seed and SIGTERM / SIGINT; `plots`:
  Optuna's matplotlib figures.
"""
