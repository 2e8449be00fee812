"""`RepeatRecords`, the MLflow side of a repeat set (a part of `MlflowTracker`): one configuration
trained with several seeds, as sibling runs under one parent that holds their mean, spread and
interval (`training.repeats`).

Runs of a set share the tag `fer.repeat_group` (a key of the configuration without its seed), which
is what finds them again: a killed set continues with the seeds it lacks, in the same parent (or,
inside a new `mlflow run`, in that command's run, which adopts the finished siblings).
"""
from __future__ import annotations

import json
import os
import time

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from . import tags as T
from . import ui_views
from .records import param_value


class RepeatRecords:
    """A repeat set's parent and its children, through the client (the children use the fluent API)."""

    def repeat_parent(self, experiment: str, key: str, run_name: str, tags: dict, params: dict,
                      description: str) -> tuple[str, bool]:
        """The set's parent run: the one a killed attempt left (reopened), or `mlflow run`'s own run (which
        then adopts the earlier parent's children), or a new one. Returns (run id, whether it resumed)."""
        self.check_store()
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        earlier = client.search_runs([exp_id], f"tags.`{T.REPEAT_GROUP}` = '{key}' and tags.`{T.RUN_KIND}` = 'repeats'",
                                     order_by=["attributes.start_time DESC"])
        env_run = os.environ.get("MLFLOW_RUN_ID")
        if env_run:
            run_id = env_run
            for old in earlier:
                if old.info.run_id != env_run:
                    for child in self.repeat_children(old.info.run_id, key).values():
                        client.set_tag(child.info.run_id, MLFLOW_PARENT_RUN_ID, env_run)
                    client.delete_run(old.info.run_id)  # soft-deleted: `mlflow gc` or the UI can still bring it back
        elif earlier:
            run_id = earlier[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run_id = client.create_run(exp_id, run_name=run_name).info.run_id
        existing = client.get_run(run_id).data.params
        client.log_batch(run_id, params=[Param(k, param_value(v)) for k, v in params.items() if k not in existing],
                         tags=[RunTag(k, str(v)) for k, v in {**tags, "mlflow.runName": run_name, T.REPEAT_GROUP: key,
                                                              T.RUN_KIND: "repeats", MLFLOW_RUN_NOTE: description}.items()])
        ui_views.save_view(exp_id, ui_views.REPEATS_VIEW, "FER: seed repeats, grouped", ui_views.repeats_state())
        return run_id, bool(earlier)

    def repeats_link(self, parent_run_id: str) -> str:
        """The runs page with every repeat set's seeds grouped, each group's row their average."""
        return ui_views.runs_link(mlflow.MlflowClient().get_run(parent_run_id).info.experiment_id, ui_views.REPEATS_VIEW)

    def label_child(self, run_id: str, words: str) -> None:
        """The set's name on one of its seeds (tag `fer.repeat_set`: the runs page groups by it)."""
        mlflow.MlflowClient().set_tag(run_id, T.REPEAT_SET, words)

    def repeat_children(self, parent_run_id: str, key: str) -> dict:
        """seed → the newest run of the set under this parent (FINISHED preferred), deleted ones aside."""
        client = mlflow.MlflowClient()
        exp_id = client.get_run(parent_run_id).info.experiment_id
        runs = client.search_runs([exp_id], f"tags.`{T.REPEAT_GROUP}` = '{key}' and tags.`{MLFLOW_PARENT_RUN_ID}` = "
                                            f"'{parent_run_id}'", order_by=["attributes.start_time ASC"])
        chosen: dict = {}
        for run in runs:
            seed = int(run.data.tags.get(T.REPEAT_SEED, -1))
            if chosen.get(seed) is None or chosen[seed].info.status != "FINISHED":
                chosen[seed] = run
        return chosen

    def log_repeat_summary(self, parent_run_id: str, metrics: dict, table_csv: str, step: int) -> None:
        """The figures over the seeds done so far (`step` = how many) and the per-seed table, on the parent."""
        client = mlflow.MlflowClient()
        now = int(time.time() * 1000)
        client.log_batch(parent_run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])
        client.log_text(parent_run_id, table_csv, "repeats/seeds.csv")
        client.log_text(parent_run_id, json.dumps(metrics, indent=1, sort_keys=True), "repeats/summary.json")

    def end_parent(self, parent_run_id: str, status: str) -> None:
        """The parent ends with the set (inside `mlflow run`, that command ends its own run)."""
        if not os.environ.get("MLFLOW_RUN_ID"):
            mlflow.MlflowClient().set_terminated(parent_run_id, status)
