#!/usr/bin/env bash
# Server overhead at low load on a GPU host (device tool, carry .device-bin): LFM-1b-scale data,
# a GPU-trained model, then `encore bench overhead` (and CPU `bench infer`) once per setting.
#   bash scripts/overhead-bench.sh ['ENV=V ...' ...]   (one quoted group of variables per run;
#                                                      results in $OUT/overhead.txt)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lfm-common.sh"
OUT=${OUT:-overhead-bench-out}
mkdir -p "$OUT" "$W"
lfm_model
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt" || true
nproc | tee -a "$OUT/device.txt"
settings=("$@")
[[ ${#settings[@]} -eq 0 ]] && settings=("")
for s in "${settings[@]}"; do
    for dev in ${DEVICES:-cpu}; do
        echo "=== overhead [$s] --device $dev" | tee -a "$OUT/overhead.txt"
        env $s $B bench overhead $W/model --dataset $W/lfm --device $dev ${REQUESTS:+--requests $REQUESTS} 2>&1 | tee -a "$OUT/overhead.txt"
    done
    if [[ -n ${INFER:-} ]]; then
        echo "=== infer [$s]" | tee -a "$OUT/overhead.txt"
        env $s $B --quiet bench infer $W/model $W/lfm --backends "$INFER" 2>&1 | tee -a "$OUT/overhead.txt"
    fi
done
