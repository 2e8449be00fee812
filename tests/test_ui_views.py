"""The saved views of `mlflow ui` (`tracking.ui_views`) in a real temp SQLite store."""
from __future__ import annotations


def test_saved_views_are_upgraded_only_where_unedited(store):
    import json

    import mlflow

    from fer_experiments.tracking import ui_views

    client = mlflow.MlflowClient()
    exp = client.create_experiment("views")
    key = ui_views.VIEW_TAG + ui_views.HEADLINE_VIEW

    def state():
        return json.loads(json.loads(client.get_experiment(exp).tags[key])["state"])

    old = {"name": "FER: headline figures", "createdAt": 1, "updatedAt": 1,
           "state": json.dumps({"selectedColumns": ["metrics.`validation_accuracy`"], ui_views.VIEW_MARK: 1})}
    client.set_experiment_tag(exp, key, json.dumps(old))  # ours, from an older version, unedited
    ui_views.save_view(exp, ui_views.HEADLINE_VIEW, "FER: headline figures", ui_views.headline_state())
    assert "metrics.`test_accuracy_ci_low`" in state()["columnOrder"] and state()[ui_views.VIEW_MARK] == 2
    edited = {**old, "state": json.dumps({"selectedColumns": ["metrics.`mine`"]})}  # a user saved over it: no mark
    client.set_experiment_tag(exp, key, json.dumps(edited))
    ui_views.save_view(exp, ui_views.HEADLINE_VIEW, "FER: headline figures", ui_views.headline_state())
    assert state() == {"selectedColumns": ["metrics.`mine`"]}
