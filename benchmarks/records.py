"""The FER-2013 repeat sets' records kept in the repository (`benchmarks/results/runs/`), so that
answers which take more CPU-hours than one machine's life outlive it:

    python -m benchmarks.records load            # the kept sets into the current MLflow store (once)
    python -m benchmarks.records save            # the store's repeat sets back into the folder

`save` rebuilds the folder from the store (`fer-exp export-run` of every repeat set of the experiment,
compact: the per-image test predictions, metrics but the system samples, curves, config, the seeds table) and
swaps it in whole; `load` imports each kept set whose key (`fer.repeat_group`) the store lacks.
`benchmarks/questions.sh` runs the open questions with both around the training.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import tempfile
from pathlib import Path

from fer_experiments.tracking import exports, imports
from fer_experiments.tracking import tags as T

ROOT = Path(__file__).parent / "results" / "runs"
KEPT = ("evaluation/test/predictions.csv", "evaluation/metrics.json", "evaluation/*/confusion_matrix.json",
        "data/dataset.json", "config.json", "history/*.csv", "repeats/*")


def save(experiment: str = "fer2013", root: Path = ROOT) -> list[Path]:
    """Every repeat set of `experiment` (finished seeds) into `root/<parent name without its seed count>/`."""
    root.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".runs-", dir=root.parent))
    stage.chmod(0o755)  # mkdtemp's is the owner's only: this is a folder of the checkout
    try:
        for run_id, name, _ in exports.repeat_sets(experiment):
            exports.export_runs(run_id, stage / re.sub(r"-\d+seeds", "", name), KEPT,
                                skip_metrics=("system/*",))
        old = root.with_name(f".old-{root.name}")
        if root.exists():
            root.rename(old)
        stage.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return sorted(root.iterdir()) if root.exists() else []


def load(experiment: str = "fer2013", root: Path = ROOT) -> list[str]:
    """Import each kept set the store does not hold yet (by its key); the new parent run ids."""
    held = {key for _, _, key in exports.repeat_sets(experiment)}
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        metas = [json.loads((p / "run.json").read_text()) for p in folder.iterdir() if (p / "run.json").is_file()]
        if {m["tags"].get(T.REPEAT_GROUP) for m in metas if "parent_run_id" not in m} & held:
            continue
        new = [run_id for _, run_id in imports.import_runs([folder], experiment=experiment)]
        out.append(new[0])  # the set's parent, imported first
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("save", "load"))
    ap.add_argument("--experiment", default="fer2013")
    args = ap.parse_args(argv)
    if args.action == "save":
        for folder in save(args.experiment):
            print(f"kept {folder}")
    else:
        for run_id in load(args.experiment):
            print(f"loaded repeat set {run_id}")


if __name__ == "__main__":
    main()
