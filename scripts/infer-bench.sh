#!/usr/bin/env bash
# Inference benchmark on a GPU host (device tool, carry .device-bin): LFM-1b-scale data, a
# GPU-trained model, then `encore bench infer` over every backend, pruned and not.
#   bash scripts/infer-bench.sh [BACKENDS]   (results in $OUT)
set -euo pipefail
B=.device-bin/encore
OUT=${OUT:-infer-bench-out}
W=/tmp/w
mkdir -p "$OUT" "$W"
if [[ ! -f $W/model/item_factors.npy ]]; then
    $B --quiet synth --scale lfm1b --out $W/raw
    $B --quiet prep $W/raw --out $W/lfm
    rm -rf $W/raw
    $B --quiet train $W/lfm --out $W/model --device gpu --force | tail -n 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
$B bench infer $W/model $W/lfm --backends "${1:-gpu,gpu-fp32,gpu-noprune,cpu,cpu1,cpu-noprune}" \
    --out "$W/infer" | tee "$OUT/infer.txt"
cp "$W/infer/results.json" "$OUT/infer-results.json"
cp "$W/infer/infer.svg" "$OUT/infer.svg"
