#!/usr/bin/env bash
# The full `encore bench report` on a GPU host (device tool, carry .device-bin), LFM-1b scale:
#   bash scripts/report-bench.sh [EXTRA REPORT ARGS]   (report in $OUT/report)
set -euo pipefail
B=.device-bin/encore
OUT=${OUT:-report-bench-out}
W=/tmp/w
mkdir -p "$OUT" "$W"
if [[ ! -f $W/lfm/manifest.json ]]; then
    $B --quiet synth --scale lfm1b --out $W/raw
    $B --quiet prep $W/raw --out $W/lfm
    rm -rf $W/raw
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
export ENCORE_FONT_DIR=${ENCORE_FONT_DIR:-.device-bin/fonts}
$B bench report $W/lfm --out "$W/report" "$@" 2>&1 | tee "$OUT/report.log"
# One archive: the device tool brings back only a few files per call.
tar -C "$W" -czf "$OUT/report.tgz" report
