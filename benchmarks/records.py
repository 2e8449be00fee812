"""The FER-2013 repeat sets' records kept in the repository (`benchmarks/results/runs/`), so that
answers which take more CPU-hours than one machine's life outlive it:

    python -m benchmarks.records load            # the kept sets into the current MLflow store (once)
    python -m benchmarks.records save            # the store's repeat sets back into the folder

`save` rebuilds the folder and swaps it in whole: a set is exported from the store (`fer-exp export-run`,
compact: the per-image test predictions, metrics but the system samples, curves, config, the seeds table)
only where the store has a seed the kept folder lacks; otherwise, and for every kept set the store does not
hold, the kept folder stays as it is (same run ids: loading into a new store and saving again changes
nothing, and saving from an empty store loses nothing). `load` imports each kept set whose key
(`fer.repeat_group`) the store lacks.
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
        kept, held = _kept(root), {}
        for run_id, name, key in exports.repeat_sets(experiment):  # per key, the parent with the most seeds
            _keep_fuller(held, key, (run_id, name), exports.finished_seeds(run_id))
        for key, ((run_id, name), store_seeds) in held.items():
            target = stage / re.sub(r"-\d+seeds", "", name)
            folder, seeds = kept.pop(key, (None, set()))
            if folder is not None and store_seeds <= seeds:
                shutil.copytree(folder, target)  # nothing new in the store: the record as it was
            else:
                exports.export_runs(run_id, target, KEPT, skip_metrics=("system/*",))
        for folder, _ in kept.values():  # sets this store never held
            if not (stage / folder.name).exists():
                shutil.copytree(folder, stage / folder.name)
        old = root.with_name(f".old-{root.name}")
        if root.exists():
            root.rename(old)
        stage.rename(root)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return sorted(root.iterdir()) if root.exists() else []


def _kept(root: Path) -> dict[str, tuple[Path, set[int]]]:
    """key → (the kept folder of that set with the most seeds, its seeds); a superseded copy is dropped."""
    out: dict[str, tuple[Path, set[int]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        metas = [json.loads((p / "run.json").read_text()) for p in folder.iterdir() if (p / "run.json").is_file()]
        keys = {m["tags"].get(T.REPEAT_GROUP) for m in metas if "parent_run_id" not in m} - {None}
        seeds = {int(m["tags"][T.REPEAT_SEED]) for m in metas if "parent_run_id" in m and T.REPEAT_SEED in m["tags"]}
        for key in keys:
            _keep_fuller(out, key, folder, seeds)
    return out


def _keep_fuller(best: dict, key: str, what, seeds: set[int]) -> None:
    """`best[key] = (what, seeds)` unless it holds a copy of the set with as many seeds already."""
    if key not in best or len(seeds) > len(best[key][1]):
        best[key] = (what, seeds)


def load(experiment: str = "fer2013", root: Path = ROOT) -> list[str]:
    """Import each kept set the store does not hold yet (by its key; of two folders of one set, the one
    with more seeds); the new parent run ids."""
    held = {key for _, _, key in exports.repeat_sets(experiment)}
    out = []
    for key, (folder, _) in sorted(_kept(root).items(), key=lambda item: item[1][0].name):
        if key in held:
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
