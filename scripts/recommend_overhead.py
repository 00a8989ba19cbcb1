#!/usr/bin/env python3
"""What the Python package adds to a batch ``recommend`` over the library's own (issue 16: "the
Python overhead over the CLI, within a few %"), side by side in one run, on one model.

One model directory (``--model``, or one trained here by ``encore train`` with the library's
defaults) and its dataset are scored three ways, for the same users (the first ``--users`` with
held-out listens, as ``encore bench`` picks them), N = 10, already-liked items filtered, on the
same device and number of threads:

- Python: ``encore.load(model, device=D, threads=T)`` with its dataset, then
  ``model.recommend(users, N=10)`` (filtering through the remembered training matrix), timed
  around the whole Python call;
- the library in the same process: ``encore._encore.LibraryRecommender`` loads the model and
  dataset as the CLI does and times the CLI's own call (``Recommender::recommend_rows``:
  exclusion lists borrowed from the training matrix, scoring, top-K) inside Rust, as
  ``encore bench recommend`` does. The two alternate call by call for ``--pairs`` pairs (order
  swapped every pair), so the load of a shared machine reaches both alike; the medians and the
  median of the per-pair ratios are compared. The same is done with filtering off, which
  separates the cost of reading each user's training row from the rest;
- the CLI itself, as a cross-check: ``encore bench recommend MODEL DATASET --device D``
  (one warm-up, ``--repeats`` timed calls, median), ``--cli-rounds`` times, each a new process.

Usage:
  python scripts/recommend_overhead.py DATASET [--model DIR] [--encore BIN] [--device cpu|gpu]
      [--threads N] [--users 1000] [--pairs 40] [--cli-rounds 3] [--repeats 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

import encore


def paired(model, lib, users, pairs, filtered):
    """`pairs` alternating calls of Python's recommend (wall clock around the call) and the
    library's (its own timer); one warm-up each first."""
    rec = lambda: model.recommend(users, N=10, filter_already_liked_items=filtered)
    rec()
    lib.time_ms(users, 10, filtered)
    py, li = [], []
    for p in range(pairs):
        for side in ((0, 1) if p % 2 == 0 else (1, 0)):
            if side == 0:
                t = time.perf_counter()
                rec()
                py.append((time.perf_counter() - t) * 1e3)
            else:
                li.append(lib.time_ms(users, 10, filtered))
    ratios = [a / b for a, b in zip(py, li)]
    return {"python_ms": median(py), "library_ms": median(li),
            "python_over_library": median(py) / median(li) - 1,
            "median_pair_ratio": median(ratios), "python_runs_ms": py, "library_runs_ms": li}


def cli_ms(a, model_dir, users):
    r = json.loads(subprocess.run(
        [a.encore, "--quiet", "--threads", str(a.threads), "bench", "recommend", str(model_dir),
         str(a.dataset), "--device", a.device, "--users", str(users), "-k", "10",
         "--repeats", str(a.repeats), "--json"],
        check=True, capture_output=True, text=True).stdout)
    return float(r["median_ms"]), r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="a directory written by encore prep")
    p.add_argument("--model", type=Path, help="a model of DATASET (default: trained here)")
    p.add_argument("--encore", default=os.environ.get("ENCORE_CLI", "target/release/encore"))
    p.add_argument("--device", default="cpu", help="cpu, gpu or gpu:N (every side)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=40)
    p.add_argument("--cli-rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per CLI process")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if not Path(a.encore).is_file():
        raise SystemExit(f"no encore binary at {a.encore} (--encore or $ENCORE_CLI)")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = a.model
        if model_dir is None:
            model_dir = Path(tmp) / "model"
            train_device = "gpu" if a.device.startswith("gpu") else "cpu"
            subprocess.run([a.encore, "--quiet", "--threads", str(a.threads), "train",
                            str(a.dataset), "--out", str(model_dir), "--device", train_device],
                           check=True, stdout=subprocess.DEVNULL)
        model = encore.load(model_dir, device=a.device, threads=a.threads, dataset=a.dataset)
        # On the Python model's thread pool: the same threads, and no second pool's idle
        # workers spinning against the other side's.
        lib = encore._encore.LibraryRecommender(str(model_dir), str(a.dataset), a.device,
                                                threads_of=model._model)
        users = np.flatnonzero(np.diff(model.dataset.valid.indptr))[:a.users]
        if len(users) == 0:
            users = np.arange(min(a.users, model.user_factors.shape[0]))
        users = users.astype(np.int64)
        print(f"dataset {a.dataset}: {model.user_factors.shape[0]} users x "
              f"{model.item_factors.shape[0]} items, k={model.factors}; {len(users)} users, "
              f"N=10; device {model.device}, scorer {lib.scorer}, {a.threads} threads; load "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        results = {}
        for name, filtered in (("filtered", True), ("unfiltered", False)):
            r = paired(model, lib, users, a.pairs, filtered)
            results[name] = r
            print(f"{name}: python {r['python_ms']:.3f} ms, library in process "
                  f"{r['library_ms']:.3f} ms (medians of {a.pairs} alternating calls): python "
                  f"over the library {r['python_over_library']:+.1%} (median per-pair ratio "
                  f"{r['median_pair_ratio'] - 1:+.1%})", flush=True)
        cli_runs = []
        for _ in range(a.cli_rounds):
            ms, info = cli_ms(a, model_dir, len(users))
            cli_runs.append(ms)
        load = os.getloadavg()[0]
    f = results["filtered"]
    summary = f"python over the CLI, recommend {len(users)} users (device {model.device}): " \
              f"{f['python_over_library']:+.1%} in process (python {f['python_ms']:.3f} ms, " \
              f"library {f['library_ms']:.3f} ms)"
    if cli_runs:
        cli = median(cli_runs)
        summary += f"; encore bench recommend {cli:.3f} ms (median of {len(cli_runs)} " \
                   f"processes), python {f['python_ms'] / cli - 1:+.1%} over it"
    print(summary + f"; load {load:.2f}")
    if a.json:
        a.json.write_text(json.dumps({
            "command": sys.argv, "dataset": str(a.dataset), "device": model.device,
            "scorer": lib.scorer, "threads": a.threads, "users": len(users),
            "results": results, "cli_ms": cli_runs, "load_after": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
