"""Calibration: ECE, temperature fitted on one split helps another, and the calibrated model is an
ordinary Keras model with the same decisions."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from fer_experiments import training
from fer_experiments.config import build_config
from fer_experiments.evaluation import calibration as C


def _softmax(z):
    """Row-wise softmax in plain numpy: the oracle for temperature scaling (never calls calibration)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _overconfident_logits(n: int, seed: int):
    """Labels and logits z of a known model: z = N(0, 1) noise + 1.2 on the true class. Its calibrated
    probabilities are softmax(1.2 z) (the Bayes posterior of that Gaussian model, uniform prior); the
    model reports softmax(3 z), i.e. overconfident, and the temperature that undoes it is 3 / 1.2 = 2.5."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    z = rng.normal(0, 1, (n, 7))
    z[np.arange(n), y] += 1.2
    return 3 * z, y


def _overconfident(n: int, seed: int):
    z, y = _overconfident_logits(n, seed)
    return _softmax(z), y


def _with_confidence(rows, classes: int = 7):
    """Probabilities and labels from (top confidence, right?) pairs: class 0 gets the confidence, the
    other classes share the rest equally; the label is 0 when right, 1 when wrong."""
    conf = np.array([c for c, _ in rows], dtype=float)
    probs = np.repeat(((1 - conf) / (classes - 1))[:, None], classes, axis=1)
    probs[:, 0] = conf
    assert (probs.argmax(axis=1) == 0).all()  # the confidence given is the top probability
    return probs, np.array([0 if right else 1 for _, right in rows])


def test_ece_of_a_perfectly_calibrated_and_of_a_wrong_confident_predictor():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 20000)
    probs = np.zeros((len(conf), 7))
    probs[:, 0] = conf
    probs[:, 1:] = ((1 - conf) / 6)[:, None]
    y = np.where(rng.uniform(size=len(conf)) < conf, 0, 1)  # right exactly as often as it says
    assert C.ece(probs, y) < 0.02
    # Always wrong: accuracy 0 in every bin, so ECE = Σ share·conf = the mean confidence, whatever the bins.
    np.testing.assert_allclose(C.ece(probs, np.ones_like(y)), conf.mean(), rtol=1e-9)
    # Always right: ECE = Σ share·(1 − conf) = 1 − the mean confidence.
    np.testing.assert_allclose(C.ece(probs, np.zeros_like(y)), 1 - conf.mean(), rtol=1e-9)


def test_ece_in_closed_form_on_hand_built_inputs():
    # One bin (0.8, 0.8667] of 15: 3 of 4 right at mean confidence 0.825 → ECE = |0.75 − 0.825|.
    probs, y = _with_confidence([(0.81, True), (0.82, True), (0.83, False), (0.84, True)])
    np.testing.assert_allclose(C.ece(probs, y), 0.075, atol=1e-12)
    # Two bins: 6 of 10 images at 0.35 (bin 5), 4 right; 4 at 0.9 (bin 13), 2 right. Weighted sum
    # 0.6·|4/6 − 0.35| + 0.4·|2/4 − 0.9| = 0.19 + 0.16.
    rows = [(0.35, i < 4) for i in range(6)] + [(0.9, i < 2) for i in range(4)]
    probs, y = _with_confidence(rows)
    np.testing.assert_allclose(C.ece(probs, y), 0.6 * (4 / 6 - 0.35) + 0.4 * (0.9 - 2 / 4), atol=1e-12)
    # The same images in one bin: over- and under-confidence cancel, |6/10 − (0.6·0.35 + 0.4·0.9)| = 0.03.
    np.testing.assert_allclose(C.ece(probs, y, bins=1), abs(6 / 10 - (0.6 * 0.35 + 0.4 * 0.9)), atol=1e-12)


@pytest.mark.parametrize("bins", [4, 10, 15])
def test_bin_of_at_the_bin_edges(bins):
    # Bins are (b/bins, (b+1)/bins], the first closed at 0: an edge k/bins closes bin k − 1.
    edges = np.arange(1, bins + 1) / bins
    np.testing.assert_array_equal(C.bin_of(edges, bins), np.arange(bins))
    np.testing.assert_array_equal(C.bin_of(np.array([0.0, 1.0]), bins), [0, bins - 1])
    # Just above an edge is the next bin; the middle of bin b is bin b.
    np.testing.assert_array_equal(C.bin_of(edges[:-1] + 1e-9, bins), np.arange(1, bins))
    np.testing.assert_array_equal(C.bin_of((np.arange(bins) + 0.5) / bins, bins), np.arange(bins))


def test_reliability_figure_plots_the_accuracies_that_ece_uses():
    import matplotlib.pyplot as plt

    # Four bins (0, 1/4], (1/4, 1/2], (1/2, 3/4], (3/4, 1]; 0.5 and 0.75 sit on edges, 1.0 in the last.
    rows = [(0.3, True), (0.5, True), (0.5, False),               # bin 1: 2 of 3 right, mean conf 1.3/3
            (0.6, True), (0.75, False),                           # bin 2: 1 of 2, mean conf 1.35/2
            (0.8, False), (0.9, True), (1.0, True), (1.0, True)]  # bin 3: 3 of 4, mean conf 3.7/4
    probs, y = _with_confidence(rows)                             # bin 0 is empty
    fig = C.reliability_figure(probs, y, bins=4)
    ax, hist = fig.axes
    diagonal, model = ax.lines
    np.testing.assert_allclose(model.get_xdata(), [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(model.get_ydata(), [np.nan, 2 / 3, 1 / 2, 3 / 4])  # NaN: nothing to plot
    assert [patch.get_height() for patch in hist.patches] == [0, 3, 2, 4]
    by_hand = 3 / 9 * abs(2 / 3 - 1.3 / 3) + 2 / 9 * abs(1 / 2 - 1.35 / 2) + 4 / 9 * abs(3 / 4 - 3.7 / 4)
    np.testing.assert_allclose(C.ece(probs, y, bins=4), by_hand, atol=1e-12)
    assert model.get_label() == f"model: ECE {100 * by_hand:.1f} %"
    plt.close(fig)


def test_scale_is_softmax_of_the_logits_divided_by_t():
    z = np.random.default_rng(7).normal(0, 2, (50, 7))
    for t in (0.5, 1.0, 2.5, 10.0):
        np.testing.assert_allclose(C.scale(_softmax(z), t), _softmax(z / t), atol=1e-12)
    # Two classes, z = (0, ln 3): p = (1/4, 3/4); T = 2 gives (1, √3) / (1 + √3).
    np.testing.assert_allclose(C.scale(np.array([[0.25, 0.75]]), 2.0), [[1 / (1 + 3 ** 0.5), 3 ** 0.5 / (1 + 3 ** 0.5)]],
                               atol=1e-12)


def test_nll_in_closed_form():
    probs = np.array([[0.5, 0.25, 0.25], [0.25, 0.75, 0.0], [0.1, 0.2, 0.7]])
    np.testing.assert_allclose(C.nll(probs, np.array([0, 0, 2])), -(np.log(0.5) + np.log(0.25) + np.log(0.7)) / 3)
    np.testing.assert_allclose(C.nll(probs[1:2], np.array([2])), -np.log(C.EPS))  # p = 0: clipped, finite


def test_temperature_fitted_on_validation_lowers_test_nll_and_ece_and_keeps_accuracy():
    val_z, val_y = _overconfident_logits(3000, seed=1)
    test_p, test_y = _overconfident(3000, seed=2)
    t = C.fit_temperature(_softmax(val_z), val_y)
    # The population answer is 3 / 1.2 = 2.5 (see _overconfident_logits); 3000 images land within 0.2.
    assert abs(t - 2.5) < 0.2, t
    # And it is the NLL minimiser on this sample: brute-force grids over T in plain numpy, coarse then fine.
    def grid_argmin(grid):
        sample_nll = [-np.log(_softmax(val_z / g)[np.arange(len(val_y)), val_y]).mean() for g in grid]
        return grid[int(np.argmin(sample_nll))]

    coarse = grid_argmin(np.arange(1.0, 5.0, 0.01))
    assert abs(t - grid_argmin(np.arange(coarse - 0.01, coarse + 0.01, 0.0005))) < 0.001
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
    # log p = z − logsumexp(z) differs from the logits by a per-row constant, which softmax ignores.
    expected = _softmax(np.log(net.predict(x, verbose=0).astype("float64")) / 2.5)
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), expected, atol=1e-5)
    calibrated.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")  # built-in layers only: no custom objects needed
    np.testing.assert_allclose(again.predict(x, verbose=0), calibrated.predict(x, verbose=0), atol=1e-6)
    assert ("centre_crop" in [layer.name for layer in calibrated.layers]) == bool(crop)  # ten-crop finds its crop


def test_reliability_figure_draws_both_curves():
    p, y = _overconfident(500, seed=4)
    t = C.fit_temperature(p, y)
    fig = C.reliability_figure(p, y, t=t, title="t")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["perfect calibration", f"model: ECE {100 * C.ece(p, y):.1f} %",
                      f"T = {t:.2f}: ECE {100 * C.ece(_softmax(np.log(p) / t), y):.1f} %"]
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
    assert applied == fitted and abs(fitted - 2.5) < 0.2  # 2.5: see _overconfident_logits
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (4000, 7))
    p = _softmax(z)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    right = rng.random(4000) < np.where(conf < 0.6, np.minimum(conf + 0.2, 1), conf - 0.03)
    y = np.where(right, pred, (pred + rng.integers(1, 7, 4000)) % 7)
    applied, fitted = C.choose_temperature(p, y)
    softened = _softmax(z / fitted)
    assert C.nll(softened, y) < C.nll(p, y) and C.ece(softened, y) > C.ece(p, y) + 0.02
    assert applied == 1.0
