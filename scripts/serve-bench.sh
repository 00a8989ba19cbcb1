#!/usr/bin/env bash
# Serving benchmark on a GPU host (device tool, carry .device-bin): LFM-1b-scale data, a GPU-trained
# model, then `encore serve` on the GPU and on the CPU, each under an open-loop rate ramp.
#   bash scripts/serve-bench.sh GPU_RATES CPU_RATES SECONDS   (results in $OUT)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lfm-common.sh"
FINAL=${OUT:-serve-bench-out}
OUT=$W/serve-bench
mkdir -p "$OUT" "$W"
lfm_model
wait_up() { for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.5; done; return 1; }
for dev in gpu cpu; do
    port=$([[ $dev == gpu ]] && echo 8080 || echo 8081)
    rates=$([[ $dev == gpu ]] && echo "$1" || echo "$2")
    $B serve $W/model --dataset $W/lfm --device $dev --addr 127.0.0.1:$port --max-batch 1024 > "$OUT/serve-$dev.log" 2>&1 &
    pid=$!
    wait_up $port
    $B loadgen --url http://127.0.0.1:$port --dataset $W/lfm --rates "$rates" --duration "$3" --json > "$OUT/load-$dev.json" 2> "$OUT/load-$dev.err" || true
    curl -s http://127.0.0.1:$port/metrics > "$OUT/metrics-$dev.txt" || true
    kill -TERM $pid; wait $pid || true
    python3 -c "
import json,sys
for r in json.load(open('$OUT/load-$dev.json')):
    l=r['latency']; print('$dev', 'rate %8.0f sent %8.0f ok %8.0f shed %6d err %4d p50 %7d p95 %7d p99 %7d us' % (r['target_rate'], r['sent_rate'], r['achieved_rate'], r['shed'], r['errors'], l['p50_us'], l['p95_us'], l['p99_us']))"
done
# One archive: the device tool brings back only a few files per call.
mkdir -p "$FINAL" && tar -C /tmp/w -czf "$FINAL/serve-bench.tgz" serve-bench
