#!/usr/bin/env bash
# Multi-GPU training (issue 18) on a GPU host (device tool, carry .device-bin, built by
# `bash scripts/gpu-test.sh build`): on the LFM-1b-scale synthetic set (scripts/lfm-common.sh,
# made on the host and reused while it stays up), $ITER iterations (default 15) each of
#   single      encore train --device gpu                 the plain single-GPU trainer
#   nccl1       encore train --gpus 1                     the NCCL path, a world of one
#   host2       encore train --ranks 2 --device gpu       2 ranks sharing the GPU, host-staged
#   host2r      ... --gram reduced                        the same with the reduced Gram
#   ncclN       encore train --gpus N (N = 2, 4, 8 up to the GPUs visible), and nccl2r reduced
#   kill        --gpus 2, rank 1 killed mid-training: how fast rank 0 stops, and its message
# Per case: exit code, wall time (end to end: load, prepare, train, save), the trainer's own
# seconds, the steady iteration (mean of iterations 2..), device memory per rank (peak per
# process, nvidia-smi), rank 0's bytes received per iteration and the model's prediction, and
# whether the factor files equal the single-GPU ones byte for byte. Writes
# $OUT/dist-gpu-bench.json and .txt (and the logs, in $OUT/dist-gpu-bench-logs.tgz). A case that
# would pass the time budget ($BUDGET s, default 420) is skipped and says so: the whole run
# stays under 8 minutes on one H200 (data ~1 min, each case well under a minute).
#   bash scripts/dist-gpu-bench.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lfm-common.sh"
FINAL=${OUT:-dist-gpu-bench-out}
R=$W/dist-gpu-bench
BUDGET=${BUDGET:-420}
ITER=${ITER:-15}
# NVLink multicast stays off (encore also sets it for the ranks it starts when unset).
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
rm -rf "$R"
mkdir -p "$R" "$W" "$FINAL"
START=$SECONDS
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
echo "dist-gpu-bench: $(nproc) cores, $GPUS GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
python3 -c 'import nvidia.nccl, os; print("nccl package:", list(nvidia.nccl.__path__))' 2>/dev/null || echo "nccl package: not importable"
lfm_data
echo "dist-gpu-bench: data ready after $((SECONDS - START)) s"
left() { echo $((BUDGET - (SECONDS - START))); }

# case NAME NEED_SECONDS ARGS...: one training run into $R/NAME.{log,smi,meta}.
case_run() {
    local name=$1 need=$2
    shift 2
    if (($(left) < need)); then
        echo "$name: skipped, $(left) s of the budget left (needs ~$need)" | tee "$R/$name.skipped"
        return 0
    fi
    nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 250 \
        >"$R/$name.smi" 2>/dev/null &
    local smi=$! t0 t1 rc=0
    t0=$(date +%s.%N)
    timeout "$(left)" "$B" train "$W/lfm" --out "$R/$name" --force --iterations "$ITER" \
        --dist-timeout 60 "$@" >"$R/$name.log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    kill "$smi" 2>/dev/null || true
    wait "$smi" 2>/dev/null || true
    echo "{\"rc\": $rc, \"wall\": $(awk "BEGIN { print $t1 - $t0 }"), \"args\": \"$*\"}" >"$R/$name.meta"
    echo "$name: rc $rc, $(awk "BEGIN { print $t1 - $t0 }") s: $(grep -E '^train: .*total' "$R/$name.log" | tail -n 1 || tail -n 2 "$R/$name.log")"
}

case_run single 60 --device gpu
case_run nccl1 60 --gpus 1
case_run host2 120 --ranks 2 --device gpu
case_run host2r 120 --ranks 2 --device gpu --gram reduced
for n in 2 4 8; do
    if ((GPUS >= n)); then
        case_run "nccl$n" 60 --gpus "$n"
    fi
done
if ((GPUS >= 2)); then
    case_run nccl2r 60 --gpus 2 --gram reduced
fi

# A rank killed mid-training: rank 0 must stop with a message within seconds.
if ((GPUS >= 2)) && (($(left) > 90)); then
    "$B" train "$W/lfm" --out "$R/kill" --force --iterations 100000 --gpus 2 \
        --dist-timeout 60 >"$R/kill.log" 2>&1 &
    lead=$!
    # Until training runs (the progress lines start), at most 80 s.
    for _ in $(seq 1 400); do
        grep -q 'iteration' "$R/kill.log" 2>/dev/null && break
        sleep 0.2
    done
    # The lead is rank 0 (re-executing itself for NCCL keeps its pid); its child is rank 1.
    victim=$(pgrep -P "$lead" | head -n 1 || true)
    t0=$(date +%s.%N)
    rc=0
    if [[ -n $victim ]]; then
        kill -9 "$victim" || true
        wait "$lead" || rc=$?
        t1=$(date +%s.%N)
        echo "{\"rc\": $rc, \"seconds_to_stop\": $(awk "BEGIN { print $t1 - $t0 }"), \"killed\": $victim}" >"$R/kill.meta"
    else
        kill "$lead" || true
        wait "$lead" || true
        echo '{"error": "no child rank found to kill"}' >"$R/kill.meta"
    fi
    echo "kill: $(cat "$R/kill.meta"); last words: $(tail -n 2 "$R/kill.log")"
fi

python3 - "$R" "$FINAL" <<'EOF'
import json, os, sys, glob, filecmp
R, FINAL = sys.argv[1], sys.argv[2]
out = {"cases": {}}
ref = os.path.join(R, "single")
for meta in sorted(glob.glob(os.path.join(R, "*.meta"))):
    name = os.path.basename(meta)[:-5]
    c = json.load(open(meta))
    d = os.path.join(R, name)
    log = open(os.path.join(R, name + ".log")).read() if os.path.exists(os.path.join(R, name + ".log")) else ""
    c["log_tail"] = log.strip().splitlines()[-3:]
    mj = os.path.join(d, "model.json")
    if os.path.exists(mj):
        m = json.load(open(mj))
        its = [i["seconds"] for i in m.get("iterations", [])]
        c["train_seconds"] = m.get("train_seconds")
        c["first_iteration"] = its[0] if its else None
        c["steady_iteration"] = sum(its[1:]) / len(its[1:]) if len(its) > 1 else None
        c["device"] = m.get("device")
        if name != "single" and os.path.exists(os.path.join(ref, "model.json")):
            c["factors_identical_to_single"] = all(
                filecmp.cmp(os.path.join(ref, f), os.path.join(d, f), shallow=False)
                for f in ("user_factors.npy", "item_factors.npy"))
            if not c["factors_identical_to_single"]:
                try:
                    import numpy as np
                    for f in ("user_factors.npy", "item_factors.npy"):
                        a, b = np.load(os.path.join(ref, f)), np.load(os.path.join(d, f))
                        c["max_rel_diff_" + f[:4]] = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
                except Exception as e:
                    c["diff_error"] = str(e)
    for line in log.splitlines():
        if line.startswith("train-details: "):
            det = json.loads(line[len("train-details: "):])
            dist = det.get("dist") or {}
            c["rank0_bytes_received_per_iteration"] = dist.get("bytes_received_last_iteration")
            c["rank0_device_bytes_allocated"] = det.get("device_bytes")
            c["device_used_bytes_after_setup"] = det.get("device_used_bytes")
            c["resident"] = det.get("resident")
            c["comm"] = dist.get("comm")
            c["world"] = dist.get("world")
            c["half_step_ms_last"] = det.get("half_step_ms")
        if line.startswith("train: ") and "all-gather" in line:
            c["predicted_all_gather"] = line.split("all-gather", 1)[1].strip()
    smi = os.path.join(R, name + ".smi")
    if os.path.exists(smi):
        peak = {}
        for l in open(smi):
            p = [x.strip() for x in l.split(",")]
            if len(p) == 2 and p[1].isdigit():
                peak[p[0]] = max(peak.get(p[0], 0), int(p[1]))
        c["peak_device_mib_per_process"] = peak
    out["cases"][name] = c
s = out["cases"].get("single", {})
for name, c in out["cases"].items():
    if c.get("rc") != 0 or s.get("rc") != 0:
        continue
    if s.get("steady_iteration") and c.get("steady_iteration"):
        c["steady_speedup_vs_single"] = s["steady_iteration"] / c["steady_iteration"]
    if s.get("wall") and c.get("wall") and name != "kill":
        c["end_to_end_speedup_vs_single"] = s["wall"] / c["wall"]
json.dump(out, open(os.path.join(FINAL, "dist-gpu-bench.json"), "w"), indent=1)
with open(os.path.join(FINAL, "dist-gpu-bench.txt"), "w") as f:
    for name, c in out["cases"].items():
        f.write(f"{name}: " + json.dumps({k: v for k, v in c.items() if k != "log_tail"}) + "\n")
        for l in c.get("log_tail", []):
            f.write(f"    {l}\n")
print(open(os.path.join(FINAL, "dist-gpu-bench.txt")).read())
EOF
for f in "$R"/*.skipped; do [[ -e $f ]] && cat "$f"; done
tar -czf "$FINAL/dist-gpu-bench-logs.tgz" -C "$R" $(cd "$R" && ls *.log *.smi *.meta 2>/dev/null) || true
echo "dist-gpu-bench: done in $((SECONDS - START)) s"
