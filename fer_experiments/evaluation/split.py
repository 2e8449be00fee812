"""One split's evaluation of a trained model (`SplitEvaluation`): scikit-learn metrics, calibration,
the error gallery, Grad-CAM and their figures, and the temperature fitted on validation.

Pure computation (no tracking): a tracker's `log_evaluation` records what this returns, so `train`
and `evaluate` record the very same thing.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files / MLflow, never to a screen
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from ..data import CLASSES
from . import calibration, intervals, mistakes, saliency
from .tta import combine, view_probs

LABELS = list(range(len(CLASSES)))


@dataclass
class SplitEvaluation:
    split: str
    y_true: np.ndarray
    probs: np.ndarray
    extra: dict = field(default_factory=dict)  # e.g. TTA accuracies, logged next to the plain ones
    temperature: float | None = None  # fitted on validation: calibrated ECE/NLL are logged beside the plain ones
    x: np.ndarray | None = field(default=None, repr=False)  # the faces, for the error gallery
    names: np.ndarray | None = field(default=None, repr=False)  # the faces' files, for the error table
    saliency: tuple | None = field(default=None, repr=False)  # (sample indices, Grad-CAM maps, layer): `explain`
    tta_pred: dict = field(default_factory=dict, repr=False)  # TTA kind → each image's predicted class

    @property
    def prefix(self) -> str:
        # "validation_…", not "val_…": Keras's per-epoch val_accuracy/val_loss keep their own names.
        return "validation" if self.split == "val" else self.split

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    def metrics(self) -> dict[str, float]:
        """Flat metric dict, keys prefixed by split: ``test_accuracy``, ``validation_macro_f1`` … and the
        per-class figures grouped apart (MLflow charts group keys by the part before "/"):
        ``test_per_class/recall_happy``."""
        p, r, f, _ = precision_recall_fscore_support(self.y_true, self.y_pred, labels=LABELS, zero_division=0)
        pre = self.prefix
        out = {
            f"{pre}_accuracy": float(accuracy_score(self.y_true, self.y_pred)),
            f"{pre}_macro_f1": float(f1_score(self.y_true, self.y_pred, labels=LABELS,
                                                     average="macro", zero_division=0)),
        }
        for i, name in enumerate(CLASSES):
            out[f"{pre}_per_class/precision_{name}"] = float(p[i])
            out[f"{pre}_per_class/recall_{name}"] = float(r[i])
            out[f"{pre}_per_class/f1_{name}"] = float(f[i])
        # 95 % intervals over the images (Wilson for accuracy, a seeded bootstrap for macro-F1).
        out.update(intervals.split_intervals(pre, self.y_true, self.y_pred))
        out.update({f"{pre}_{k}": float(v) for k, v in self.extra.items()})
        group = f"{pre}_calibration"  # one chart group: ECE and NLL, before and after temperature scaling
        out[f"{group}/ece"] = calibration.ece(self.probs, self.y_true)
        out[f"{group}/nll"] = calibration.nll(self.probs, self.y_true)
        if self.temperature:
            scaled = calibration.scale(self.probs, self.temperature)
            out[f"{group}/ece_calibrated"] = calibration.ece(scaled, self.y_true)
            out[f"{group}/nll_calibrated"] = calibration.nll(scaled, self.y_true)
        return out

    def reliability_figure(self, title: str = ""):
        return calibration.reliability_figure(self.probs, self.y_true, t=self.temperature, title=title)

    def explain(self, model, seed: int = 0) -> None:
        """Grad-CAM maps of a fixed, seeded sample (per class one face right, one wrong) for the
        predicted class, kept for `saliency_figure`."""
        keep = saliency.pick(self.y_true, self.y_pred, seed=seed)
        explainer = saliency.explainer(model)
        heat, _ = explainer.maps(self.x[keep], self.y_pred[keep])
        self.saliency = (np.array(keep), heat, explainer.layer)

    def saliency_figure(self, title: str = ""):
        if self.saliency is None:
            return None
        keep, heat, layer = self.saliency
        return saliency.grid_figure(self.x[keep], self.y_true[keep], heat, self.probs[keep], title=title, layer=layer)

    def predictions(self) -> pd.DataFrame:
        """One row per image: its file, true and predicted class, right or not, the 7 probabilities and the
        TTA predictions — what `fer-exp compare` pairs two models on."""
        names = self.names if self.names is not None else np.array([f"#{i}" for i in range(len(self.y_true))])
        table = pd.DataFrame({"image": names, "label": np.asarray(CLASSES)[self.y_true],
                              "predicted": np.asarray(CLASSES)[self.y_pred], "correct": self.y_pred == self.y_true})
        for i, name in enumerate(CLASSES):
            table[f"p_{name}"] = self.probs[:, i].round(5)
        for kind, pred in self.tta_pred.items():
            table[f"predicted_tta_{kind}"] = np.asarray(CLASSES)[pred]
        return table

    def mistakes(self) -> pd.DataFrame:
        """The most confident mistakes per true class (`mistakes`)."""
        return mistakes.confident_mistakes(self.probs, self.y_true, names=self.names)

    def mistakes_figure(self, title: str = ""):
        return None if self.x is None else mistakes.gallery_figure(self.x, self.mistakes(), title)

    def confusion(self) -> np.ndarray:
        return confusion_matrix(self.y_true, self.y_pred, labels=LABELS)

    def confusion_json(self) -> str:
        """The confusion matrix as data: rows = true class, columns = predicted, with class names."""
        return json.dumps({"split": self.split, "labels": list(CLASSES),
                           "matrix": self.confusion().tolist()}, indent=1)

    def report(self) -> str:
        return classification_report(self.y_true, self.y_pred, labels=LABELS, target_names=list(CLASSES),
                                     digits=4, zero_division=0)

    def confusion_figure(self, title: str = ""):
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
        for ax, norm, label in ((axes[0], None, "counts"), (axes[1], "true", "row-normalised")):
            ConfusionMatrixDisplay.from_predictions(
                self.y_true, self.y_pred, labels=LABELS, display_labels=list(CLASSES), normalize=norm,
                values_format="d" if norm is None else ".2f", ax=ax, colorbar=False, cmap="Blues",
                xticks_rotation=45)
            ax.set_title(f"{self.split} — {label}")
        fig.suptitle(title or f"Confusion matrix ({self.split})")
        fig.tight_layout()
        return fig


def evaluate_split(models, split: str, x: np.ndarray, y: np.ndarray, *, tta: tuple[str, ...] = ("flip",),
                   names: np.ndarray | None = None, explain: bool = False, step=None) -> SplitEvaluation:
    """Plain evaluation of a model (or the mean of several), plus test-time augmentation accuracies
    (``tta_flip_accuracy``, ``tta_tencrop_accuracy``) logged beside it, never instead of it.
    Each view is predicted once: the plain and flip figures reuse the ten-crop views. `explain`: also
    the Grad-CAM sample of `SplitEvaluation.explain` (one model only: an ensemble has no one feature map).
    `step(label)`: a context manager around each part (the trainer's console lines); None: silent."""
    step = step or (lambda label: contextlib.nullcontext())
    name = "validation" if split == "val" else split
    widest = "tencrop" if "tencrop" in tta else "flip" if "flip" in tta else "none"
    with step(f"evaluating {name} ({len(y)} images{', TTA ' + ' + '.join(tta) if tta else ''})"):
        per_view = view_probs(models, x, widest)
        tta_pred = {kind: combine(per_view, kind).argmax(axis=1) for kind in tta}
        extra = {f"tta_{kind}_accuracy": float(accuracy_score(y, pred)) for kind, pred in tta_pred.items()}
    ev = SplitEvaluation(split=split, y_true=np.asarray(y), probs=combine(per_view, "none"), extra=extra, x=x,
                         names=names, tta_pred=tta_pred)
    if explain:
        with step(f"Grad-CAM on {name}"):
            ev.explain(models[0] if isinstance(models, (list, tuple)) else models)
    return ev


def calibrate(evaluations: list[SplitEvaluation]) -> dict:
    """Temperature scaling fitted on the validation evaluation (`calibration.choose_temperature`): every
    evaluation's calibrated figures use the NLL fit, applied or not. Returns the params that record it
    (`temperature`, the T to apply; `temperature_nll_fit`), empty without a validation split."""
    val = next((ev for ev in evaluations if ev.split == "val"), None)
    if val is None:
        return {}
    applied, fitted = calibration.choose_temperature(val.probs, val.y_true)
    for ev in evaluations:
        ev.temperature = fitted
    return {"temperature": round(applied, 4), "temperature_nll_fit": round(fitted, 4)}
