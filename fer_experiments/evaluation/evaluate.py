"""`fer-exp evaluate`: a logged model (or `.keras` file) on any dataset, recorded like training.

Works on a folder the model has never seen, including one that holds only a `test/` split. Several
models are evaluated as one ensemble: the mean of their probabilities (each model's TTA views too).
"""
from __future__ import annotations

from .. import data as fer_data
from ..inference.loading import load_model
from ..tracking import MlflowTracker, NullTracker, experiment_name_for
from ..tracking import tags as T
from .split import calibrate, evaluate_split


def evaluate(model_uris: str | list[str], data: str, *, splits=(), tta=("flip", "tencrop"),
             experiment: str | None = None, log: bool = True, tracker=None):
    """Evaluate and (optionally: `log`, through `tracker`, MLflow by default) record one run; yields
    printable lines."""
    uris = [model_uris] if isinstance(model_uris, str) else list(model_uris)
    ds = fer_data.load_dataset(data)
    chosen = list(splits) or [s for s in ("val", "test") if s in ds.splits]
    missing = [s for s in chosen if s not in ds.splits]
    if missing or not chosen:
        raise fer_data.DataError(f"data '{data}' has no split(s) {', '.join(missing) or 'val/test'}: "
                                 f"it has {', '.join(ds.splits)}; pass --split with one of those")
    models = [load_model(u, check_shape=False) for u in uris]  # before any run: a bad URI leaves nothing behind
    results = [evaluate_split(models, s, ds.splits[s].x, ds.splits[s].y, tta=tta, names=ds.splits[s].names,
                              explain=len(models) == 1) for s in chosen]
    what = uris[0] if len(uris) == 1 else f"ensemble of {len(uris)} models"
    temperature = calibrate(results)  # fitted on validation, as in training; shown for every split
    tracker = (tracker or MlflowTracker()) if log else NullTracker()
    if tracker.enabled:
        tags = {T.SYNTHETIC: str(ds.synthetic).lower(), T.DATASET: ds.name,
                T.EVALUATED_MODEL: " ".join(uris), T.RUN_KIND: "evaluation"}
        name = f"evaluate{'-ensemble' if len(uris) > 1 else ''}-{'synthetic' if ds.synthetic else ds.name}"
        with tracker.run(experiment=experiment or experiment_name_for(ds.synthetic), run_name=name,
                         tags=tags) as run_id:
            tracker.log_params({"model_uri": " ".join(uris), "n_models": len(uris), "data": data,
                                "tta": ",".join(tta) or "none", **temperature})
            tracker.log_dataset(ds)
            for ev in results:
                tracker.log_evaluation(ev, f"{what} on {ds.name} — {ev.split}")
        yield f"evaluation run {run_id}"
    yield f"dataset {ds.name}{' (SYNTHETIC)' if ds.synthetic else ''}: " + \
        ", ".join(f"{s} {len(ds.splits[s].y)} images" for s in chosen)
    if temperature:
        fitted = temperature["temperature_nll_fit"]
        yield (f"temperature fitted on val by NLL: {fitted:.3f} ("
               f"{'would be applied' if temperature['temperature'] == fitted else 'not applied: it raises validation ECE'})")
    for ev in results:
        m = ev.metrics()
        p = ev.prefix
        yield (f"{ev.split}: accuracy {m[f'{p}_accuracy']:.4f}  macro-F1 {m[f'{p}_macro_f1']:.4f}"
               + "".join(f"  {kind}-TTA accuracy {m[f'{p}_tta_{kind}_accuracy']:.4f}" for kind in tta)
               + (f"  ECE {100 * m[f'{p}_calibration/ece']:.2f} % → {100 * m[f'{p}_calibration/ece_calibrated']:.2f} %"
                  f"  NLL {m[f'{p}_calibration/nll']:.3f} → {m[f'{p}_calibration/nll_calibrated']:.3f} at T"
                  if temperature else ""))
        yield ev.report()
