#!/usr/bin/env python3
"""Encore from Python, side by side in one run on one dataset:

1. training: ``encore.ALS(...).fit`` vs implicit's ``AlternatingLeastSquares.fit`` (the same
   hyper-parameters, threads and confidence matrix; implicit with one BLAS thread, its
   documented setting) — seconds per iteration and the whole ``fit`` call;
2. ``recommend`` for 1000 users (K = 10, already-liked items filtered), median of 5 after a
   warm-up, both libraries;
3. the Python package's overhead over the CLI: ``ALS.fit`` (wall clock, the zero-copy read of
   the scipy matrix included) vs ``encore train`` (its own ``train_seconds``, the same work
   without loading and saving files), and Python ``recommend`` for 1000 users vs
   ``encore bench recommend`` (the same call timed inside the binary).

Both models are scored by ``encore.evaluate`` (the same code, the same split), so speed is
compared at measured quality.

Usage:
  python scripts/bench_python.py DATASET [--encore target/release/encore] [--threads N]
      [--device cpu|gpu] [--factors 64] [--iterations 15] [--solver cg] [--json OUT]

DATASET is a directory written by ``encore prep``. ``--device gpu`` runs Encore on the GPU and
implicit's GPU ALS (``implicit.gpu``; see /work/shared/tools/implicit-gpu-wheels.sh for the
wheels on the GPU host). Needs numpy, scipy, threadpoolctl, implicit and the encore package.
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
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores"


def median_ms(f, repeats=5) -> float:
    f()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        runs.append((time.perf_counter() - t) * 1e3)
    return float(np.median(runs))


def confidence(plays: np.ndarray, model: encore.ALS) -> np.ndarray:
    f = np.log1p(plays / model.epsilon) if model.confidence == "log" else plays
    return (1.0 + model.alpha * f).astype(np.float32)


def run_encore(a, ds, users):
    times = []
    model = encore.ALS(factors=a.factors, iterations=a.iterations, solver=a.solver,
                       threads=a.threads, device=a.device)
    t = time.perf_counter()
    model.fit(ds.train, show_progress=False, callback=lambda it, s, loss: times.append(s))
    fit_s = time.perf_counter() - t
    q = encore.evaluate(model, ds.train, ds.valid, K=10)
    rec = median_ms(lambda: model.recommend(users, N=10))
    return model, {
        "name": f"encore {a.solver} ({model.device})", "fit_s": fit_s, "iterations_s": times,
        "steady_s": float(np.median(times[1:])) if len(times) > 1 else times[0],
        "ndcg": q["ndcg"], "precision": q["precision"], "recommend_1000_ms": rec,
        "train_seconds": model.meta["train_seconds"],
    }


def run_implicit(a, ds, users, model):
    from threadpoolctl import threadpool_limits
    cui = ds.train.copy()
    cui.data = confidence(cui.data, model)
    times = []
    with threadpool_limits(limits=1, user_api="blas"):
        if a.device == "gpu":
            from implicit.gpu.als import AlternatingLeastSquares as ImplicitALS
            imp = ImplicitALS(factors=a.factors, regularization=model.regularization, alpha=1.0,
                              iterations=a.iterations, random_state=42)
        else:
            from implicit.cpu.als import AlternatingLeastSquares as ImplicitALS
            imp = ImplicitALS(factors=a.factors, regularization=model.regularization, alpha=1.0,
                              iterations=a.iterations, use_cg=a.solver == "cg",
                              num_threads=a.threads or 0, random_state=42)
        imp.cg_steps = model.cg_steps
        t = time.perf_counter()
        imp.fit(cui, show_progress=False, callback=lambda it, s, loss: times.append(s))
        fit_s = time.perf_counter() - t
        rows = ds.train[users]
        rec = median_ms(lambda: imp.recommend(users, rows, N=10))
    scored = imp.to_cpu() if a.device == "gpu" else imp
    q = encore.evaluate(scored, ds.train, ds.valid, K=10)
    return {
        "name": f"implicit {'gpu' if a.device == 'gpu' else a.solver}", "fit_s": fit_s,
        "iterations_s": times,
        "steady_s": float(np.median(times[1:])) if len(times) > 1 else times[0],
        "ndcg": q["ndcg"], "precision": q["precision"], "recommend_1000_ms": rec,
    }


def run_cli(a, dataset: Path):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        common = [a.encore, "--quiet"] + (["--threads", str(a.threads)] if a.threads else [])
        t = time.perf_counter()
        subprocess.run(common + ["train", str(dataset), "--out", str(out), "--device", a.device,
                                 "--factors", str(a.factors), "--iterations", str(a.iterations),
                                 "--solver", a.solver], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        meta = json.loads((out / "model.json").read_text())
        rec = json.loads(subprocess.run(
            common + ["bench", "recommend", str(out), str(dataset), "--users", "1000", "-k", "10",
                      "--device", a.device, "--json"],
            check=True, capture_output=True, text=True).stdout)
    its = [s["seconds"] for s in meta["iterations"]]
    return {"train_seconds": meta["train_seconds"], "process_s": wall,
            "steady_s": float(np.median(its[1:])) if len(its) > 1 else its[0],
            "recommend_1000_ms": rec["median_ms"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path)
    p.add_argument("--encore", default=os.environ.get("ENCORE_CLI", "target/release/encore"))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--solver", default="cg")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    ds = encore.load_dataset(a.dataset)
    users = np.flatnonzero(np.diff(ds.valid.indptr))[:1000]
    print(f"machine: {machine()}; encore {encore.__version__}, python {platform.python_version()}")
    print(f"dataset {a.dataset}: {ds.train.shape[0]} users x {ds.train.shape[1]} items, "
          f"{ds.train.nnz} train pairs; k={a.factors}, {a.iterations} iterations, "
          f"{a.threads} threads, device {a.device}")
    model, enc = run_encore(a, ds, users)
    imp = run_implicit(a, ds, users, model)
    cli = run_cli(a, a.dataset)
    print(f"{'':<24}{'fit s':>9}{'steady s/it':>13}{'nDCG@10':>9}{'p@10':>8}{'rec 1000 ms':>13}")
    for r in (enc, imp):
        print(f"{r['name']:<24}{r['fit_s']:>9.3f}{r['steady_s']:>13.4f}{r['ndcg']:>9.4f}"
              f"{r['precision']:>8.4f}{r['recommend_1000_ms']:>13.2f}")
    print(f"{'encore CLI':<24}{cli['train_seconds']:>9.3f}{cli['steady_s']:>13.4f}{'':>9}{'':>8}"
          f"{cli['recommend_1000_ms']:>13.2f}")
    ratios = {
        "fit_speedup_vs_implicit": imp["fit_s"] / enc["fit_s"],
        "iteration_speedup_vs_implicit": imp["steady_s"] / enc["steady_s"],
        "recommend_speedup_vs_implicit": imp["recommend_1000_ms"] / enc["recommend_1000_ms"],
        "ndcg_ratio_vs_implicit": enc["ndcg"] / imp["ndcg"],
        "python_fit_overhead_vs_cli": enc["fit_s"] / cli["train_seconds"] - 1,
        "python_recommend_overhead_vs_cli": enc["recommend_1000_ms"] / cli["recommend_1000_ms"] - 1,
    }
    print("encore/implicit: fit {fit_speedup_vs_implicit:.2f}x faster, steady iteration "
          "{iteration_speedup_vs_implicit:.2f}x, recommend {recommend_speedup_vs_implicit:.2f}x, "
          "nDCG@10 ratio {ndcg_ratio_vs_implicit:.3f}".format(**ratios))
    print("python over CLI: fit {:+.1%}, recommend 1000 {:+.1%}".format(
        ratios["python_fit_overhead_vs_cli"], ratios["python_recommend_overhead_vs_cli"]))
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(a).items()},
                                      "encore": enc, "implicit": imp, "cli": cli, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
