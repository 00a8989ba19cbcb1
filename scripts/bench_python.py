#!/usr/bin/env python3
"""Encore from Python, side by side in one run on one dataset (issue 16's benchmarks):

1. training: ``encore.ALS(...).fit`` vs implicit 0.7's ``AlternatingLeastSquares.fit`` at the
   same hyper-parameters, threads and confidence matrix (implicit is given c = 1 + alpha * f(plays)
   as the matrix with alpha = 1: it takes the matrix value as the confidence), implicit's BLAS
   limited to one thread (``threadpool_limits(1, "blas")``, its documented setting): the whole
   ``fit`` call (wall clock) and the steady seconds per iteration (median after the first);
2. ``recommend`` for 1000 users (the first with held-out listens; N = 10, already-liked items
   filtered): one batched call, median of 5 after a warm-up, both libraries;
3. the Python package's overhead over the CLI on the same data, settings, threads and device:
   ``ALS.fit`` wall clock (the zero-copy read of the scipy matrix, its hash, the thread
   hand-off and the model object included) vs ``encore train``'s own ``train_seconds`` in its
   model.json (the same training, without reading and writing files; the whole process is
   reported too), and Python ``recommend`` for the 1000 users vs the CLI's own timing of the
   same call inside the binary (``encore bench recommend --device cpu|gpu``). Each side scores
   its own model here; scripts/recommend_overhead.py compares the two on one model, call by
   call in one process, which is the measurement of the overhead. ``--no-cli`` leaves the CLI
   out (the CPU table of ``encore.ALS`` against implicit).

The three systems run ``--rounds`` times in a rotating order (the machine may be shared: the
load average is recorded beside every measurement) and medians over rounds are compared. Both
libraries' models are scored by ``encore.evaluate`` (the same code, the same split), so speed is
compared at measured quality.

Hyper-parameters are the library's defaults (read from the package) unless given, except that
Encore's frequency-scaled regularisation (``reg_exponent``), where the library has it, is 0:
implicit has no counterpart, and with it both solve the same problem.

``--device gpu`` runs Encore on the GPU and implicit's GPU ALS (``implicit.gpu``; needs its CUDA
build: scripts/gpu-python-test.sh sets it up on the GPU host); implicit's GPU fit is timed up
to a device synchronisation (CuPy's, when CuPy is there), so queued work is not left out.

Usage:
  python scripts/bench_python.py DATASET [--encore target/release/encore] [--threads N]
      [--device cpu|gpu] [--factors K] [--iterations N] [--solver S] [--rounds 3] [--json OUT]

DATASET is a directory written by ``encore prep``. Needs numpy, scipy, threadpoolctl, implicit
0.7 and the encore package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

import encore


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    if encore.gpu_available():
        gpu = "; " + encore._encore.describe_gpu(0)
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores{gpu}"


def load() -> float:
    """The 1-minute load average (what `uptime` prints first)."""
    return os.getloadavg()[0]


def median_ms(f, repeats=5) -> float:
    f()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        runs.append((time.perf_counter() - t) * 1e3)
    return float(np.median(runs))


def steady(times) -> float:
    return float(np.median(times[1:])) if len(times) > 1 else float(times[0])


def confidence(plays: np.ndarray, model: encore.ALS) -> np.ndarray:
    """Encore's c = 1 + alpha * f(plays): implicit takes the matrix value as the confidence."""
    f = np.log1p(plays / model.epsilon) if model.confidence == "log" else plays
    return (1.0 + model.alpha * f).astype(np.float32)


def gpu_sync():
    """Waits for the device's queued work (implicit's kernels), when CuPy can say so."""
    try:
        import cupy
    except ImportError:
        return
    cupy.cuda.runtime.deviceSynchronize()


class Encore:
    name = "encore (python)"

    def __init__(self, a, ds, users, settings):
        self.a, self.ds, self.users, self.settings = a, ds, users, settings

    def run(self):
        a = self.a
        times = []
        model = encore.ALS(**self.settings, threads=a.threads, device=a.device)
        t = time.perf_counter()
        model.fit(self.ds.train, show_progress=False, callback=lambda it, s, loss: times.append(s))
        fit_s = time.perf_counter() - t
        rec = median_ms(lambda: model.recommend(self.users, N=10))
        self.model = model
        return {"fit_s": fit_s, "steady_s": steady(times), "recommend_1000_ms": rec,
                "train_seconds": model.meta["train_seconds"], "device": model.device}

    def quality(self):
        return encore.evaluate(self.model, self.ds.train, self.ds.valid, K=10)


class Implicit:
    def __init__(self, a, ds, users, ref: encore.ALS):
        self.a, self.ds, self.users, self.ref = a, ds, users, ref
        self.cui = ds.train.copy()
        self.cui.data = confidence(self.cui.data, ref)
        self.rows = ds.train[users]
        gpu = a.device == "gpu"
        if gpu:
            from implicit.gpu.als import AlternatingLeastSquares
            import implicit.gpu
            if not implicit.gpu.HAS_CUDA:
                raise SystemExit("implicit has no CUDA build here (implicit.gpu.HAS_CUDA is False)")
        else:
            from implicit.cpu.als import AlternatingLeastSquares
        # Imported here, before the BLAS limit: threadpoolctl limits the libraries loaded by
        # then, and importing implicit loads scipy's BLAS.
        self.cls = AlternatingLeastSquares
        self.name = "implicit " + ("gpu" if gpu else ref.solver)

    def run(self):
        from threadpoolctl import threadpool_limits
        a, ref = self.a, self.ref
        gpu = a.device == "gpu"
        stamps = []

        def on_iteration(*_):
            if gpu:
                gpu_sync()
            stamps.append(time.perf_counter())

        with threadpool_limits(limits=1, user_api="blas"):
            if gpu:
                imp = self.cls(factors=ref.factors, regularization=ref.regularization, alpha=1.0,
                               iterations=ref.iterations, random_state=42)
            else:
                imp = self.cls(factors=ref.factors, regularization=ref.regularization, alpha=1.0,
                               iterations=ref.iterations, use_cg=ref.solver == "cg",
                               num_threads=a.threads, random_state=42)
            imp.cg_steps = ref.cg_steps
            t = time.perf_counter()
            imp.fit(self.cui, show_progress=False, callback=on_iteration)
            if gpu:
                gpu_sync()
            fit_s = time.perf_counter() - t
            rec = median_ms(lambda: imp.recommend(self.users, self.rows, N=10))
        self.model = imp
        # Iteration times from the callbacks' time stamps (after a device sync on the GPU).
        times = np.diff([t] + stamps).tolist()
        return {"fit_s": fit_s, "steady_s": steady(times), "recommend_1000_ms": rec}

    def quality(self):
        scored = self.model.to_cpu() if self.a.device == "gpu" else self.model
        return encore.evaluate(scored, self.ds.train, self.ds.valid, K=10)


def train_flags(ref: encore.ALS) -> list:
    """`encore train` flags for every setting of `ref`'s configuration (model.json names; the
    CLI spells them with dashes), so the CLI trains exactly the Python model."""
    cfg = json.loads(ref._config_json())
    flags = []
    for key, value in cfg.items():
        if key == "compute_loss":
            flags += ["--loss"] if value else []
        else:
            flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


class Cli:
    name = "encore CLI"

    def __init__(self, a, ref: encore.ALS):
        self.a, self.ref = a, ref

    def run(self):
        a = self.a
        common = [a.encore, "--quiet", "--threads", str(a.threads)]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "model"
            t = time.perf_counter()
            subprocess.run(common + ["train", str(a.dataset), "--out", str(out), "--device",
                                     a.device] + train_flags(self.ref),
                           check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t
            meta = json.loads((out / "model.json").read_text())
            # The library's batch recommend (exclusion lists, scoring, top-K) on the same
            # device, timed inside the binary: what Python's recommend wraps.
            r = json.loads(subprocess.run(
                common + ["bench", "recommend", str(out), str(a.dataset), "--users", "1000",
                          "-k", "10", "--device", a.device, "--json"],
                check=True, capture_output=True, text=True).stdout)
            rec = r["median_ms"]
        its = [s["seconds"] for s in meta["iterations"]]
        return {"fit_s": meta["train_seconds"], "process_s": wall, "steady_s": steady(its),
                "recommend_1000_ms": rec, "device": meta["device"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path)
    p.add_argument("--encore", default=os.environ.get("ENCORE_CLI", "target/release/encore"),
                   help="the encore binary (default: $ENCORE_CLI, else target/release/encore)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="CPU threads for all three (default: every core)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--factors", type=int, help="default: the library's")
    p.add_argument("--iterations", type=int, help="default: the library's")
    p.add_argument("--solver", help="default: the library's")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, help="write every measurement here")
    p.add_argument("--no-cli", action="store_true",
                   help="only encore from Python and implicit (no CLI training)")
    a = p.parse_args()
    settings = {k: getattr(a, k) for k in ("factors", "iterations", "solver")
                if getattr(a, k) is not None}
    if "reg_exponent" in encore.ALS.LIBRARY_OPTIONS:
        settings["reg_exponent"] = 0.0
    if not Path(a.encore).is_file():
        raise SystemExit(f"no encore binary at {a.encore} (--encore or $ENCORE_CLI)")
    ds = encore.load_dataset(a.dataset)
    users = np.flatnonzero(np.diff(ds.valid.indptr))[:1000]
    ref = encore.ALS(**settings, device="cpu")
    import implicit
    print(f"machine: {machine()}; encore {encore.__version__}, implicit {implicit.__version__}, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"dataset {a.dataset}: {ds.train.shape[0]} users x {ds.train.shape[1]} items, "
          f"{ds.train.nnz} train pairs; {ref!r}; {a.threads} threads, device {a.device}; "
          f"{len(users)} users to recommend for; {a.rounds} rounds")
    systems = [Encore(a, ds, users, settings), Implicit(a, ds, users, ref)]
    if not a.no_cli:
        systems.append(Cli(a, ref))
    runs = {s.name: [] for s in systems}
    for r in range(a.rounds):
        n = len(systems)
        order = systems[r % n:] + systems[:r % n]
        for s in order:
            before = load()
            m = s.run()
            m["load_before"], m["load_after"] = before, load()
            runs[s.name].append(m)
        print(f"round {r + 1}: " + ", ".join(
            f"{s.name} fit {runs[s.name][-1]['fit_s']:.3f} s, recommend "
            f"{runs[s.name][-1]['recommend_1000_ms']:.2f} ms (load {runs[s.name][-1]['load_before']:.2f}"
            f"-{runs[s.name][-1]['load_after']:.2f})" for s in order), flush=True)
    enc, imp = systems[0].name, systems[1].name
    cli = systems[2].name if len(systems) > 2 else None
    med = {name: {key: median(run[key] for run in rs) for key in rs[0] if key != "device"}
           for name, rs in runs.items()}
    quality = {enc: systems[0].quality(), imp: systems[1].quality()}
    print(f"\nmedians over {a.rounds} rounds")
    print(f"{'':<20}{'fit s':>9}{'steady s/it':>13}{'rec 1000 ms':>13}{'nDCG@10':>9}{'p@10':>8}")
    for name in [enc, imp] + ([cli] if cli else []):
        q = quality.get(name)
        qs = f"{q['ndcg']:>9.4f}{q['precision']:>8.4f}" if q else ""
        m = med[name]
        print(f"{name:<20}{m['fit_s']:>9.3f}{m['steady_s']:>13.4f}{m['recommend_1000_ms']:>13.2f}{qs}")
    if cli:
        print(f"(encore CLI fit = its train_seconds; the whole process, files included, "
              f"{med[cli]['process_s']:.3f} s)")
    ratios = {
        "fit_speedup_vs_implicit": med[imp]["fit_s"] / med[enc]["fit_s"],
        "iteration_speedup_vs_implicit": med[imp]["steady_s"] / med[enc]["steady_s"],
        "recommend_speedup_vs_implicit": med[imp]["recommend_1000_ms"] / med[enc]["recommend_1000_ms"],
        "ndcg_ratio_vs_implicit": quality[enc]["ndcg"] / quality[imp]["ndcg"],
    }
    if cli:
        ratios.update({
            "python_fit_overhead_vs_cli": med[enc]["fit_s"] / med[cli]["fit_s"] - 1,
            "python_train_seconds_vs_cli": med[enc]["train_seconds"] / med[cli]["fit_s"] - 1,
            "python_recommend_overhead_vs_cli":
                med[enc]["recommend_1000_ms"] / med[cli]["recommend_1000_ms"] - 1,
        })
    print("encore vs implicit: fit {fit_speedup_vs_implicit:.2f}x faster, steady iteration "
          "{iteration_speedup_vs_implicit:.2f}x, recommend 1000 {recommend_speedup_vs_implicit:.2f}x; "
          "nDCG@10 ratio {ndcg_ratio_vs_implicit:.3f}".format(**ratios))
    if cli:
        print("python over the CLI: fit {:+.1%} (the core's own training time inside the Python "
              "fit {:+.1%}), recommend 1000 {:+.1%} (each its own model)".format(
                  ratios["python_fit_overhead_vs_cli"], ratios["python_train_seconds_vs_cli"],
                  ratios["python_recommend_overhead_vs_cli"]))
    if a.json:
        a.json.write_text(json.dumps({
            "machine": machine(), "command": sys.argv, "model": repr(ref),
            "args": {k: str(v) for k, v in vars(a).items()}, "runs": runs, "medians": med,
            "quality": quality, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
