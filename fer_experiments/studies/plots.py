"""The study's figures with `optuna.visualization.matplotlib` (history, importances, parallel
coordinates, slice), their value axis named for what the study maximises. A plot Optuna cannot
draw yet (e.g. importances with < 2 finished trials) is skipped, not fatal. Laid out to fit, so no
axis label is cut off at the figure's edge (saved with bbox_inches="tight")."""
from __future__ import annotations

import warnings

import numpy as np
import optuna
import optuna.visualization.matplotlib as ovm

TARGET = "validation accuracy"  # the objective: the float32 model's validation accuracy
PLOTS = {"optimization_history": ovm.plot_optimization_history, "param_importances": ovm.plot_param_importances,
         "parallel_coordinate": ovm.plot_parallel_coordinate, "slice": ovm.plot_slice}


def study_figures(study) -> dict:
    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. PED-ANOVA on a handful of trials: the plot says enough
        for name, plot in PLOTS.items():
            try:
                ax = plot(study, target_name=TARGET)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                warnings.warn(f"study plot {name} skipped: {exc}", stacklevel=2)
                continue
            first = np.ravel(ax)[0] if isinstance(ax, np.ndarray) else ax
            fig = first.figure
            fig.set_size_inches(max(fig.get_size_inches()[0], 8), max(fig.get_size_inches()[1], 5))
            figures[name] = fig
    return figures
