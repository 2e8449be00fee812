"""What a researcher sees in the MLflow UI, read back through MlflowClient: names that say what a run
is, its preset and description, datasets with their real sizes, named LoggedModels with metrics,
grouped per-class metrics, system metrics, and experiments that open on their runs."""
from __future__ import annotations

import mlflow
import pytest

from fer_experiments import data as fer_data

pytestmark = pytest.mark.slow  # the shared run is a real training run


@pytest.fixture
def recorded(in_shared_store):
    """The session's shared training run (conftest.shared_run), read by every test here."""
    return in_shared_store.cfg, in_shared_store.result


def test_run_says_what_it_is(recorded):
    cfg, result = recorded
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.run_name.startswith("fer_compact_long-") and run.info.run_name.endswith("-synthetic")
    assert run.data.tags["fer.preset"] == "fer_compact_long" and run.data.tags["fer.init"] == "from scratch"
    note = run.data.tags["mlflow.note.content"]
    assert "fer_compact_long" in note and "SYNTHETIC" in note and "40-px crops" in note
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_datasets_have_their_real_sizes(recorded):
    cfg, result = recorded
    run = mlflow.MlflowClient().get_run(result.run_id)
    ds = fer_data.load_dataset(cfg.data, seed=cfg.seed)
    sizes = {split: min(len(part.y), cfg.limit) for split, part in ds.splits.items()}
    for entry in run.inputs.dataset_inputs:
        split = entry.dataset.name.rsplit("-", 1)[1]
        assert f"[{sizes[split]}, 48, 48, 1]" in entry.dataset.profile.replace(" ", "").replace(",", ", ")
        assert {t.key: t.value for t in entry.tags}["images"] == str(sizes[split])


def test_logged_model_carries_only_its_final_figures_each_once_with_its_dataset(recorded):
    _, result = recorded
    model = mlflow.get_logged_model(result.model_uri.removeprefix("models:/"))
    assert model.name == "fer_compact_long"
    # MLflow links every run metric at the model's step to it (the first epoch's curves, the first
    # system sample at step 0): the model must hold only the loaded model's own figures, once each.
    keys = sorted(m.key for m in model.metrics)
    assert keys == ["test_accuracy", "test_macro_f1", "validation_accuracy", "validation_macro_f1"], keys
    run = mlflow.get_run(result.run_id)
    datasets = {d.dataset.name.rsplit("-", 1)[1]: d.dataset for d in run.inputs.dataset_inputs}
    for m in model.metrics:
        assert m.value == pytest.approx(run.data.metrics[m.key])
        split = datasets["val" if m.key.startswith("validation") else "test"]
        assert (m.dataset_name, m.dataset_digest) == (split.name, split.digest), m  # "Datasets used"
    history = mlflow.MlflowClient().get_metric_history(result.run_id, "validation_accuracy")
    assert len(history) == 1  # the model's entry is the run's, not a second point


def test_metric_charts_are_grouped(recorded):
    _, result = recorded
    keys = set(mlflow.MlflowClient().get_run(result.run_id).data.metrics)
    per_class = {k for k in keys if "_per_class/" in k}
    assert len(per_class) == 2 * 3 * 7  # validation and test × precision/recall/F1 × 7 classes, in two groups
    assert {k.split("/")[0] for k in per_class} == {"validation_per_class", "test_per_class"}
    assert any(k.startswith("system/cpu_utilization") for k in keys)  # MLflow's system metrics (psutil)
    # The epoch curves form the "epoch" group, which the run page shows before the others.
    assert {"epoch/val_accuracy", "epoch/loss", "epoch/learning_rate"} <= keys
    assert sorted({k.split("/")[0] for k in keys if "/" in k})[0] == "epoch"
    ungrouped = {k for k in keys if "/" not in k}  # the final single values, last on the page
    assert {"validation_accuracy", "test_accuracy", "best_val_accuracy"} <= ungrouped and len(ungrouped) < 25
    # … each accuracy and macro-F1 beside its 95 % interval, which contains it
    metrics = mlflow.MlflowClient().get_run(result.run_id).data.metrics
    for split in ("validation", "test"):
        for figure in ("accuracy", "macro_f1"):
            low, high = metrics[f"{split}_{figure}_ci_low"], metrics[f"{split}_{figure}_ci_high"]
            assert low <= metrics[f"{split}_{figure}"] <= high and high - low > 0
