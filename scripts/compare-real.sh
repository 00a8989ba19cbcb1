#!/usr/bin/env bash
# Issue 15's CPU evidence on the dev machine: Encore against implicit 0.7.x (scripts/
# compare_implicit.py: equal threads, one BLAS thread for implicit, fit time alone, interleaved
# rounds) on HetRec 2011, MovieLens 100K (ratings ≥ 3.5) and the synthetic `medium` set, at the
# same hyper-parameters (ν = 0) for cg and cholesky and at each library's defaults; then the
# configurations of the issue-3 table (λ 0.1, α 2), whose implicit numbers were taken with
# N BLAS threads inside implicit's N threads. The load average is logged before and after
# each comparison (other builds share the machine). Every run's text and JSON go to $OUT.
#
#   PY=venv/bin/python ENCORE=target/release/encore DATA=dir-with-ds-* bash scripts/compare-real.sh
#
# DATA holds the prepared datasets (made once, outside the repository):
#   encore prep /path/to/hetrec2011-lastfm-2k --format hetrec --out $DATA/ds-hetrec
#   encore prep ml-100k.inter --format movielens --value binary --min-value 3.5 --out $DATA/ds-ml100k
#   encore synth --scale medium --out raw-medium && encore prep raw-medium --out $DATA/ds-medium
# ONLY=name1,name2 runs only the named comparisons (see the list below).
# For timings on a shared machine run it at high priority: nice -n -10 bash scripts/compare-real.sh
set -euo pipefail
PY=${PY:-python3}
ENCORE=${ENCORE:-target/release/encore}
DATA=${DATA:?set DATA to the directory holding ds-hetrec, ds-ml100k, ds-medium}
OUT=${OUT:-compare-real-out}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

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

run() { # name, dataset, flags...
    local name=$1 ds=$2
    shift 2
    if [[ -n ${ONLY:-} && ",$ONLY," != *",$name,"* ]]; then return; fi
    quiet
    echo "=== $name: $(uptime)" | tee -a "$OUT/load.txt"
    "$PY" scripts/compare_implicit.py "$DATA/$ds" --encore "$ENCORE" "$@" \
        --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1 || { cat "$OUT/$name.txt"; exit 1; }
    echo "    after: $(uptime)" | tee -a "$OUT/load.txt"
    cat "$OUT/$name.txt"
}

# Encore's defaults (λ, α from `encore train --help`; ν = 0 for both), and each library's own.
run hetrec-cg ds-hetrec --threads "$THREADS" --solver cg --rounds 5 --defaults
run hetrec-cholesky ds-hetrec --threads "$THREADS" --solver cholesky --rounds 5
run ml100k-cg ds-ml100k --threads "$THREADS" --solver cg --rounds 5 --defaults
run ml100k-cholesky ds-ml100k --threads "$THREADS" --solver cholesky --rounds 5
run medium-cg ds-medium --threads "$THREADS" --solver cg --rounds 5
# The issue-3 table's configurations (λ 0.1, α 2), re-measured with one BLAS thread.
run old-hetrec-cg ds-hetrec --threads "$THREADS" --solver cg --rounds 5 --regularization 0.1 --alpha 2
run old-hetrec-cg-1t ds-hetrec --threads 1 --solver cg --rounds 5 --regularization 0.1 --alpha 2
run old-hetrec-cholesky ds-hetrec --threads "$THREADS" --solver cholesky --rounds 5 --regularization 0.1 --alpha 2
run old-medium-cg ds-medium --threads "$THREADS" --solver cg --rounds 3 --regularization 0.1 --alpha 2
