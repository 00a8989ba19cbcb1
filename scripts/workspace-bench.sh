#!/usr/bin/env bash
# After a restructure: `bench train` and `bench infer` at LFM-1b scale on the GPU host (device
# tool, carry .device-bin and, optionally, .device-bin-old with the previous main's encore), the
# new and the old binary alternated on the same data. Results in $OUT.
#   bash scripts/workspace-bench.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lfm-common.sh"
OUT=${OUT:-workspace-bench-out}
mkdir -p "$OUT" "$W"
lfm_model
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
bins=(new:.device-bin/encore)
[[ -x .device-bin-old/encore ]] && bins+=(old:.device-bin-old/encore)
for round in 1 2; do
    for nb in "${bins[@]}"; do
        name=${nb%%:*} bin=${nb#*:}
        echo "=== round $round: $name bench train"
        $bin bench train "$W/lfm" --runs gpu:cg,gpu:cholesky-fused,gpu:lu,cpu:cg --cpu-iterations 2 \
            --eval-users 2000 --json > "$OUT/train-$name-$round.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); [print(x["label"], "steady %.4f s" % x["steady_iteration_s"], "e2e %.2f s" % x["end_to_end_s"]) for x in r["runs"]]' "$OUT/train-$name-$round.json"
        echo "=== round $round: $name bench infer"
        $bin bench infer "$W/model" "$W/lfm" --backends gpu,gpu-fp32,cpu,cpu1 --json > "$OUT/infer-$name-$round.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); [print(x["backend"], "B=%d" % x["batch"], "%.3f ms" % x["median_ms"]) for x in r["runs"]]' "$OUT/infer-$name-$round.json"
    done
done
