#!/usr/bin/env bash
# Server CPU per request, two `encore` binaries side by side (issue 14's throughput work): each
# serves the same small CPU model in turn, under the same fixed-rate load from NEW's loadgen over
# a pool of connections, and the server's own CPU time (utime + stime from /proc/PID/stat) over
# the step is divided by the requests it answered. Rounds alternate OLD and NEW so drift in the
# host reaches both alike. The model is small (tiny synth, k = 16) so that the HTTP path, not
# scoring, is most of the cost.
#   bash scripts/serve-cpu-cost.sh OLD_BIN NEW_BIN [RATE] [SECONDS] [ROUNDS] [CONNECTIONS]
# OLD_FLAGS and NEW_FLAGS (environment) add serve flags to either (the same binary twice with
# NEW_FLAGS="--max-in-flight 1" prices a 503 against an answer). Prints one line per run and a
# summary (median µs per request answered, any status, NEW/OLD).
set -euo pipefail
OLD=$1 NEW=$2 RATE=${3:-3000} SECS=${4:-5} ROUNDS=${5:-3} CONNS=${6:-32}
W=$(mktemp -d "${TMPDIR:-/tmp}/serve-cpu-cost.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
"$NEW" -q synth --scale tiny --out "$W/raw" >/dev/null
"$NEW" -q prep "$W/raw" --out "$W/ds" >/dev/null
"$NEW" -q train "$W/ds" --out "$W/model" --device cpu --iterations 3 --factors 16 >/dev/null
TICK=$(getconf CLK_TCK)
cpu_s() { awk -v t="$TICK" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
port=18400
results=()
for r in $(seq 1 "$ROUNDS"); do
    for which in old new; do
        bin=$([[ $which == old ]] && echo "$OLD" || echo "$NEW")
        flags=$([[ $which == old ]] && echo "${OLD_FLAGS:-}" || echo "${NEW_FLAGS:-}")
        port=$((port + 1))
        # shellcheck disable=SC2086
        "$bin" serve "$W/model" --device cpu --addr "127.0.0.1:$port" $flags >"$W/serve.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
        # Warm-up (connections, caches), then the measured step.
        "$NEW" loadgen --url "http://127.0.0.1:$port" --dataset "$W/ds" --rates 500 --duration 1 \
            --connections "$CONNS" --json >/dev/null
        c0=$(cpu_s $pid)
        "$NEW" loadgen --url "http://127.0.0.1:$port" --dataset "$W/ds" --rates "$RATE" --duration "$SECS" \
            --connections "$CONNS" --json >"$W/load.json"
        c1=$(cpu_s $pid)
        kill -TERM $pid; wait $pid || true
        line=$(python3 - "$W/load.json" "$c0" "$c1" "$which" "$r" <<'EOF'
import json, sys
step = json.load(open(sys.argv[1]))[0]
c0, c1 = float(sys.argv[2]), float(sys.argv[3])
answered = step["ok"] + sum(step["error_kinds"]["status"].values())
us = (c1 - c0) * 1e6 / max(answered, 1)
print(f"{sys.argv[4]} round {sys.argv[5]}: {us:.1f} us server CPU per request; ok {step['ok']} "
      f"shed {step['shed']} of {step['scheduled']}, {step['answered_rate']:.0f}/s over {step['elapsed_s']:.2f} s, "
      f"p50 {step['latency']['p50_us']} us p99 {step['latency']['p99_us']} us, "
      f"errors {step['errors']}, client behind: {step['client_saturated']}")
EOF
)
        echo "$line"
        results+=("$line")
    done
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
v = {"old": [], "new": []}
for l in sys.stdin:
    w = l.split()
    v[w[0]].append(float(w[3]))
o, n = statistics.median(v["old"]), statistics.median(v["new"])
print(f"median server CPU per request: old {o:.1f} us, new {n:.1f} us, new/old {n / o:.2f}")'
