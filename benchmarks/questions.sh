#!/usr/bin/env bash
# The issue-20 questions on real FER-2013, arm after arm, as the README gives them. Resumable across
# machines: the kept sets (benchmarks/results/runs/) are loaded into the store first and saved back every
# 5 minutes (finished seeds), so a later machine goes on with the seeds that are missing.
# Every arm names its precision: `auto` resolves per CPU, and a set is one resolved configuration, so a
# set begun on one kind of CPU would not be continued on another. The augmentation arms train in mixed
# bfloat16 (what `auto` picks on AVX512-BF16 / AMX CPUs: `custom` 80 s an epoch there); a CPU that only
# emulates bf16 (AVX2: over 4x slower even in float32) skips them, saying so, and leaves them to the next.
#   bash benchmarks/questions.sh            # MLFLOW_TRACKING_URI: the store to use [sqlite:///mlflow.db]
set -u
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
native_bf16=$(python -c "from fer_experiments.training import precision as p; print(p.resolve('auto'))")
python -m benchmarks.records load
(while sleep 300; do python -m benchmarks.records save > /dev/null; done) &
trap 'kill $!; python -m benchmarks.records save' EXIT
for arm in "--preset fer_compact_fast --precision float32" "--preset fer_compact_fast --precision mixed_bfloat16" \
           "--preset custom --precision mixed_bfloat16" "--preset custom_aug --precision mixed_bfloat16"; do
  if [[ $arm == *"custom"*mixed_bfloat16 && $native_bf16 != mixed_bfloat16 ]]; then
    echo "skipped ($arm): this CPU has no native bfloat16 (precision=auto is $native_bf16 here)"; continue
  fi
  # shellcheck disable=SC2086
  fer-exp train --data ../shared/fer2013 --mlflow-experiment fer2013 $arm --repeats 3
done
