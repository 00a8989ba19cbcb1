#!/usr/bin/env bash
# Serving past saturation on a GPU host (issue 14; device tool, carry .device-bin): LFM-1b-scale
# data and a GPU-trained model (scripts/lfm-common.sh, reused while the host stays up), then
# `encore serve` and `encore loadgen` on the same host:
#   1. GPU backend, pool of $POOL connections: a rate ramp through and past saturation, an
#      unloaded step right after the heaviest one (recovery), RSS before and after.
#   2. GPU backend, open loop (a task and, when needed, a new connection per request, as the
#      issue's numbers were taken) at a few rates, for comparison.
#   3. Live reload under $RELOAD_RATE req/s: POST /admin/reload twice during one step.
#   4. CPU backend: its own, shorter ramp.
# Every loadgen step's JSON (rates over real elapsed time, errors by kind, 503 latencies, the
# client's lag and CPU) and the servers' RSS go into $OUT/overload.json; every raw file (loadgen
# JSON and logs, server logs, /metrics at the end of each server) into $OUT/overload-bench.tgz
# (the device tool brings back only a few files per call). A phase that would pass the time budget ($BUDGET s, default 420) is skipped and
# says so, so the whole run stays under 8 minutes.
#   bash scripts/overload-bench.sh            (knobs below, as environment variables)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lfm-common.sh"
FINAL=${OUT:-overload-bench-out}
OUT=$W/overload-bench
BUDGET=${BUDGET:-420}
GPU_RATES=${GPU_RATES:-10000,25000,50000,75000,100000,125000,150000,200000}
OPEN_RATES=${OPEN_RATES:-25000,50000,100000}
CPU_RATES=${CPU_RATES:-2000,4000,8000,16000,32000}
STEP=${STEP:-5}
POOL=${POOL:-2048}
GPU_IN_FLIGHT=${GPU_IN_FLIGHT:-256}
CPU_IN_FLIGHT=${CPU_IN_FLIGHT:-64}
RELOAD_RATE=${RELOAD_RATE:-20000}
# The "GPU" phases' device (cpu lets the script itself be tried on a host without a GPU).
GPU_DEVICE=${GPU_DEVICE:-gpu}
# Which phases run (a comma-separated subset of gpu,open,cpu).
PHASES=${PHASES:-gpu,open,cpu}
phase() { [[ ,$PHASES, == *,$1,* ]]; }
rm -rf "$OUT"
mkdir -p "$OUT" "$W" "$FINAL"
START=$SECONDS
echo "overload-bench: $(nproc) cores, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
lfm_model
echo "overload-bench: data and model ready after $((SECONDS - START)) s"

left() { echo $((BUDGET - (SECONDS - START))); }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
wait_up() {
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0
        sleep 0.2
    done
    return 1
}
# loadgen NAME PORT RATES [ARGS...]: one loadgen run into $OUT/NAME.json.
loadgen() {
    local name=$1 port=$2 rates=$3
    shift 3
    $B loadgen --url "http://127.0.0.1:$port" --dataset "$W/lfm" --rates "$rates" \
        --duration "$STEP" --timeout 5 --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" || true
    python3 - "$OUT/$name.json" "$name" <<'EOF'
import json, sys
try:
    steps = json.load(open(sys.argv[1]))
except Exception as e:
    print(sys.argv[2], "no result:", e); sys.exit(0)
for r in steps:
    l, s = r["latency"], r["shed_latency"]
    print(f"{sys.argv[2]:>10} {r['target_rate']:>8.0f}/s: ok {r['achieved_rate']:>8.0f}/s over {r['elapsed_s']:.2f} s, "
          f"shed {r['shed']:>7} (p99 {s['p99_us']} us), errors {r['errors']} {r['error_kinds']['status'] if r['errors'] else ''}, "
          f"p50 {l['p50_us']} p95 {l['p95_us']} p99 {l['p99_us']} us (from send: p99 {r.get('service_latency', {}).get('p99_us')}, 503 p99 {r.get('shed_service_latency', {}).get('p99_us')}), client {r['client_cpu_cores'] or 0:.1f} cores"
          f"{' BEHIND' if r['client_saturated'] else ''}")
EOF
}
# serve NAME DEVICE PORT IN_FLIGHT: starts a server, records its RSS at start in $OUT/NAME.rss.
serve() {
    $B serve "$W/model" --dataset "$W/lfm" --device "$2" --addr "127.0.0.1:$3" \
        --max-in-flight "$4" >"$OUT/$1.log" 2>&1 &
    SERVER=$!
    trap 'kill "$SERVER" 2>/dev/null || true' EXIT
    wait_up "$3"
    sleep 0.5
    # Answered, and by this server (not one left on the port).
    kill -0 "$SERVER" 2>/dev/null || { echo "overload-bench: the server did not start (see $1.log)"; cat "$OUT/$1.log"; exit 1; }
    echo "start $(rss_kb $SERVER)" >"$OUT/$1.rss"
}
stop() {
    echo "end $(rss_kb $SERVER)" >>"$OUT/$1.rss"
    curl -s "http://127.0.0.1:$2/metrics" >"$OUT/$1-metrics.txt" || true
    kill -TERM "$SERVER"
    wait "$SERVER" || true
}

# 1 + 3. GPU, pool mode ramp, recovery, reload.
if phase gpu && (($(left) > 150)); then
    serve gpu "$GPU_DEVICE" 8080 "$GPU_IN_FLIGHT"
    loadgen gpu-warmup 8080 5000 --connections "$POOL"
    loadgen gpu-unloaded 8080 1000 --connections 64
    loadgen gpu-pool 8080 "$GPU_RATES" --connections "$POOL"
    echo "after-ramp $(rss_kb $SERVER)" >>"$OUT/gpu.rss"
    # Recovery: an unloaded step straight after the heaviest one.
    loadgen gpu-recovery 8080 1000 --connections 64
    sleep 2
    echo "after-recovery $(rss_kb $SERVER)" >>"$OUT/gpu.rss"
    if (($(left) > 90)); then
        # Reload the same model directory twice during one step (the whole path: load,
        # validation, a new batcher, the swap; the version stays the same).
        (
            sleep 3
            curl -s -XPOST "http://127.0.0.1:8080/admin/reload" >"$OUT/reload-1.json"
            sleep 3
            curl -s -XPOST "http://127.0.0.1:8080/admin/reload" >"$OUT/reload-2.json"
        ) &
        reloader=$!
        STEP=$((STEP * 3)) loadgen gpu-reload 8080 "$RELOAD_RATE" --connections "$POOL"
        wait $reloader || true
        STEP=$((STEP * 3)) loadgen gpu-noreload 8080 "$RELOAD_RATE" --connections "$POOL"
    else
        echo "overload-bench: skipped the reload phase (time budget)"
    fi
    stop gpu 8080
else
    echo "overload-bench: skipped the GPU phases (time budget)"
fi

# 2. GPU, open loop.
if phase open && (($(left) > 60)); then
    serve gpu-open "$GPU_DEVICE" 8080 "$GPU_IN_FLIGHT"
    loadgen gpu-open 8080 "$OPEN_RATES"
    stop gpu-open 8080
else
    echo "overload-bench: skipped the open-loop phase (time budget)"
fi

# 4. CPU backend.
if phase cpu && (($(left) > 40)); then
    serve cpu cpu 8081 "$CPU_IN_FLIGHT"
    loadgen cpu-unloaded 8081 500 --connections 64
    loadgen cpu-pool 8081 "$CPU_RATES" --connections "$POOL"
    loadgen cpu-recovery 8081 500 --connections 64
    stop cpu 8081
else
    echo "overload-bench: skipped the CPU phase (time budget)"
fi

python3 - "$OUT" "$SECONDS" "$START" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
res = {"elapsed_s": int(sys.argv[2]) - int(sys.argv[3]), "steps": {}, "rss_kb": {}, "reloads": []}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(f)[:-5]
    if name == "overload":
        continue
    try:
        v = json.load(open(f))
    except Exception:
        continue
    (res["reloads"].append(v) if name.startswith("reload-") else res["steps"].__setitem__(name, v))
for f in glob.glob(os.path.join(out, "*.rss")):
    res["rss_kb"][os.path.basename(f)[:-4]] = dict(l.split() for l in open(f) if l.strip())
json.dump(res, open(os.path.join(out, "overload.json"), "w"), indent=1)
print("overload-bench: wrote", os.path.join(out, "overload.json"), "after", res["elapsed_s"], "s")
EOF
cp "$OUT/overload.json" "$FINAL/"
tar -C "$W" -czf "$FINAL/overload-bench.tgz" overload-bench
