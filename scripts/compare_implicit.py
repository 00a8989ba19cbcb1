#!/usr/bin/env python3
"""Encore vs implicit (0.7.x) ALS on the CPU, side by side: the same train.npz, the same
confidence matrix, the same hyper-parameters and the same number of threads.

Usage:
  python scripts/compare_implicit.py DATASET [--encore target/release/encore] [--threads N]
      [--factors 64] [--iterations 15] [--regularization λ] [--alpha α] [--confidence log]
      [--epsilon 1] [--solver cg|cholesky] [--cg-steps 3] [--k 10] [--rounds 3]
      [--seed 42] [--defaults] [--encore-flags '...'] [--json OUT]

Needs a Python with implicit 0.7.x, numpy, scipy and threadpoolctl. Without --regularization
and --alpha, both libraries get Encore's defaults (read from `encore train --help`).

What makes it fair:
- Threads: Encore runs with --threads N; implicit with num_threads=N and ONE BLAS thread
  (threadpool_limits(1, "blas")). implicit parallelises its own loop over rows; letting OpenBLAS
  start N more threads inside each of them oversubscribes the cores, which implicit itself warns
  about (measured on the 2-core dev machine: fit 0.8-1.2 s with one BLAS thread, 2.2-7.3 s with
  two). Every timed implicit call (fit, recommend) runs under that limit.
- Time: the fit alone, wall clock. implicit: model.fit() timed with perf_counter (its
  conversions, transpose, initialisation and iterations). Encore: `train_seconds` from
  model.json, which `encore train` measures around the same work (confidence transform,
  transpose, initialisation, iterations, copy back) — not process start, dataset loading or
  saving. Per-iteration seconds are reported too (each library's own per-iteration timer).
- Interleaved: --rounds rounds, each training both libraries once, the order alternating
  (Encore first in odd rounds, implicit first in even ones), so drift in the machine's load
  reaches both alike. Medians are compared; every run is printed, and so is the 1-minute load
  average before and after each round (on a shared machine, load hurts implicit's OpenMP
  threads more than Encore's work-stealing ones, so ratios under load flatter Encore).
- Confidence: implicit takes the matrix value as the confidence c_ui (its `alpha` only
  multiplies it), so it is given c = 1 + α·f(plays) computed exactly as Encore computes it
  (float32), with alpha = 1.
- Quality: both models are ranked by the same code (implicit's top-K, training items filtered)
  and scored by the same metric code on the same validation users: nDCG@K, precision@K by
  Encore's definition (hits / K) and by implicit's (hits / min(K, |held-out|), as
  implicit.evaluation.precision_at_k computes it). Encore's own `encore eval` nDCG is printed
  beside as a cross-check.
- Encore trains with --reg-exponent 0 (plain λ, which is what implicit does) in the
  same-hyper-parameter runs; its default ν = 0.5 only in the --defaults run.
- --defaults adds each library at its own defaults: Encore with no hyper-parameter flags,
  implicit's AlternatingLeastSquares() fed the raw play counts, as its documentation does.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def f32_confidence(plays: np.ndarray, alpha: float, confidence: str, epsilon: float) -> np.ndarray:
    """c = 1 + α·f(plays) in float32, the same operations as Encore's confidence_minus_one."""
    p = plays.astype(np.float32)
    a = np.float32(alpha)
    if confidence == "log":
        f = np.log1p(p / np.float32(epsilon), dtype=np.float32)
    else:
        f = p
    return (np.float32(1.0) + a * f).astype(np.float32)


def user_metrics(ranked, relevant: set, k: int):
    hits, dcg = 0, 0.0
    for r, item in enumerate(ranked[:k]):
        if item in relevant:
            hits += 1
            dcg += 1.0 / np.log2(r + 2)
    ideal = min(k, len(relevant))
    idcg = sum(1.0 / np.log2(r + 2) for r in range(ideal))
    return hits / k, hits / ideal, dcg / idcg


def metrics(users, ranked, valid: sp.csr_matrix, k: int) -> dict:
    sums = np.zeros(3)
    for u, lst in zip(users, ranked):
        rel = set(valid.indices[valid.indptr[u]:valid.indptr[u + 1]].tolist())
        sums += user_metrics([int(i) for i in lst], rel, k)
    n = max(len(users), 1)
    return {"users": len(users), "precision": sums[0] / n, "precision_implicit": sums[1] / n,
            "ndcg": sums[2] / n}


def popularity(train: sp.csr_matrix, valid: sp.csr_matrix, users, k: int) -> dict:
    listeners = np.bincount(train.indices, minlength=train.shape[1])
    order = np.lexsort((np.arange(train.shape[1]), -listeners))
    ranked = []
    for u in users:
        seen = set(train.indices[train.indptr[u]:train.indptr[u + 1]].tolist())
        ranked.append([i for i in order[: k + len(seen)] if i not in seen][:k])
    return metrics(users, ranked, valid, k)


def rank_with_implicit(user_factors, item_factors, train, users, k, threads):
    """Top-K of given factors through implicit's own top-K, training items filtered."""
    from implicit.cpu.als import AlternatingLeastSquares
    m = AlternatingLeastSquares(factors=user_factors.shape[1], num_threads=threads)
    m.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
    m.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    ids, _ = m.recommend(users, train[users], N=k, filter_already_liked_items=True)
    return ids.tolist()


def encore_defaults(encore: str) -> dict:
    """Encore's training defaults, read from `encore train --help`."""
    text = subprocess.run([encore, "train", "--help"], check=True, capture_output=True,
                          text=True).stdout
    out = {}
    for flag in ["factors", "iterations", "regularization", "alpha", "confidence", "epsilon",
                 "cg-steps"]:
        m = re.search(r"--%s <[^>]+>\s*\n?(?:.*\n)*?.*\[default: ([^\]]+)\]" % flag, text)
        if m:
            out[flag] = m.group(1)
    return out


def run_encore(a, tmp: Path, flags) -> dict:
    model = tmp / "model"
    common = [a.encore, "--threads", str(a.threads), "--quiet"]
    subprocess.run(common + ["train", a.dataset, "--out", str(model), "--force", "--device", "cpu",
                             "--seed", str(a.seed)] + flags, check=True, stdout=subprocess.DEVNULL)
    meta = json.loads((model / "model.json").read_text())
    its = [s["seconds"] for s in meta["iterations"]]
    return {"fit_s": meta["train_seconds"], "iterations_s": its, "model": model}


def encore_quality(a, run, train, valid, users) -> dict:
    common = [a.encore, "--threads", str(a.threads), "--quiet"]
    ev = json.loads(subprocess.run(common + ["eval", a.dataset, str(run["model"]), "--k", str(a.k),
                                             "--json", "--device", "cpu"],
                                   check=True, capture_output=True, text=True).stdout)
    u = np.load(run["model"] / "user_factors.npy")
    v = np.load(run["model"] / "item_factors.npy")
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, "blas"):
        ranked = rank_with_implicit(u, v, train, users, a.k, a.threads)
    m = metrics(users, ranked, valid, a.k)
    m["encore_eval_ndcg"] = ev["model"]["ndcg"]
    m["encore_eval_precision"] = ev["model"]["precision"]
    rec = json.loads(subprocess.run(
        common + ["bench", "recommend", str(run["model"]), a.dataset, "--users", "1000",
                  "--k", str(a.k), "--json"],
        check=True, capture_output=True, text=True).stdout)
    m["recommend_1000_ms"] = rec["median_ms"]
    return m


def fit_implicit(a, matrix, params) -> dict:
    from threadpoolctl import threadpool_info, threadpool_limits
    from implicit.cpu.als import AlternatingLeastSquares
    its = []
    params = dict(params)
    # cg_steps is an attribute of implicit's model, not a constructor argument (default 3).
    cg_steps = params.pop("cg_steps", None)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(num_threads=a.threads, random_state=a.seed, **params)
        if cg_steps is not None:
            model.cg_steps = cg_steps
        # Every BLAS library loaded into the process, with its thread count during the fit.
        blas = sorted({x["num_threads"] for x in threadpool_info() if x["user_api"] == "blas"})
        t = time.perf_counter()
        model.fit(matrix, show_progress=False, callback=lambda it, el, loss: its.append(el))
        fit_s = time.perf_counter() - t
    return {"fit_s": fit_s, "iterations_s": its, "model": model, "blas_threads": blas}


def implicit_quality(a, run, train, valid, users) -> dict:
    from threadpoolctl import threadpool_limits
    model = run["model"]
    with threadpool_limits(1, "blas"):
        ids, _ = model.recommend(users, train[users], N=a.k, filter_already_liked_items=True)
        m = metrics(users, ids.tolist(), valid, a.k)
        batch = users[:1000]
        rows = train[batch]
        model.recommend(batch, rows, N=a.k, filter_already_liked_items=True)
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            model.recommend(batch, rows, N=a.k, filter_already_liked_items=True)
            runs.append((time.perf_counter() - t) * 1e3)
    m["recommend_1000_ms"] = float(np.median(runs))
    return m


def steady(its):
    return float(statistics.median(its[1:])) if len(its) > 1 else its[0]


def machine() -> str:
    name = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--encore", default="target/release/encore")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--factors", type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--regularization", type=float)
    p.add_argument("--alpha", type=float)
    p.add_argument("--confidence", choices=["log", "linear"])
    p.add_argument("--epsilon", type=float)
    p.add_argument("--solver", choices=["cg", "cholesky"], default="cg")
    p.add_argument("--cg-steps", type=int)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=42,
                   help="seed of both libraries' factor initialisation (Encore --seed, implicit "
                        "random_state)")
    p.add_argument("--defaults", action="store_true",
                   help="also train each library at its own defaults and compare quality")
    p.add_argument("--encore-flags", default="",
                   help="extra `encore train` flags for the same-hyper-parameter runs, e.g. "
                        "'--cg-short-rows cg'")
    p.add_argument("--json")
    a = p.parse_args()
    import implicit
    # Load implicit's extension (and the BLAS it links) now, so that every BLAS library of the
    # process exists before the limits are set around each call.
    import implicit.cpu.als  # noqa: F401
    d = encore_defaults(a.encore)
    a.factors = a.factors or int(d["factors"])
    a.iterations = a.iterations or int(d["iterations"])
    a.regularization = a.regularization if a.regularization is not None else float(d["regularization"])
    a.alpha = a.alpha if a.alpha is not None else float(d["alpha"])
    a.confidence = a.confidence or d["confidence"]
    a.epsilon = a.epsilon if a.epsilon is not None else float(d["epsilon"])
    a.cg_steps = a.cg_steps or int(d["cg-steps"])
    ds = Path(a.dataset)
    train = sp.load_npz(ds / "train.npz").tocsr().astype(np.float32)
    valid = sp.load_npz(ds / "valid.npz").tocsr().astype(np.float32)
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    cui = train.copy()
    cui.data = f32_confidence(train.data, a.alpha, a.confidence, a.epsilon)
    flags = ["--factors", str(a.factors), "--iterations", str(a.iterations),
             "--regularization", repr(a.regularization), "--alpha", repr(a.alpha),
             "--confidence", a.confidence, "--epsilon", repr(a.epsilon), "--solver", a.solver,
             "--cg-steps", str(a.cg_steps), "--reg-exponent", "0"] + a.encore_flags.split()
    params = dict(factors=a.factors, regularization=a.regularization, alpha=1.0,
                  iterations=a.iterations, use_cg=(a.solver == "cg"), cg_steps=a.cg_steps)
    info = machine()
    enc_runs, imp_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loads = [os.getloadavg()[0]]
        for r in range(a.rounds):
            order = ["encore", "implicit"] if r % 2 == 0 else ["implicit", "encore"]
            for who in order:
                if who == "encore":
                    enc_runs.append(run_encore(a, tmp, flags))
                else:
                    imp_runs.append(fit_implicit(a, cui, params))
            loads.append(os.getloadavg()[0])
        enc_q = encore_quality(a, enc_runs[-1], train, valid, users)
        imp_q = implicit_quality(a, imp_runs[-1], train, valid, users)
        pop = popularity(train, valid, users, a.k)
        extra = {}
        if a.defaults:
            e = run_encore(a, tmp, [])
            extra["encore_defaults"] = encore_quality(a, e, train, valid, users)
            extra["encore_defaults"]["fit_s"] = e["fit_s"]
            i = fit_implicit(a, train, {})
            extra["implicit_defaults"] = implicit_quality(a, i, train, valid, users)
            extra["implicit_defaults"]["fit_s"] = i["fit_s"]
    ef = [x["fit_s"] for x in enc_runs]
    imf = [x["fit_s"] for x in imp_runs]
    es = [steady(x["iterations_s"]) for x in enc_runs]
    ims = [steady(x["iterations_s"]) for x in imp_runs]
    print(f"dataset {ds} ({train.shape[0]} users x {train.shape[1]} items, {train.nnz} train pairs); "
          f"k={a.factors}, {a.iterations} iterations, λ={a.regularization}, α={a.alpha}, "
          f"{a.confidence} confidence (ε={a.epsilon}), solver {a.solver} ({a.cg_steps} CG steps), "
          f"{a.threads} threads (implicit: {a.threads} own threads, BLAS threads during its fits "
          f"{sorted({t for x in imp_runs for t in x['blas_threads']})}), "
          f"{a.rounds} interleaved rounds; implicit {implicit.__version__}; {info}; 1-min load "
          f"average before and after each round {' '.join(f'{x:.2f}' for x in loads)}")
    fmt = lambda xs: " ".join(f"{x:.3f}" for x in xs)
    print(f"{'':<16}{'fit s (median)':>15}{'steady s/it':>13}{'nDCG@%d' % a.k:>9}"
          f"{'p@%d ours' % a.k:>10}{'p@%d impl.' % a.k:>11}{'rec 1000 ms':>12}   fit runs")
    for name, f, s, q in [(f"encore {a.solver}", ef, es, enc_q), (f"implicit {a.solver}", imf, ims, imp_q)]:
        print(f"{name:<16}{statistics.median(f):>15.3f}{statistics.median(s):>13.4f}{q['ndcg']:>9.4f}"
              f"{q['precision']:>10.4f}{q['precision_implicit']:>11.4f}{q['recommend_1000_ms']:>12.2f}   {fmt(f)}")
    print(f"{'popularity':<16}{'':>15}{'':>13}{pop['ndcg']:>9.4f}{pop['precision']:>10.4f}"
          f"{pop['precision_implicit']:>11.4f}")
    print(f"encore eval (cross-check): nDCG@{a.k} {enc_q['encore_eval_ndcg']:.4f}, p@{a.k} {enc_q['encore_eval_precision']:.4f}")
    speed = statistics.median(imf) / statistics.median(ef)
    print(f"ratios encore/implicit: fit speed-up {speed:.2f}x (per iteration "
          f"{statistics.median(ims) / statistics.median(es):.2f}x), nDCG@{a.k} {enc_q['ndcg'] / imp_q['ndcg']:.3f}, "
          f"p@{a.k} {enc_q['precision'] / imp_q['precision']:.3f}, recommend speed-up "
          f"{imp_q['recommend_1000_ms'] / enc_q['recommend_1000_ms']:.2f}x")
    if extra:
        ed, idf = extra["encore_defaults"], extra["implicit_defaults"]
        print(f"at each library's defaults: encore nDCG@{a.k} {ed['ndcg']:.4f} (p@{a.k} {ed['precision']:.4f}), "
              f"implicit {idf['ndcg']:.4f} (p@{a.k} {idf['precision']:.4f}), popularity {pop['ndcg']:.4f}; "
              f"encore/implicit {ed['ndcg'] / idf['ndcg']:.3f}, encore/popularity {ed['ndcg'] / pop['ndcg']:.2f}")
    if a.json:
        out = {"args": vars(a), "machine": info, "load_per_round": loads, "implicit_version": implicit.__version__,
               "encore": {"fit_s": ef, "steady_s": es, "quality": enc_q},
               "implicit": {"fit_s": imf, "steady_s": ims, "quality": imp_q},
               "popularity": pop, **extra}
        Path(a.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    sys.exit(main())
