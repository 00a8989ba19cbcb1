#!/usr/bin/env bash
# Inference benchmark on a GPU host (device tool, carry .device-bin): LFM-1b-scale data, a
# GPU-trained model, then `encore bench infer` over every backend, pruned and not.
#   bash scripts/infer-bench.sh [BACKENDS]   (results in $OUT)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lfm-common.sh"
OUT=${OUT:-infer-bench-out}
mkdir -p "$OUT" "$W"
lfm_model
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
$B bench infer $W/model $W/lfm --backends "${1:-gpu,gpu-fp32,gpu-noprune,cpu,cpu1,cpu-noprune}" \
    --out "$W/infer" | tee "$OUT/infer.txt"
cp "$W/infer/results.json" "$OUT/infer-results.json"
cp "$W/infer/infer.svg" "$OUT/infer.svg"
