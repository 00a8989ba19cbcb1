#!/usr/bin/env bash
# The Python package's GPU tests and its GPU benchmark, on a GPU host without Rust or network,
# in two halves (like scripts/gpu-test.sh for the Rust side):
#
#   bash scripts/gpu-python-test.sh build   # here: into .python-wheels/ (git-ignored, ~26 MiB):
#                                           # the encore abi3 wheel (maturin), pytest and its
#                                           # dependencies as wheels, implicit 0.7.3's GPU build
#                                           # with RMM (/work/shared/tools/implicit-gpu-wheels.sh),
#                                           # and the encore binary (the CLI side of the benchmark)
#   bash scripts/gpu-python-test.sh run     # on the GPU host (carry .python-wheels): installs the
#                                           # wheels into a scratch --target dir (pip --no-index
#                                           # --no-deps), runs the `gpu`-marked pytest tests
#                                           # (ENCORE_REQUIRE_GPU: an unusable GPU fails, it does
#                                           # not skip), then the GPU benchmark (encore GPU fit vs
#                                           # implicit's GPU ALS vs the CLI, on `encore synth
#                                           # --scale medium` prepped there) and the Python
#                                           # recommend's overhead over the CLI's on one model
#                                           # (scripts/recommend_overhead.py, GPU then CPU
#                                           # scorer); logs and JSON to $OUT
#   bash scripts/gpu-python-test.sh run tests   # only the tests; `run bench`: only the benchmark
#
# With the device tool the whole thing is one call after the build (about 3-5 minutes there):
#   run(command="bash scripts/gpu-python-test.sh run", carry=[".python-wheels"], timeout_s=480)
#
# The host's python3 (3.12 there) is used, with its numpy, scipy, threadpoolctl and CuPy; our
# pytest is installed beside the wheel and run with plugin autoloading off, so the host's own
# pytest plugins (if any) do not mix in. cuBLAS for Encore comes from the host (a toolkit or
# pip's nvidia-cublas in site-packages: encore finds either); implicit's GPU build needs
# libcublas.so.13 and libcurand.so.10 on LD_LIBRARY_PATH, which `run` finds the same way.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DIR=.python-wheels
PY=${PYTHON:-python3}

case ${1:-} in
build)
    # Here: a Python with pip (for `pip download`) and maturin; the repository's .venv if there.
    if [[ -z ${PYTHON:-} && -x $ROOT/.venv/bin/python ]]; then
        PY=$ROOT/.venv/bin/python
    fi
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    MATURIN=${MATURIN:-$(command -v maturin || echo "$(dirname "$PY")/maturin")}
    if [[ ! -x $MATURIN ]]; then
        echo "maturin not found: pip install 'maturin>=1.9.4,<2' (or set MATURIN)" >&2
        exit 1
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/pytest" "$DIR/implicit-gpu"
    cargo build --release --locked
    cp "$CARGO_TARGET_DIR/release/encore" "$DIR/encore"
    strip "$DIR/encore" 2>/dev/null || true
    # One abi3 wheel (CPython >= 3.9), manylinux-tagged by maturin's own audit of its symbols.
    "$MATURIN" build --locked --release -m python/Cargo.toml -i "$PY" --out "$DIR" 2>&1 | grep -E "Compiling|Built wheel"
    # pytest and what it needs, pure-Python wheels, at the versions this Python has (or the
    # newest), for Python 3.12.
    pins=()
    for pkg in pytest pluggy iniconfig packaging pygments; do
        v=$("$PY" -c "import importlib.metadata as m; print(m.version('$pkg'))" 2>/dev/null || true)
        pins+=("$pkg${v:+==$v}")
    done
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp -d "$DIR/pytest" "${pins[@]}"
    # implicit's GPU ALS for the benchmark (the team's script: implicit 0.7.3 with RMM, CUDA 13).
    tool=${IMPLICIT_GPU_WHEELS:-/work/shared/tools/implicit-gpu-wheels.sh}
    if [[ -x $tool ]]; then
        bash "$tool" "$DIR/implicit-gpu" >/dev/null
    else
        echo "note: $tool not found: the GPU benchmark will have no implicit to compare with" >&2
    fi
    ls -l "$DIR" "$DIR"/*/
    du -sh "$DIR"
    total=$(du -sb "$DIR" | cut -f1)
    if ((total > 60 * 1024 * 1024)); then
        echo "$DIR is $((total / 1048576)) MiB: over what a device call can carry with the tree" >&2
        exit 1
    fi
    ;;
run)
    what=${2:-all}
    LOGS=${OUT:-gpu-python-logs}
    mkdir -p "$LOGS"
    S=$(mktemp -d)
    trap 'rm -rf "$S"' EXIT
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOGS/device.txt" || true
    "$PY" --version | tee -a "$LOGS/device.txt"
    wheel=$(ls "$DIR"/encore-*.whl 2>/dev/null | head -n 1)
    if [[ -z $wheel ]]; then
        echo "no encore wheel in $DIR: run 'bash scripts/gpu-python-test.sh build' first and carry $DIR" >&2
        exit 1
    fi
    "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
        --target "$S/site" "$wheel" "$DIR"/pytest/*.whl
    export PYTHONPATH=$S/site
    export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTHONUNBUFFERED=1
    "$PY" -c 'import encore, numpy, scipy; print("encore", encore.__version__, "from", encore.__file__, "| numpy", numpy.__version__, "scipy", scipy.__version__); print("GPU:", encore._encore.describe_gpu(0) if encore.gpu_available() else "not usable")' | tee -a "$LOGS/device.txt"
    status=0
    if [[ $what == all || $what == tests ]]; then
        echo "=== pytest -m gpu"
        # From the scratch directory, so the installed wheel is what is imported.
        if ! (cd "$S" && ENCORE_REQUIRE_GPU=1 timeout 240 "$PY" -m pytest "$ROOT/python/tests" \
            -m gpu -p no:cacheprovider -q -rs -s 2>&1) | tee "$LOGS/pytest-gpu.log"; then
            status=1
        fi
    fi
    if [[ $what == all || $what == bench ]]; then
        echo "=== benchmark: encore GPU vs implicit GPU vs the CLI (synthetic medium)"
        if ls "$DIR"/implicit-gpu/*.whl >/dev/null 2>&1; then
            "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
                --target "$S/implicit" "$DIR"/implicit-gpu/*.whl
            export PYTHONPATH=$S/site:$S/implicit
            # implicit's CUDA build loads cuBLAS 13 and cuRAND 10 by name: point the loader at
            # them (pip's nvidia-* packages in site-packages first, then anywhere).
            libs=""
            for lib in 'libcublas.so.13*' 'libcurand.so.10*'; do
                found=$("$PY" -c 'import site; print("\n".join(site.getsitepackages()))' |
                    xargs -I{} find {} -name "$lib" 2>/dev/null | head -n 1 || true)
                if [[ -z $found ]]; then
                    found=$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -n 1 || true)
                fi
                if [[ -n $found ]]; then
                    libs="$libs:$(dirname "$found")"
                else
                    echo "note: no $lib found for implicit's GPU build" >&2
                fi
            done
            export LD_LIBRARY_PATH=${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            "$PY" -c "import implicit, implicit.gpu; print('implicit', implicit.__version__, 'HAS_CUDA', implicit.gpu.HAS_CUDA)" | tee -a "$LOGS/device.txt"
        else
            echo "no implicit GPU wheels in $DIR/implicit-gpu (see build)" >&2
        fi
        "$DIR/encore" --quiet synth --scale medium --out "$S/raw"
        "$DIR/encore" --quiet prep "$S/raw" --out "$S/medium"
        rm -rf "$S/raw"
        if ! timeout 240 "$PY" scripts/bench_python.py "$S/medium" --device gpu --encore "$DIR/encore" \
            --threads "$(nproc)" --rounds 3 --json "$LOGS/bench-gpu-medium.json" 2>&1 |
            tee "$LOGS/bench-gpu-medium.log"; then
            status=1
        fi
        # The Python overhead over the CLI's recommend, on one model (trained here by the CLI
        # on the GPU), call by call in one process, then the CLI's own `bench recommend`: on
        # the GPU scorer, then on the CPU one (same model, users and threads).
        echo "=== recommend: python vs the CLI, one model (synthetic medium)"
        "$DIR/encore" --quiet train "$S/medium" --out "$S/model" --device gpu >/dev/null
        for dev in gpu cpu; do
            if ! timeout 150 "$PY" scripts/recommend_overhead.py "$S/medium" --model "$S/model" \
                --encore "$DIR/encore" --device $dev --threads "$(nproc)" --pairs 40 \
                --cli-rounds 3 --json "$LOGS/recommend-overhead-$dev.json" 2>&1 |
                tee "$LOGS/recommend-overhead-$dev.log"; then
                status=1
            fi
        done
    fi
    echo "=== summary"
    grep -hE '(passed|failed|error).* in [0-9.]+s' "$LOGS/pytest-gpu.log" 2>/dev/null || true
    grep -hE '^(encore vs implicit|python over)' "$LOGS/bench-gpu-medium.log" \
        "$LOGS"/recommend-overhead-*.log 2>/dev/null || true
    exit $status
    ;;
*)
    echo "usage: $0 build | run [all|tests|bench]" >&2
    exit 2
    ;;
esac
