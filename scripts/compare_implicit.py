#!/usr/bin/env python3
"""Encore vs implicit (0.7.3) ALS, side by side on the same dataset, threads and hyper-parameters.

Usage:
  python scripts/compare_implicit.py DATASET [--encore target/release/encore] [--threads N]
      [--factors 64] [--iterations 15] [--regularization 0.1] [--alpha 2] [--confidence log]
      [--epsilon 1] [--solver cg|cholesky] [--k 10] [--json OUT]

Needs a Python with implicit==0.7.3, numpy, scipy and threadpoolctl (see BENCHMARKS.md).

implicit treats the matrix value itself as the confidence c_ui (its `alpha` only rescales it), so
it is given c = 1 + alpha*f(plays) with alpha=1, exactly Encore's confidence. Both models are
scored with the metric definitions of Encore's `eval` module (reimplemented below), on the same
validation users, excluding each user's training tracks. Recommend time: 1000 users, K=10,
already-listened filtering on, median of 5 runs, after one warm-up.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def confidence(plays: np.ndarray, a) -> np.ndarray:
    if a.confidence == "log":
        f = np.log1p(plays / a.epsilon)
    else:
        f = plays
    return (1.0 + a.alpha * f).astype(np.float32)


def user_metrics(ranked, relevant: set, k: int):
    hits, dcg, ap = 0, 0.0, 0.0
    for r, item in enumerate(ranked[:k]):
        if item in relevant:
            hits += 1
            dcg += 1.0 / np.log2(r + 2)
            ap += hits / (r + 1)
    ideal = min(k, len(relevant))
    idcg = sum(1.0 / np.log2(r + 2) for r in range(ideal))
    return hits / k, hits / len(relevant), dcg / idcg, ap / ideal


def metrics(users, ranked, valid: sp.csr_matrix, k: int) -> dict:
    sums = np.zeros(4)
    seen = set()
    for u, lst in zip(users, ranked):
        rel = set(valid.indices[valid.indptr[u]:valid.indptr[u + 1]].tolist())
        sums += user_metrics(list(lst), rel, k)
        seen.update(int(i) for i in lst[:k] if i >= 0)
    n = max(len(users), 1)
    return {
        "k": k, "users": len(users), "precision": sums[0] / n, "recall": sums[1] / n,
        "ndcg": sums[2] / n, "map": sums[3] / n, "coverage": len(seen) / valid.shape[1],
    }


def run_encore(a, tmp: Path) -> dict:
    model = tmp / "model"
    common = [a.encore, "--threads", str(a.threads), "--quiet"]
    subprocess.run(
        common + ["train", a.dataset, "--out", str(model), "--force",
                  "--factors", str(a.factors), "--iterations", str(a.iterations),
                  "--regularization", str(a.regularization), "--alpha", str(a.alpha),
                  "--confidence", a.confidence, "--epsilon", str(a.epsilon),
                  "--solver", a.solver],
        check=True, stdout=subprocess.DEVNULL)
    meta = json.loads((model / "model.json").read_text())
    its = [s["seconds"] for s in meta["iterations"]]
    ev = json.loads(subprocess.run(common + ["eval", a.dataset, str(model), "--k", str(a.k), "--json"],
                                   check=True, capture_output=True, text=True).stdout)
    rec = json.loads(subprocess.run(
        common + ["bench", "recommend", str(model), a.dataset, "--users", "1000", "--k", str(a.k), "--json"],
        check=True, capture_output=True, text=True).stdout)
    return {
        "name": f"encore {a.solver}", "first_iteration_s": its[0],
        "steady_iteration_s": float(np.mean(its[1:])) if len(its) > 1 else its[0],
        "metrics": ev["model"], "popularity": ev["popularity"],
        "recommend_1000_ms": rec["median_ms"],
    }


def run_implicit(a, train, valid) -> dict:
    from threadpoolctl import threadpool_limits
    from implicit.cpu.als import AlternatingLeastSquares

    cui = train.copy()
    cui.data = confidence(cui.data, a)
    times = []
    with threadpool_limits(limits=a.threads):
        model = AlternatingLeastSquares(
            factors=a.factors, regularization=a.regularization, alpha=1.0,
            iterations=a.iterations, use_cg=(a.solver == "cg"), num_threads=a.threads,
            random_state=42)
        model.fit(cui, show_progress=False, callback=lambda it, el, loss: times.append(el))
        users = np.flatnonzero(np.diff(valid.indptr) > 0)
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
    return {
        "name": f"implicit {a.solver}", "first_iteration_s": times[0],
        "steady_iteration_s": float(np.mean(times[1:])) if len(times) > 1 else times[0],
        "metrics": m, "recommend_1000_ms": float(np.median(runs)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset")
    p.add_argument("--encore", default="target/release/encore")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--regularization", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--confidence", choices=["log", "linear"], default="log")
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--solver", choices=["cg", "cholesky"], default="cg")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json")
    a = p.parse_args()
    d = Path(a.dataset)
    train = sp.load_npz(d / "train.npz").tocsr().astype(np.float32)
    valid = sp.load_npz(d / "valid.npz").tocsr().astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        enc = run_encore(a, Path(tmp))
    imp = run_implicit(a, train, valid)
    rows = [enc, imp]
    print(f"dataset {d} ({train.shape[0]} users x {train.shape[1]} tracks, {train.nnz} train pairs), "
          f"k={a.factors}, {a.iterations} iterations, {a.threads} threads, solver {a.solver}")
    print(f"{'':<18}{'first it s':>11}{'steady s/it':>12}{'p@%d' % a.k:>9}{'nDCG@%d' % a.k:>10}{'rec 1000 ms':>13}")
    for r in rows:
        m = r["metrics"]
        print(f"{r['name']:<18}{r['first_iteration_s']:>11.3f}{r['steady_iteration_s']:>12.3f}"
              f"{m['precision']:>9.4f}{m['ndcg']:>10.4f}{r['recommend_1000_ms']:>13.2f}")
    pop = enc["popularity"]
    print(f"{'popularity':<18}{'':>11}{'':>12}{pop['precision']:>9.4f}{pop['ndcg']:>10.4f}")
    print(f"ratios encore/implicit: steady iteration speed-up {imp['steady_iteration_s'] / enc['steady_iteration_s']:.2f}x, "
          f"p@{a.k} {enc['metrics']['precision'] / imp['metrics']['precision']:.3f}, "
          f"nDCG@{a.k} {enc['metrics']['ndcg'] / imp['metrics']['ndcg']:.3f}, "
          f"recommend speed-up {imp['recommend_1000_ms'] / enc['recommend_1000_ms']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
