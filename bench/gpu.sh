#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go, on a machine where `tl` (and torch) are installed and
# the `minilm` and `rotten_tomatoes` assets are pulled (`tl pull minilm rotten_tomatoes`):
#
#   bash bench/gpu.sh tests [OUT]   the gpu-marked tests, then torch-backend tests that train on the GPU
#   bash bench/gpu.sh bench [OUT]   compare.py's torch sections on the GPU: bf16 (3 repeats) and fp32
#                                   (1 repeat), one epoch each; inference in bf16
#   bash bench/gpu.sh all [OUT]     both
#
# OUT (default bench/results) receives gpu-tests.log and compare-gpu-{bf16,fp32,predict}.{json,md}; each
# part writes its files as soon as it ends, so a part cut short keeps the ones before it.
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${2:-bench/results}
mkdir -p "$out"
PY=${PYTHON:-python3}
export TOKENIZERS_PARALLELISM=false TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
status=0

if [[ $what == tests || $what == all ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu-tests.log"
  # -m gpu: the CUDA precisions, loss scaling, the NVML probe (NCCL needs two GPUs: skipped on one);
  # then the torch backend's training tests, which take the GPU by themselves when one is visible
  "$PY" -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider -rA 2>&1 | tee -a "$out/gpu-tests.log" || status=1
  "$PY" -m pytest tests/test_training.py tests/test_max_steps.py tests/test_strategies.py tests/test_families.py \
    -k "not tensorflow" -n "${TL_TEST_WORKERS:-4}" --dist loadfile -q -p no:cacheprovider -rfE 2>&1 | tee -a "$out/gpu-tests.log" || status=1
fi

if [[ $what == bench || $what == all ]]; then
  work=$(mktemp -d)  # compare.py's work files stay there; only its results files go to OUT
  common=(--device cuda --full --threads 4 --out "$work")
  part() {  # NAME ARGS...: one compare.py run, its NAME.json and NAME.md copied to OUT as soon as it ends
    local name=$1; shift
    "$PY" bench/compare.py "${common[@]}" --name "$name" "$@" || status=1
    cp "$work/$name.json" "$work/$name.md" "$out"/ 2>/dev/null || status=1
  }
  part compare-gpu-bf16 --precision bf16 --only peak train-torch --repeats 3
  part compare-gpu-fp32 --precision fp32 --only peak train-torch --repeats 1
  part compare-gpu-predict --precision bf16 --only predict --repeats 1
  rm -rf "$work"
fi
exit $status
