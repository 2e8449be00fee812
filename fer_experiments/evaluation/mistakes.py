"""The most confident mistakes per true class: where a model is surely wrong, FER-2013's label often
is (the dataset has many mislabelled faces). A table (split index, file, true, predicted, confidence) and
a figure of the faces, for every split a run evaluates."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import CLASSES

PER_CLASS = 4


def confident_mistakes(probs: np.ndarray, y: np.ndarray, per_class: int = PER_CLASS,
                       names: np.ndarray | None = None) -> pd.DataFrame:
    """Per true class, its `per_class` wrong predictions with the highest confidence, most confident
    first; `index` is the image's position in the split, `file` its file (or CSV file:line) where known."""
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    rows = []
    for c in range(len(CLASSES)):
        wrong = np.flatnonzero((y == c) & (pred != c))
        for i in wrong[np.argsort(-conf[wrong], kind="stable")][:per_class]:
            rows.append({"index": int(i), "file": "" if names is None else str(names[i]), "true": CLASSES[c],
                         "predicted": CLASSES[pred[i]],
                         "confidence": float(conf[i]), "p_true": float(probs[i, c])})
    return pd.DataFrame(rows, columns=["index", "file", "true", "predicted", "confidence", "p_true"])


def gallery_figure(x: np.ndarray, table: pd.DataFrame, title: str = "", per_class: int = PER_CLASS):
    """One row per true class, its most confident mistakes left to right."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(1.9 * per_class, 1.9 * len(CLASSES)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, name in enumerate(CLASSES):
        for k, (_, row) in enumerate(table[table["true"] == name].iterrows()):
            ax = axes[r, k]
            ax.imshow(x[row["index"]].squeeze(), cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"→ {row['predicted']} {100 * row['confidence']:.0f} %", fontsize=8)
        axes[r, 0].text(-0.15, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle(title or "Most confident mistakes (row: true class; title: predicted, confidence)", fontsize=10)
    fig.tight_layout()
    return fig
