#!/usr/bin/env bash
# The full `encore bench report` on a GPU host (device tool, carry .device-bin), LFM-1b scale:
#   bash scripts/report-bench.sh [EXTRA REPORT ARGS]   (report in $OUT/report)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lfm-common.sh"
OUT=${OUT:-report-bench-out}
mkdir -p "$OUT" "$W"
lfm_data
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
export ENCORE_FONT_DIR=${ENCORE_FONT_DIR:-.device-bin/fonts}
$B bench report $W/lfm --out "$W/report" "$@" 2>&1 | tee "$OUT/report.log"
# One archive: the device tool brings back only a few files per call.
tar -C "$W" -czf "$OUT/report.tgz" report
