"""The learned-nothing verdict (`evaluation.baseline`): accuracy against always answering the majority class."""
from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SMALL_DATA

from fer_experiments.cli import main
from fer_experiments.data import CLASSES, Dataset, Split
from fer_experiments.evaluation import baseline
from fer_experiments.tracking import tags as T

HAPPY = CLASSES.index("happy")


def dataset(**sizes: tuple[int, int]) -> Dataset:
    """Splits of (images, of which happy) faces; the rest are neutral."""
    splits = {}
    for name, (n, happy) in sizes.items():
        y = np.array([HAPPY] * happy + [CLASSES.index("neutral")] * (n - happy))
        splits[name] = Split(np.zeros((n, 48, 48, 1), np.uint8), y)
    return Dataset("faces", "/faces", "folder", "d", splits)


def test_margin_is_the_sampling_noise_of_a_face_blind_predictor_but_never_under_two_points():
    # 240 test faces (synthetic:1200), majority 25.8 %: 1.96 binomial sds = 5.5 points
    assert baseline.margin(0.2583, 240) == pytest.approx(1.96 * np.sqrt(0.2583 * 0.7417 / 240))
    assert 0.054 < baseline.margin(0.2583, 240) < 0.056
    # FER-2013's 3,589 PublicTest faces (sd noise 1.4 points) and a huge split: the 2-point floor
    assert baseline.margin(0.25, 3589) == baseline.margin(0.25, 1_000_000) == baseline.MIN_MARGIN == 0.02


@pytest.mark.parametrize(("accuracy", "majority", "images", "nothing"), [
    (0.252, 0.252, 3000, True),     # a 2-epoch --limit 3000 run answering "happy" for every face
    (0.249, 0.250, 3589, True),     # the README's VGG16 from scratch, 2 epochs: 24.9 % vs 25 %
    (0.10, 0.25, 3000, True),       # worse than the majority class (another constant answer) is nothing too
    (0.2699, 0.25, 3000, True),     # just inside the 2-point margin
    (0.2701, 0.25, 3000, False),    # just outside it
    (0.415, 0.25, 3589, False),     # the seed CNN after 2 real epochs: 41.5 %
    (0.30, 0.25, 96, True),         # 5 points on 96 faces is within sampling noise (8.7 points)
    (0.35, 0.25, 96, False),
])
def test_learned_nothing(accuracy, majority, images, nothing):
    assert baseline.learned_nothing(accuracy, majority, images) is nothing


def test_a_run_is_judged_on_test_and_its_tags_say_what_it_used():
    ds = dataset(train=(1000, 250), val=(100, 25), test=(400, 100))
    verdict = baseline.judge(ds, {"validation_accuracy": 0.9, "test_accuracy": 0.25})
    assert (verdict.split, verdict.majority, verdict.majority_class, verdict.images) == ("test", 0.75, "neutral", 400)
    assert verdict.learned_nothing
    tags = verdict.tags()
    assert tags[T.LEARNED_NOTHING] == "true" and tags[T.IMAGES] == "train 1000, val 100, test 400"
    assert tags[T.VS_MAJORITY] == ("test accuracy 0.2500, majority rate 0.7500 (always neutral), margin 0.0424, "
                                   "400 images")
    assert "learned nothing" in verdict.warning() and "'neutral' (75.0% of 400 images)" in verdict.warning()


def test_without_a_test_split_validation_is_judged():
    ds = dataset(train=(1000, 250), val=(200, 50))
    verdict = baseline.judge(ds, {"validation_accuracy": 0.9})
    assert verdict.split == "val" and not verdict.learned_nothing and verdict.tags()[T.LEARNED_NOTHING] == "false"
    assert baseline.judge(ds, {}) is None  # nothing measured: no verdict


@pytest.mark.slow
def test_a_run_that_answers_the_majority_class_for_every_face_is_tagged_and_says_so(store):
    """The cheapest real majority-class run: the seed CNN after one epoch (10 steps) on 300 synthetic
    faces answers "happy" for every face (the synthetic set's CNN sits there for 2-3 epochs of 3,000).
    Its negative, a run that learned, is `test_training.test_learning_is_real`."""
    result = CliRunner().invoke(main, ["train", "--model", "custom", "--data", SMALL_DATA, "--epochs", "1",
                                       "--batch-size", "32", "--limit", "300", "--diagnostics", "false"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    final = [line for line in result.stdout.splitlines() if line.startswith("run ")][-1]
    run_id = final.split()[1]
    run = mlflow.MlflowClient().get_run(run_id)
    cm = np.asarray(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/test/confusion_matrix.json"))["matrix"])
    assert np.count_nonzero(cm.sum(axis=0)) == 1, cm  # one answer for every test face: a real majority-class run
    tags = run.data.tags
    assert tags[T.LEARNED_NOTHING] == "true" and tags[T.IMAGES] == "train 300, val 96, test 240"
    assert tags[T.VS_MAJORITY].startswith(f"test accuracy {run.data.metrics['test_accuracy']:.4f}, majority rate ")
    assert result.stderr.count("warning: this run learned nothing") == 1, result.stderr
    assert final.startswith(f"run {run_id} finished on SYNTHETIC faces (synthetic-fer-s0-n1200, not FER-2013; "
                            "limit 300 images per split: train 300, val 96, test 240 images): ")
    assert final.endswith(" — LEARNED NOTHING: no better than always answering the majority class"), final
    assert run.info.run_name == "custom-limit300-synthetic"
    assert "train 300, val 96, test 240 images (limit 300 per split)" in tags["mlflow.note.content"]
