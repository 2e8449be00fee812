"""Calibration: ECE, temperature fitted on one split helps another, and the calibrated model is an
ordinary Keras model with the same decisions."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_experiments import training
from fer_experiments.config import build_config
from fer_experiments.evaluation import calibration as C


def _overconfident(n: int, seed: int):
    """Labels and probabilities from a known model that is right ~60 % of the time but sharpened
    (logits × 3), i.e. overconfident."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    z = rng.normal(0, 1, (n, 7))
    z[np.arange(n), y] += 1.2
    return C.scale(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), 1 / 3), y


def test_ece_of_a_perfectly_calibrated_and_of_a_wrong_confident_predictor():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 20000)
    probs = np.zeros((len(conf), 7))
    probs[:, 0] = conf
    probs[:, 1:] = ((1 - conf) / 6)[:, None]
    y = np.where(rng.uniform(size=len(conf)) < conf, 0, 1)  # right exactly as often as it says
    assert C.ece(probs, y) < 0.02
    assert C.ece(probs, np.ones_like(y)) > 0.5              # always wrong, confident


def test_temperature_fitted_on_validation_lowers_test_nll_and_ece_and_keeps_accuracy():
    val_p, val_y = _overconfident(3000, seed=1)
    test_p, test_y = _overconfident(3000, seed=2)
    t = C.fit_temperature(val_p, val_y)
    assert t > 1.5  # overconfident → softened
    after = C.scale(test_p, t)
    assert C.nll(after, test_y) < C.nll(test_p, test_y)
    assert C.ece(after, test_y) < C.ece(test_p, test_y) / 2
    np.testing.assert_array_equal(after.argmax(axis=1), test_p.argmax(axis=1))


@pytest.mark.parametrize("model, crop", [("custom_aug", 0), ("fer_compact", 40)])
def test_calibrated_model_is_plain_keras_with_the_same_decisions(tmp_path, model, crop):
    cfg = build_config(None, model=model, crop=crop, precision="float32").resolved()
    net, _ = training.build_model(cfg)
    x = np.random.default_rng(3).uniform(0, 255, (6, 48, 48, 1)).astype("float32")
    calibrated = C.with_temperature(net, 2.5)
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), C.scale(net.predict(x, verbose=0), 2.5), atol=1e-5)
    calibrated.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")  # built-in layers only: no custom objects needed
    np.testing.assert_allclose(again.predict(x, verbose=0), calibrated.predict(x, verbose=0), atol=1e-6)
    assert ("centre_crop" in [layer.name for layer in calibrated.layers]) == bool(crop)  # ten-crop finds its crop


def test_reliability_figure_draws_both_curves():
    p, y = _overconfident(500, seed=4)
    fig = C.reliability_figure(p, y, t=C.fit_temperature(p, y), title="t")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert len(labels) == 3 and labels[1].startswith("model: ECE") and labels[2].startswith("T = ")
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_confident_mistakes_are_the_most_confident_wrong_ones_per_class():
    from fer_experiments.data import CLASSES
    from fer_experiments.evaluation.mistakes import confident_mistakes, gallery_figure

    rng = np.random.default_rng(5)
    y = rng.integers(0, 7, 400)
    probs = rng.dirichlet(np.ones(7), 400)
    table = confident_mistakes(probs, y, per_class=3)
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    for c, name in enumerate(CLASSES):
        rows = table[table["true"] == name]
        wrong = np.flatnonzero((y == c) & (pred != c))
        expected = wrong[np.argsort(-conf[wrong])][:3]            # brute force, independent of the sort used
        assert list(rows["index"]) == list(expected)
        assert all(pred[i] != c for i in rows["index"]) and list(rows["confidence"]) == sorted(rows["confidence"], reverse=True)
    x = rng.uniform(0, 255, (400, 48, 48, 1))
    fig = gallery_figure(x, table, per_class=3)
    assert sum(bool(ax.images) for ax in fig.axes) == len(table)  # one face drawn per listed mistake
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_temperature_is_applied_only_where_it_also_lowers_validation_ece():
    """Over-confident everywhere: the NLL fit is applied. Under-confident at low and over-confident at
    high confidence (what label smoothing does): the NLL fit lowers NLL but raises ECE, so T = 1."""
    p, y = _overconfident(3000, seed=1)
    applied, fitted = C.choose_temperature(p, y)
    assert applied == fitted > 1.5
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (4000, 7))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    right = rng.random(4000) < np.where(conf < 0.6, np.minimum(conf + 0.2, 1), conf - 0.03)
    y = np.where(right, pred, (pred + rng.integers(1, 7, 4000)) % 7)
    applied, fitted = C.choose_temperature(p, y)
    assert C.nll(C.scale(p, fitted), y) < C.nll(p, y) and C.ece(C.scale(p, fitted), y) > C.ece(p, y) + 0.02
    assert applied == 1.0
