#!/usr/bin/env bash
# GPU tests and benchmarks on a host without a Rust toolchain, in two halves:
#
#   bash scripts/gpu-test.sh build   # here: the core crate's release test binaries + encore
#                                    # into .device-bin/
#   bash scripts/gpu-test.sh run     # on the GPU host (device tool, carry .device-bin): every
#                                    # test binary with --ignored (tests/dist_gpu.rs with NCCL
#                                    # on LD_LIBRARY_PATH: scripts/nccl-env.sh), then the plain
#                                    # tests of tests/gpu.rs; logs to $OUT (or ./gpu-test-logs)
#
# With the device tool the whole thing is one call after the build:
#   run(command="bash scripts/gpu-test.sh run", carry=[".device-bin"])
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=.device-bin

case ${1:-} in
build)
    rm -rf "$BIN"
    mkdir -p "$BIN/tests"
    cargo build --release --locked
    cp target/release/encore "$BIN/"
    # A sans face for the report's PNG figures (GPU hosts often have no fonts; ENCORE_FONT_DIR).
    mkdir -p "$BIN/fonts"
    for f in /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf; do
        [[ -f $f ]] && cp "$f" "$BIN/fonts/"
    done
    # The GPU tests live in the core crate (the root package): collect its test binaries.
    cargo test --release --locked -p encore --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys, shutil, os
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    if m.get("reason") == "compiler-artifact" and exe and m.get("profile", {}).get("test"):
        name = m["target"]["name"] + ("-lib" if m["target"]["kind"] == ["lib"] else "")
        shutil.copy(exe, os.path.join(sys.argv[1], name))
        print("collected", name)
' "$BIN/tests"
    du -sh "$BIN"
    ;;
run)
    LOGS=${OUT:-gpu-test-logs}
    mkdir -p "$LOGS"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOGS/device.txt" || true
    # NCCL for tests/dist_gpu.rs (pip's libnccl.so.2, linked as libnccl.so).
    source scripts/nccl-env.sh
    nccl_env | tee -a "$LOGS/device.txt"
    status=0
    for t in "$BIN"/tests/*; do
        name=$(basename "$t")
        echo "=== $name --ignored"
        if ! "$t" --ignored --test-threads 1 2>&1 | tee "$LOGS/$name.log"; then
            status=1
        fi
    done
    echo "=== summary"
    grep -h "test result" "$LOGS"/*.log || true
    exit $status
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
