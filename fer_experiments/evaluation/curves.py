"""Training curves from the per-epoch history (loss and accuracy, train vs validation)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files / MLflow, never to a screen
import matplotlib.pyplot as plt
import pandas as pd


def curves_figure(history: pd.DataFrame, title: str = ""):
    """Training curves (loss and accuracy, train vs validation) from the per-epoch history."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for col, style in ((key, "-"), (f"val_{key}", "--")):
            if col in history:
                ax.plot(history["epoch"] + 1, history[col], style, label=col)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
