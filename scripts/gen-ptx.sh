#!/usr/bin/env bash
# Regenerates ptx/*.ptx from cuda/*.cu with the pinned nvcc (the one the committed PTX must match).
#
#   bash scripts/gen-ptx.sh          # rewrite ptx/
#   bash scripts/gen-ptx.sh --check  # fail if ptx/ differs from what cuda/ compiles to (CI)
#
# The nvcc comes from PyPI, pinned: an unpinned nvvm (13.5) emits PTX ISA 9.5, which the GPU
# host's driver (580, CUDA 13.0) rejects. Installed once into $ENCORE_NVCC_VENV (default
# .venv-nvcc, git-ignored). Flags must match NVCC_FLAGS in build.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${ENCORE_NVCC_VENV:-.venv-nvcc}
PINS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
FLAGS=(-ptx -arch=compute_80 -O3)

if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -m pip show nvidia-cuda-cccl 2>/dev/null | grep -q '^Version: 13.0.85$'; then
    for attempt in 1 2 3; do
        if "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"; then
            break
        fi
        [[ $attempt == 3 ]] && { echo "pip install of the pinned nvcc failed" >&2; exit 1; }
        sleep $((attempt * 10))
    done
fi
NVCC=$(find "$VENV" -path '*/cu13/bin/nvcc' -type f | head -n 1)
[[ -n "$NVCC" ]] || { echo "nvcc not found in $VENV" >&2; exit 1; }
"$NVCC" --version | tail -n 2

OUT=ptx
if [[ ${1:-} == --check ]]; then
    OUT=$(mktemp -d)
    trap 'rm -rf "$OUT"' EXIT
fi
mkdir -p "$OUT"
for src in cuda/*.cu; do
    stem=$(basename "$src" .cu)
    "$NVCC" "${FLAGS[@]}" -o "$OUT/$stem.ptx" "$src"
done
if [[ ${1:-} == --check ]]; then
    status=0
    for src in cuda/*.cu; do
        stem=$(basename "$src" .cu)
        if ! cmp -s "$OUT/$stem.ptx" "ptx/$stem.ptx"; then
            echo "ptx/$stem.ptx does not match cuda/$stem.cu: run bash scripts/gen-ptx.sh and commit" >&2
            status=1
        fi
    done
    for ptx in ptx/*.ptx; do
        [[ -f "cuda/$(basename "$ptx" .ptx).cu" ]] || { echo "$ptx has no source in cuda/" >&2; status=1; }
    done
    [[ $status == 0 ]] && echo "ptx/ matches cuda/ ($(ls cuda/*.cu | wc -l) kernel files)"
    exit $status
fi
echo "wrote $(ls ptx/*.ptx | wc -l) PTX files to ptx/"
