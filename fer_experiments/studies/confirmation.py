"""Study champions confirmed (`fer-exp tune --confirm-top K --confirm-seeds S`): the study's best
trials trained again with more seeds, and the champion the best mean over seeds.

A study's best trial is the maximum over noisy trials, so its value overstates it (the winner's curse)
and a runner-up may be the better configuration. Once the study is done, its K best COMPLETE trials by
value (pruned and failed trials never) are trained S more times, each with the trial's configuration as
the objective builds it (`search_space.apply`) and the seeds seed+1 … seed+S, as child runs of the
study's parent tagged with the trial they confirm (`fer.confirm_trial`) and their seed
(`fer.repeat_seed`). The champion is the trial with the best mean validation accuracy over its 1 + S
seeds (its own run and the extra ones; a tie goes to the trial the study ranked higher); the mean test
accuracy is reported, never selected on. The model registered is the champion trial's own.

Resumable: FINISHED confirmation runs under the parent are found by their tags and kept, and only the
missing ones are trained; one that did not finish (its worker was killed) is trained again in a new
run, not resumed, so that no two workers ever write one run. Left: two workers that see the study done
at the same moment both train the runs missing then (the table uses one of each trial and seed).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from .. import training
from ..tracking import tags as T
from ..training.repeats import seeds, summarize
from . import search_space

FIGURES = ("validation_accuracy", "test_accuracy")  # per run; test is reported, never selected on


@dataclass
class Confirmation:
    champion: FrozenTrial  # the trial with the best mean validation accuracy over its seeds
    summary: dict          # its figures over them (`repeats.summarize`: the mean, `_sd`, `_ci_low/_high`)
    table: pd.DataFrame    # one row per confirmed trial, in the study's order (best value first)

    def words(self) -> str:
        s = self.summary
        return (f"validation accuracy {s['validation_accuracy']:.4f} ± {s['validation_accuracy_sd']:.4f} "
                f"over {int(s['seeds_finished'])} seeds")


def top_trials(study, k: int) -> list[FrozenTrial]:
    """The study's `k` best COMPLETE trials by value, best first (a tie: the earlier trial first)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: (-t.value, t.number))[:k]


def confirm(s, study, parent: str, tracker, echo=print) -> Confirmation | None:
    """Confirm the done study's top trials (`s`: its TuneSettings), log the table on its parent run and
    return the confirmed champion; None where confirmation is off or no trial completed."""
    top = top_trials(study, s.confirm_top) if s.confirm_seeds > 0 else []
    if not top:
        return None
    found = tracker.confirmation_runs(parent)  # (trial, seed) → its FINISHED run's figures
    plan = {t.number: seeds(search_space.apply(s.base, t.params), 1 + s.confirm_seeds) for t in top}
    missing = [(n, seed) for n, trial_seeds in plan.items() for seed in trial_seeds[1:] if (n, seed) not in found]
    echo(f"confirming the top {len(top)} complete trials ({', '.join(str(n) for n in plan)}) with {s.confirm_seeds} "
         f"more seed(s) each: {len(missing)} run(s) to train, {len(top) * s.confirm_seeds - len(missing)} finished before")
    rows, summaries = [], {}
    for trial in top:
        runs = [{"seed": plan[trial.number][0], "run_id": trial.user_attrs.get("mlflow_run_id", ""),
                 "validation_accuracy": trial.value, "test_accuracy": trial.user_attrs.get("test_accuracy")}]
        for seed in plan[trial.number][1:]:
            if (trial.number, seed) not in found:
                echo(f"confirmation run {missing.index((trial.number, seed)) + 1} of {len(missing)}: "
                     f"trial {trial.number} with seed {seed}")
                found[trial.number, seed] = _train(s, study, parent, tracker, trial, seed)
            runs.append({"seed": seed, **found[trial.number, seed]})
        runs = pd.DataFrame(runs)
        summary = summaries[trial.number] = summarize(runs)
        rows.append({"trial": trial.number, "seeds": " ".join(map(str, runs["seed"])),
                     "validation_accuracy_mean": summary["validation_accuracy"],
                     "validation_accuracy_sd": summary["validation_accuracy_sd"],
                     "test_accuracy_mean": summary.get("test_accuracy", math.nan),  # reported, never selected on
                     "trial_validation_accuracy": trial.value, "run_ids": " ".join(runs["run_id"])})
    table = pd.DataFrame(rows)
    champion = max(top, key=lambda t: summaries[t.number]["validation_accuracy"])  # the first of equals
    result, optuna_best = Confirmation(champion, summaries[champion.number], table), study.best_trial
    tracker.log_confirmation(
        parent, table.to_csv(index=False),
        metrics={f"confirmed_{k}": v for k, v in result.summary.items() if not math.isnan(v)},
        tags={"champion_trial": champion.number, "champion_validation_accuracy": result.words(),
              "optuna_best_trial": optuna_best.number})
    echo(table.drop(columns="run_ids").to_string(index=False, float_format="{:.4f}".format))
    beside = (f" (Optuna's best: trial {optuna_best.number}, {optuna_best.value:.4f} in one run)"
              if optuna_best.number != champion.number else "")
    echo(f"confirmed champion: trial {champion.number}, {result.words()}{beside}")
    return result


def words(best: FrozenTrial, confirmed: Confirmation | None) -> str:
    return confirmed.words() if confirmed else f"validation accuracy {best.value:.4f}"


def result_line(best: FrozenTrial | None, confirmed: Confirmation | None, parent: str) -> str:
    """`tune`'s last line: the study's champion, confirmed where it was."""
    if best is None:
        return f"no completed trial (all pruned or failed so far): no best model; parent run {parent}"
    if confirmed:
        test = confirmed.summary.get("test_accuracy")
        return (f"champion trial {best.number}: {confirmed.words()} (its own run {best.value:.4f}) params {best.params} "
                f"(test_accuracy mean {'-' if test is None else f'{test:.4f}'}, reported only); parent run {parent}")
    return (f"best trial {best.number}: val_accuracy {best.value:.4f} params {best.params} "
            f"(test_accuracy {best.user_attrs.get('test_accuracy')}, reported only); parent run {parent}")


def _train(s, study, parent: str, tracker, trial: FrozenTrial, seed: int) -> dict:
    cfg = dataclasses.replace(search_space.apply(s.base, trial.params), seed=seed)
    result = training.train(cfg, parent_run_id=parent, verbose=0, tracker=tracker,
                            extra_tags={T.STUDY_NAME: study.study_name, T.CONFIRM_TRIAL: str(trial.number),
                                        T.REPEAT_SEED: str(seed)})
    return {"run_id": result.run_id, **{k: result.metrics.get(k) for k in FIGURES}}
