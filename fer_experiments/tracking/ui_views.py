"""What `mlflow ui` opens on: saved views of an experiment's runs, and the links that open them.

MLflow 3.17's UI opens every experiment, in a browser that has not chosen otherwise, on its GenAI
overview (traces, token usage): the `mlflow.experimentKind` tag is not read, and no server setting
changes that. What a link can carry is `workflowType=machine_learning` (the runs table, the
model-training side bar) and `viewStateShareKey=<id>`, a view saved in the experiment tag
``mlflow.sharedViewState.<id>`` (MLflow's own "Views" menu stores them there): its columns, sort,
filter and charts. So every experiment gets a view of the headline figures, every study one of its
trials, and the commands print the links that open them. Whether the runs open as the table or as
charts is no part of a view: the link's `compareRunsMode=CHART` opens the charts (`runs_link(chart=True)`).
"""
from __future__ import annotations

import json
import time

import mlflow

VIEW_TAG = "mlflow.sharedViewState."
HEADLINE_VIEW = "fer-headline"
# What a researcher compares first, in this order: the runs table's columns of the saved views.
# The test accuracy's 95 % interval beside it (Wilson over the images; over seeds on a repeat set's parent).
HEADLINE_METRICS = ("validation_accuracy", "test_accuracy", "validation_macro_f1", "test_macro_f1", "epochs_run",
                    "test_accuracy_ci_low", "test_accuracy_ci_high")
HEADLINE_PARAMS = ("model", "learning_rate", "dropout", "aug_strength", "batch_size", "epochs")
HEADLINE_CHARTS = HEADLINE_METRICS[:4]  # bar charts, validation beside test, in the first chart section
# MLflow orders chart sections by name (`localeCompare`), then "Model metrics", "System metrics": these
# names sort first, before those it makes of this project's keys ("epoch/…", "test_per_class/…", …).
HEADLINE_SECTION, STUDY_SECTION = "Accuracy and macro-F1", "Accuracy against tuned settings"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store


def ui_base() -> str:
    """The UI of the current store: a tracking server's own address, else `mlflow ui`'s default."""
    uri = mlflow.get_tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else DEFAULT_UI


def runs_link(experiment_id: str, view: str = HEADLINE_VIEW, *, chart: bool = False) -> str:
    mode = "&compareRunsMode=CHART" if chart else ""
    return (f"{ui_base()}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={view}{mode}")


def run_link(experiment_id: str, run_id: str) -> str:
    return f"{ui_base()}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def _columns(metrics, params) -> list[str]:
    return [*(f"metrics.`{m}`" for m in metrics), *(f"params.`{p}`" for p in params)]


# Chart cards and sections as MLflow 3.17's UI stores them in `compareRunCharts`/`compareRunSections`:
# RunsChartsCardConfig with its Bar/Parallel subclasses, ChartSectionConfig (`columns` 1-5,
# `cardHeight` 300-500 px) and updateChartAndSectionConfigs, in mlflow/server/js/src/
# experiment-tracking/components/runs-charts/runs-charts.types.ts. On opening, MLflow adds a chart for
# every metric and image key no card shows, in sections by key prefix, but keeps its "Model metrics"
# and "System metrics" sections only if the saved list has them (last).
def _card(uuid: str, kind: str, section: str, **fields) -> dict:
    return {"uuid": uuid, "type": kind, "runsCountToCompare": 10, "metricSectionId": section,
            "deleted": False, "isGenerated": False, **fields}


def _section(uuid: str, name: str, **layout) -> dict:
    return {"uuid": uuid, "name": name, "display": True, "isReordered": False, "deleted": False,
            "isGenerated": False, **layout}


def _charts(charts: tuple[dict, ...] = (), sections: tuple[dict, ...] = ()) -> dict:
    """The headline bar charts, after `charts` in `sections`."""
    bars = [_card(f"fer-{m}", "BAR", "fer-headline", metricKey=m, displayName=m) for m in HEADLINE_CHARTS]
    return {"compareRunCharts": [*charts, *bars],
            "compareRunSections": [*sections, _section("fer-headline", HEADLINE_SECTION, columns=2),
                                   _section("fer-model", "Model metrics"), _section("fer-system", "System metrics")]}


def _headline_columns() -> dict:
    """The headline columns in the order read — validation accuracy, test accuracy and its interval's two
    ends, macro-F1s — wide enough that the ends' names show (MLflow would sort them by name and cut them)."""
    order = [f"metrics.`{m}`" for m in ("validation_accuracy", "test_accuracy", "test_accuracy_ci_low",
                                         "test_accuracy_ci_high", "validation_macro_f1", "test_macro_f1", "epochs_run")]
    return {"selectedColumns": _columns(HEADLINE_METRICS, HEADLINE_PARAMS), "columnOrder": order,
            "columnWidths": dict.fromkeys(order, 160)}


def headline_state() -> dict:
    """Every run of the experiment, best validation accuracy first, with the headline columns; as
    charts, the headline figures' bar charts first."""
    return {"orderByKey": "metrics.`validation_accuracy`", "orderByAsc": False, **_headline_columns(), **_charts()}


def study_state(parent_run_id: str, tuned: list[str]) -> dict:
    """A study's trials, best first, with validation/test accuracy and the tuned settings as columns;
    as charts, the tuned settings against validation accuracy (parallel coordinates) first."""
    parallel = _card("fer-parallel", "PARALLEL", "fer-tuned", selectedParams=list(tuned),
                     selectedMetrics=["validation_accuracy"], showAllRuns=False)
    return {"searchFilter": f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            "orderByKey": "metrics.`validation_accuracy`", "orderByAsc": False,
            "selectedColumns": _columns(HEADLINE_METRICS[:2], tuned), "columnOrder": [],
            **_charts((parallel,), (_section("fer-tuned", STUDY_SECTION, columns=1, cardHeight=400),))}


REPEATS_VIEW = "fer-repeats"


def repeats_state() -> dict:
    """Every seed of every repeat set (`train --repeats`), grouped by set (tag `fer.repeat_set`): a
    group's row shows the average over its seeds, as MLflow's own *Group by* does; the sets' parents
    (which hold mean, sd and interval themselves) are left out so they are not averaged in."""
    return {"searchFilter": "tags.`fer.repeat_seed` LIKE '%'", "orderByKey": "metrics.`validation_accuracy`",
            "orderByAsc": False, **_headline_columns(),
            "groupBy": {"aggregateFunction": "average",
                        "groupByKeys": [{"mode": "tag", "groupByData": "fer.repeat_set"}]},
            **_charts()}


def study_view(parent_run_id: str) -> str:
    return f"fer-study-{parent_run_id[:12]}"


# Our views carry this mark in their state. MLflow's UI keeps only its own keys when a user saves a view
# over ours, so a view with an older mark is ours, unedited, and is brought up to date; one without is
# the user's (or older than the mark) and is kept.
VIEW_MARK, VIEW_VERSION = "ferViewVersion", 2


def set_experiment_tag(experiment_id: str, key: str, value: str) -> None:
    """Set an experiment tag unless it already has `value`. Processes starting runs in one experiment at
    once set the same tags: on SQLite the second insert of a key fails (MLflow's `session.merge` is a
    SELECT then an INSERT), which is harmless when the winner wrote what this one would have."""
    client = mlflow.MlflowClient()
    before = client.get_experiment(experiment_id).tags.get(key)
    if before == value:
        return
    try:
        client.set_experiment_tag(experiment_id, key, value)
    except mlflow.exceptions.MlflowException:
        if before is not None or key not in client.get_experiment(experiment_id).tags:
            raise  # not another process's insert of the key first: the store refused this one


def save_view(experiment_id: str, view: str, name: str, state: dict, *, replace: bool = False) -> None:
    """The view `view` (MLflow's "Views" menu lists it under `name`) in the experiment's tags; an
    existing one is kept unless `replace`, or unless it is an older, unedited one of ours (`VIEW_MARK`)."""
    client = mlflow.MlflowClient()
    key = VIEW_TAG + view
    existing = client.get_experiment(experiment_id).tags.get(key)
    mark = None if existing is None else _version(existing)
    if existing is not None and not replace and (mark is None or mark >= VIEW_VERSION):
        return
    now = int(time.time() * 1000)
    set_experiment_tag(experiment_id, key, json.dumps(
        {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps({**state, VIEW_MARK: VIEW_VERSION})}))


def _version(tag: str) -> int | None:
    """The mark of a saved view's state: None where it has none (a user's, or unreadable)."""
    try:
        mark = json.loads(json.loads(tag)["state"]).get(VIEW_MARK)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return mark if isinstance(mark, int) else None
