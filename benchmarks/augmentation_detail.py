"""The augmentation question's figures that `fer-exp compare` does not give (it tests accuracy only),
from the kept records of the two 3-seed sets (`benchmarks/results/runs/`): the macro-F1 of each arm with
a Welch t-test over the seeds, and the per-class test recall each run logged, mean over the seeds.

    python -m benchmarks.augmentation_detail
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from scipy import stats

ROOT = Path(__file__).parent / "results" / "runs"
ARMS = ("custom-precision=mixed_bfloat16-fer2013", "custom_aug-precision=mixed_bfloat16-fer2013")


def main(root: Path = ROOT) -> None:
    f1 = {arm: pd.read_csv(next((root / arm).glob("*/artifacts/repeats/seeds.csv"))).test_macro_f1 for arm in ARMS}
    t = stats.ttest_ind(f1[ARMS[1]], f1[ARMS[0]], equal_var=False)
    print("test macro-F1 (mean over seeds):", {arm: round(float(v.mean()), 3) for arm, v in f1.items()},
          f"augmented − plain: t = {t.statistic:.2f}, p = {t.pvalue:.3f} (Welch, {len(f1[ARMS[1]])} vs {len(f1[ARMS[0]])})")
    for arm in ARMS:
        runs = [json.loads(f.read_text()) for f in sorted((root / arm).glob("*/artifacts/evaluation/metrics.json"))]
        recall = pd.DataFrame([{k.rsplit("_", 1)[1]: v for k, v in m.items() if k.startswith("test_per_class/recall_")}
                               for m in runs]).mean()
        print(f"{arm}: test recall % over {len(runs)} seeds:", ", ".join(f"{c} {100 * r:.1f}" for c, r in recall.items()))

if __name__ == "__main__":
    main()
