"""What a run records, independent of where it goes (no MLflow here): `runs` logs it to MLflow,
`files.FileTracker` writes it to a folder, `imports` replays the folder — one definition for all."""
from __future__ import annotations

import json


def param_value(value) -> str:
    """A param as MLflow stores it: a string, None as "none"."""
    return "none" if value is None else str(value)


def metric_prefix(split: str) -> str:
    """How a split's figures are named: "validation_…" (Keras's per-epoch val_accuracy keeps its own), "test_…"."""
    return "validation" if split == "val" else split


def dataset_record(ds) -> dict:
    """`data/dataset.json`: what was trained on, with per-split class counts."""
    return {"name": ds.name, "kind": ds.kind, "source": ds.source, "digest": ds.digest, "synthetic": ds.synthetic,
            "counts": ds.counts(), "notes": ds.notes}


def dataset_params(ds) -> dict:
    """The data as params; `<split>_images_digest` is what `compare` checks two runs' test images by."""
    return {"dataset": ds.name, "dataset_digest": ds.digest, "dataset_kind": ds.kind,
            **{f"n_{split}": len(part.y) for split, part in ds.splits.items()},
            **{images_digest_param(split): part.digest() for split, part in ds.splits.items()}}


def images_digest_param(split: str) -> str:
    return f"{split}_images_digest"


def input_tags(counts: dict, synthetic: bool) -> dict:
    """Tags of one split's MLflow dataset input."""
    return {"counts": json.dumps(counts), "images": str(sum(counts.values())), "synthetic": str(synthetic)}


PREDICTIONS = "predictions.csv"  # evaluation/<split>/predictions.csv: one row per image (`SplitEvaluation.predictions`)


def evaluation_artifacts(ev, title: str) -> dict:
    """Artifact path → text or matplotlib figure, for one split's evaluation."""
    base = f"evaluation/{ev.split}"
    out = {f"{base}/confusion_matrix.json": ev.confusion_json(),
           f"{base}/classification_report.txt": ev.report(),
           f"{base}/confident_mistakes.csv": ev.mistakes().to_csv(index=False),
           f"{base}/{PREDICTIONS}": ev.predictions().to_csv(index=False),
           f"{base}/confusion_matrix.png": ev.confusion_figure(title),
           f"{base}/reliability.png": ev.reliability_figure(f"calibration — {title}")}
    figures = {"confident_mistakes.png": ev.mistakes_figure(f"most confident mistakes — {title}"),
               "saliency.png": ev.saliency_figure(f"Grad-CAM — {title}")}
    out.update({f"{base}/{name}": fig for name, fig in figures.items() if fig is not None})
    return out
