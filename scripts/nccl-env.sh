# Sourced by the GPU-host scripts: makes NCCL loadable by processes that do not find it
# themselves (test binaries; `encore train --gpus` re-executes itself the same way).
# cudarc's loader opens `libnccl.so`, while pip's nvidia-nccl-cu13 ships only
# site-packages/nvidia/nccl/lib/libnccl.so.2: link the one to the other in a private directory
# and put that first on LD_LIBRARY_PATH. NVLink multicast stays off (NCCL_NVLS_ENABLE=0 unless
# already set). ENCORE_NCCL_LIB, when set, names the library to use.
nccl_env() {
    export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
    local lib=${ENCORE_NCCL_LIB:-}
    if [[ -z $lib ]]; then
        lib=$(python3 -I -c 'import site, sys, os
for d in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    f = os.path.join(d, "nvidia", "nccl", "lib", "libnccl.so.2")
    if os.path.isfile(f):
        print(f); break' 2>/dev/null || true)
    fi
    if [[ -z $lib ]]; then
        lib=$(find / \( -name 'libnccl.so.2' -o -name 'libnccl.so' \) -not -path '/proc/*' 2>/dev/null | head -n 1 || true)
    fi
    if [[ -n $lib && -e $lib ]]; then
        NCCL_SHIM=$(mktemp -d /tmp/encore-nccl-shim.XXXXXX)
        ln -sf "$(readlink -f "$lib")" "$NCCL_SHIM/libnccl.so"
        export LD_LIBRARY_PATH=$NCCL_SHIM${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        echo "nccl: $lib (as $NCCL_SHIM/libnccl.so), NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE"
    else
        echo "nccl: no libnccl.so.2 found (NCCL tests will fail, saying so)" >&2
    fi
}
