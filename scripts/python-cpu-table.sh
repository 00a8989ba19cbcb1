#!/usr/bin/env bash
# Issue 16's CPU table: encore.ALS(...).fit against implicit 0.7's CPU ALS from Python, 2 threads
# each (implicit with one BLAS thread), on HetRec and the synthetic medium set, 5 rounds in a
# rotating order, at high priority (the dev machine is shared with other helpers' builds).
#   bash scripts/python-cpu-table.sh [OUT_DIR]   (default benchmarks/python-cpu; logs and JSON)
# Needs: the encore package and implicit 0.7.3 in $PYTHON (default python3), the encore binary
# ($ENCORE_CLI, default target/release/encore), datasets prepped by `encore prep` in
# $HETREC_DS and $MEDIUM_DS (HetRec 2011 with the default options; `encore synth --scale
# medium` then `encore prep`). Run as root for `nice -n -10`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
OUT=${1:-benchmarks/python-cpu}
ROUNDS=${ROUNDS:-5}
mkdir -p "$OUT"
lscpu | grep -E "Model name|^CPU\(s\)" | tee "$OUT/machine.txt"
"$PY" -c "import encore, implicit, numpy, scipy, platform; print('encore', encore.__version__, '| implicit', implicit.__version__, '| numpy', numpy.__version__, '| scipy', scipy.__version__, '| python', platform.python_version())" | tee -a "$OUT/machine.txt"
for name in ${DATASETS:-hetrec medium}; do
    case $name in
    hetrec) ds=${HETREC_DS:?set HETREC_DS to a prepped HetRec directory} ;;
    medium) ds=${MEDIUM_DS:?set MEDIUM_DS to a prepped synthetic medium directory} ;;
    esac
    echo "=== $name ($ds)" | tee "$OUT/$name.log"
    nice -n -10 "$PY" scripts/bench_python.py "$ds" --device cpu --threads 2 --rounds "$ROUNDS" \
        --no-cli --encore "${ENCORE_CLI:-target/release/encore}" --json "$OUT/$name.json" 2>&1 |
        tee -a "$OUT/$name.log"
done
