"""One configuration trained with several seeds (`fer-exp train --repeats N`): sibling runs under one
parent run whose figures are the mean over the seeds, with their standard deviation and t-interval.

Seeds are `seed, seed+1, …, seed+N-1`; the seed sets the initial weights, the order of the training
data, the augmentation draws and — where the data has no validation split of its own (FER-2013's
Kaggle folders have none) — which training images are carved off as validation. The test images are
the same for every seed, so runs of a set are paired on them (`fer-exp compare`).

Resumable: the set is found again by a key of its configuration without the seed (`group_key`); a
rerun of the same command skips the seeds that finished, resumes a killed one from its checkpoint,
and trains the missing ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import pandas as pd

from ..config import TrainConfig
from ..evaluation.intervals import over_seeds
from ..tracking import tags as T

# The figures a parent summarises over its seeds (those every finished seed has).
FIGURES = ("validation_accuracy", "validation_macro_f1", "test_accuracy", "test_macro_f1",
           "test_tta_flip_accuracy", "test_tta_tencrop_accuracy", "epochs_run")


@dataclass
class RepeatResult:
    parent_run_id: str
    run_ids: dict  # seed → run id
    summary: dict  # the parent's metrics
    table: pd.DataFrame  # one row per finished seed


def group_key(cfg: TrainConfig, preset: str = "") -> str:
    """What the runs of one set share: the resolved configuration without its seed (and the preset)."""
    values = {k: v for k, v in dataclasses.asdict(cfg.resolved()).items() if k != "seed"}
    return hashlib.sha256(json.dumps({"preset": preset, **values}, sort_keys=True).encode()).hexdigest()[:16]


def seeds(cfg: TrainConfig, n: int) -> list[int]:
    return [cfg.seed + i for i in range(n)]


def summarize(rows: pd.DataFrame) -> dict:
    """Parent metrics: `<figure>` = the mean over the finished seeds, `<figure>_sd`, `<figure>_ci_low/_high`
    (the 95 % t-interval of the mean; from two seeds on), and `seeds_finished`."""
    out: dict = {"seeds_finished": float(len(rows))}
    for key in FIGURES:
        if key not in rows or rows[key].isna().any() or rows.empty:
            continue
        s = over_seeds(rows[key])
        out[key] = s.mean
        if s.n > 1:
            out.update({f"{key}_sd": s.sd, f"{key}_ci_low": s.low, f"{key}_ci_high": s.high})
    return out


def describe(cfg: TrainConfig, n: int, preset: str, data_words: str) -> str:
    return (f"{preset or cfg.model} on {data_words}, trained with {n} seeds ({', '.join(map(str, seeds(cfg, n)))}): "
            f"one child run per seed. This run's figures are the mean over the seeds finished so far; `_sd` is their "
            f"standard deviation and `_ci_low`/`_ci_high` the 95 % t-interval of the mean over seeds (a child's own "
            f"`_ci_` figures are over its test images instead). The seed changes the initial weights, data order, "
            f"augmentation and the validation carve; the test images are the same. repeats/seeds.csv lists them.")


def label(cfg: TrainConfig, preset: str = "", given: dict | None = None) -> str:
    """A set's name in words: the preset (else the model) and the settings given on top of it, e.g.
    `fer_compact_fast precision=float32` — what tells two sets of one preset apart."""
    skip = {"data", "seed", *(() if preset else ("model",))}
    return " ".join([preset or cfg.model, *(f"{k}={v}" for k, v in sorted((given or {}).items())
                                             if v is not None and k not in skip)])


def train_repeats(cfg: TrainConfig, n: int, *, tracker, train, experiment: str, preset: str = "",
                  given: dict | None = None, verbose: int = 2, echo=print) -> RepeatResult:
    """Train `cfg` with `n` seeds as children of one parent (`tracking.repeat_runs`); `train` is
    `trainer.train`. Finished seeds are skipped, killed ones resumed."""
    from .. import data as fer_data

    key = group_key(cfg, preset)
    resolved = cfg.resolved()
    ds = fer_data.load_dataset(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)  # its name (cached after)
    experiment = experiment or T.experiment_name_for(ds.synthetic)
    words = label(cfg, preset, given)
    data = "synthetic" if ds.synthetic else ds.name
    name = f"{words.replace(' ', '-')}-{n}seeds-{data}"
    shown = f"{words} on {data} [{key[:6]}]"  # the value MLflow's Group by shows for the set's seeds
    tags = {T.REPEAT_SET: shown, T.MODEL: cfg.model, T.SYNTHETIC: str(ds.synthetic).lower(), T.DATASET: ds.name,
            T.PRESET: preset or "none",
            T.REPEATS: str(n), T.SEEDS: ",".join(map(str, seeds(cfg, n)))}  # tags: a set may be extended
    params = {**{k: v for k, v in dataclasses.asdict(resolved).items() if k != "seed"}, "seed": cfg.seed,
              "dataset": ds.name, "dataset_digest": ds.digest}
    parent, resumed = tracker.repeat_parent(experiment, key, name, tags, params,
                                            describe(cfg, n, preset, fer_data.data_words(ds.name, ds.synthetic)))
    status = "FAILED"
    try:
        done = tracker.repeat_children(parent, key) if resumed else {}
        rows, run_ids = [], {}
        for i, seed in enumerate(seeds(cfg, n)):
            child = done.get(seed)
            if child is not None and child.info.status == "FINISHED":
                echo(f"seed {seed}: finished before (run {child.info.run_id}), kept")
                metrics = child.data.metrics
                run_ids[seed] = child.info.run_id
            else:
                resume = child.info.run_id if child is not None and child.info.status in ("RUNNING", "KILLED") else None
                echo(f"seed {seed} ({i + 1} of {n}){': resuming run ' + resume if resume else ''}")
                result = train(dataclasses.replace(cfg, seed=seed), experiment=experiment, parent_run_id=parent,
                               resume_run_id=resume, tracker=tracker, preset=preset, verbose=verbose,
                               extra_tags={T.REPEAT_GROUP: key, T.REPEAT_SEED: str(seed), T.REPEAT_SET: shown},
                               name=f"{words.replace(' ', '-')}-{data}-seed{seed}")  # which set, in any table
                metrics, run_ids[seed] = result.metrics, result.run_id
            tracker.label_child(run_ids[seed], shown)  # a seed kept from an earlier set, too
            rows.append({"seed": seed, "run_id": run_ids[seed], **{k: metrics.get(k) for k in FIGURES}})
            table = pd.DataFrame(rows)
            summary = summarize(table)
            tracker.log_repeat_summary(parent, summary, table.to_csv(index=False), step=len(rows))
        status = "FINISHED"
        return RepeatResult(parent, run_ids, summary, table)
    except KeyboardInterrupt as stop:
        status = "KILLED"
        stop.stopped_set = parent  # the console's last line names the set, not the seed
        raise
    finally:
        tracker.end_parent(parent, status)
