#!/usr/bin/env bash
# Issue 15's evidence for `encore tune` and for cg's exact short-row path, on the dev machine.
#
# 1. `encore tune` on HetRec, timed end to end (search, final training, scoring on valid.npz):
#    the default search; ν fixed at 0 (Encore's defaults are then outside the space, so the
#    search has to find its configuration itself); ν searched over 0, 0.5 and 1 under a time
#    budget. The old defaults (λ 0.1, α 2, ν 0) are trained and scored beside, the same way.
# 2. cg's rows with at most --cg-steps tracks, solved exactly (Woodbury) or by CG: nDCG@10 on
#    valid.npz and train_seconds, ROUNDS interleaved rounds, at Encore's defaults and at the old
#    defaults, on HetRec, HetRec with every track kept (--min-track-users 1: many tracks with
#    one listener) and MovieLens 100K.
# The load average is logged before and after each part (other builds share the machine).
# SHORT_DATASETS (default "ds-hetrec ds-hetrec-short ds-ml100k") and SHORT_AT (default
# "defaults old-defaults") choose the part-2 runs, e.g. SHORT_DATASETS=ds-medium SHORT_AT=defaults.
# For timings on a shared machine, run the whole script at high priority (nice -n -10).
#
#   ENCORE=target/release/encore DATA=dir-with-ds-* OUT=dir bash scripts/tune-evidence.sh
#
# DATA holds ds-hetrec and ds-ml100k as for scripts/compare-real.sh, and
#   encore prep /path/to/hetrec2011-lastfm-2k --format hetrec --min-track-users 1 \
#       --out $DATA/ds-hetrec-short
set -euo pipefail
ENCORE=${ENCORE:-target/release/encore}
DATA=${DATA:?set DATA to the directory holding ds-hetrec, ds-hetrec-short, ds-ml100k}
OUT=${OUT:-tune-evidence-out}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
E=("$ENCORE" --threads "$THREADS")
# QUIET=L: before each measurement wait (up to QUIET_WAIT seconds, default 900) until the
# 1-minute load average is below L; the waits and the loads are logged either way.
quiet() {
    [[ -n ${QUIET:-} ]] || return 0
    local waited=0
    while python3 -c 'import os, sys; sys.exit(os.getloadavg()[0] < float(sys.argv[1]))' "$QUIET" &&
        ((waited < ${QUIET_WAIT:-900})); do
        sleep 10
        waited=$((waited + 10))
    done
    echo "    waited ${waited} s for load < $QUIET" >> "$OUT/load.txt"
}
load() { echo "$1: $(uptime)" | tee -a "$OUT/load.txt"; }

if [[ ${SKIP_TUNE:-0} != 1 ]]; then
    load "old defaults"
    "${E[@]}" -q train "$DATA/ds-hetrec" --out "$OUT/old-defaults-model" --force \
        --regularization 0.1 --alpha 2 --reg-exponent 0 > /dev/null
    "${E[@]}" -q eval "$DATA/ds-hetrec" "$OUT/old-defaults-model" --json > "$OUT/old-defaults-eval.json"
    for spec in "default:" "nu0:--reg-exponent 0" \
        "nu-searched:--reg-exponent 0,0.5,1 --trials 90 --time-budget 40"; do
        name=${spec%%:*} flags=${spec#*:}
        quiet
        load "tune $name"
        # shellcheck disable=SC2086 # flags is a list of words
        /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$OUT/tune-$name.time" \
            "${E[@]}" tune "$DATA/ds-hetrec" --out "$OUT/tune-$name" --force $flags \
            > "$OUT/tune-$name.txt" 2> "$OUT/tune-$name.err"
        load "  after"
        tail -12 "$OUT/tune-$name.txt"
        cat "$OUT/tune-$name.time"
    done
fi

if [[ ${SKIP_SHORT:-0} != 1 ]]; then
    results="$OUT/short-rows.jsonl"
    : > "$results"
    declare -A at_flags=([defaults]="" [old-defaults]="--regularization 0.1 --alpha 2 --reg-exponent 0")
    for ds in ${SHORT_DATASETS:-ds-hetrec ds-hetrec-short ds-ml100k}; do
        for name in ${SHORT_AT:-defaults old-defaults}; do
            flags=${at_flags[$name]}
            quiet
            load "short rows $ds $name"
            for round in $(seq "$ROUNDS"); do
                order=(exact cg)
                ((round % 2 == 0)) && order=(cg exact)
                for sr in "${order[@]}"; do
                    model="$OUT/short-model"
                    # shellcheck disable=SC2086
                    "${E[@]}" -q train "$DATA/$ds" --out "$model" --force --solver cg \
                        --cg-short-rows "$sr" $flags > /dev/null
                    ndcg=$("${E[@]}" -q eval "$DATA/$ds" "$model" --json |
                        python3 -c 'import json,sys; print(json.load(sys.stdin)["model"]["ndcg"])')
                    python3 -c 'import json,sys
m = json.load(open(sys.argv[1] + "/model.json"))
print(json.dumps({"dataset": sys.argv[2], "at": sys.argv[3], "short_rows": sys.argv[4],
                  "round": int(sys.argv[5]), "train_seconds": m["train_seconds"],
                  "ndcg": float(sys.argv[6])}))' "$model" "$ds" "$name" "$sr" "$round" "$ndcg" >> "$results"
                done
            done
            load "  after"
        done
    done
    python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r["dataset"], r["at"]) for r in rows})
print(f"{'dataset':<16}{'at':<14}{'exact nDCG':>11}{'cg nDCG':>9}{'ratio':>7}"
      f"{'exact s':>9}{'cg s':>8}{'cg/exact':>9}")
for ds, at in keys:
    sel = {sr: [r for r in rows if r["dataset"] == ds and r["at"] == at and r["short_rows"] == sr]
           for sr in ("exact", "cg")}
    nd = {sr: statistics.median(r["ndcg"] for r in v) for sr, v in sel.items()}
    ts = {sr: statistics.median(r["train_seconds"] for r in v) for sr, v in sel.items()}
    print(f"{ds:<16}{at:<14}{nd['exact']:>11.4f}{nd['cg']:>9.4f}{nd['exact'] / nd['cg']:>7.3f}"
          f"{ts['exact']:>9.3f}{ts['cg']:>8.3f}{ts['cg'] / ts['exact']:>9.2f}")
EOF
fi
