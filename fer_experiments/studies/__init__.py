"""Optuna studies over the one trainer (`fer-exp tune`).

- `tuning`: the study — objective, workers cooperating on one study, its MLflow parent and trials;
- `confirmation`: the done study's top trials trained with more seeds, the champion the best mean;
- `settings`: `TuneSettings`, the study's own settings and their defaults (light: no Optuna);
- `registry`: sampler and pruner names (the CLI's choices); `pruning`: building them, the
  majority-class floor, and the Keras callback that reports epochs to a trial;
- `search_space`: the YAML spaces in experiments/search_spaces/; `storage`: journal file,
  SQLAlchemy URL or study server, heartbeats and dead-worker recovery; `leases`: the heartbeat kept
  in the storage for those that lack one; `journal`: the journal file (leased) and its cut-line
  repair; `grpc_proxy`: the study server (Optuna's gRPC proxy) and its leased client;
  `workers`: a joining worker's sampler seed and SIGTERM / SIGINT; `plots`: Optuna's matplotlib
  figures.
"""
