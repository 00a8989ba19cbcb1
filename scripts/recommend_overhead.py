#!/usr/bin/env python3
"""What the Python package adds to a batch ``recommend`` over the library's own (issue 16: "the
Python overhead over the CLI, within a few %"), side by side in one run, on one model.

One model directory (``--model``, or one trained here by ``encore train`` with the library's
defaults) is scored by both:

- Python: ``encore.load(model, device=D, threads=T)`` with its dataset, then
  ``model.recommend(users, N=10)`` (already-liked items filtered through the remembered
  training matrix, the default), one warm-up then ``--repeats`` timed calls, median;
- the CLI: ``encore bench recommend MODEL DATASET --device D --threads T --users U -k 10``,
  which times the library's batch recommend (``Recommender::recommend_rows``: exclusion lists
  from the training matrix, scoring, top-k) inside the binary the same way (one warm-up,
  ``--repeats`` timed calls, median).

Both answer the same users (the first ``--users`` with held-out listens, as ``encore bench``
picks them), with the same scorer on the same device and threads, so the difference is the
Python side: argument checks, the ``user_items`` rows read from scipy, the GIL hand-off and the
result arrays. The two alternate for ``--rounds`` rounds (order swapped every round; the
machine may be shared: the load average is recorded), and the median over rounds of each is
compared, along with the median of the per-round ratios.

Usage:
  python scripts/recommend_overhead.py DATASET [--model DIR] [--encore BIN] [--device cpu|gpu]
      [--threads N] [--users 1000] [--rounds 7] [--repeats 5] [--json OUT]
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


def python_ms(model, users, repeats):
    model.recommend(users, N=10)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.recommend(users, N=10)
        runs.append((time.perf_counter() - t) * 1e3)
    return float(np.median(runs)), runs


def cli_ms(a, model_dir, users):
    r = json.loads(subprocess.run(
        [a.encore, "--quiet", "--threads", str(a.threads), "bench", "recommend", str(model_dir),
         str(a.dataset), "--device", a.device, "--users", str(users), "-k", "10",
         "--repeats", str(a.repeats), "--json"],
        check=True, capture_output=True, text=True).stdout)
    return float(r["median_ms"]), r["runs_ms"], r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="a directory written by encore prep")
    p.add_argument("--model", type=Path, help="a model of DATASET (default: trained here)")
    p.add_argument("--encore", default=os.environ.get("ENCORE_CLI", "target/release/encore"))
    p.add_argument("--device", default="cpu", help="cpu, gpu or gpu:N (both sides)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--repeats", type=int, default=5)
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
        users = np.flatnonzero(np.diff(model.dataset.valid.indptr))[:a.users]
        if len(users) == 0:
            users = np.arange(min(a.users, model.user_factors.shape[0]))
        print(f"dataset {a.dataset}: {model.user_factors.shape[0]} users x "
              f"{model.item_factors.shape[0]} items, k={model.factors}; {len(users)} users, "
              f"N=10, filtered; device {model.device}, {a.threads} threads; "
              f"{a.rounds} rounds x {a.repeats} timed calls each")
        rounds = []
        for r in range(a.rounds):
            load = os.getloadavg()[0]
            if r % 2 == 0:
                py, py_runs = python_ms(model, users, a.repeats)
                cli, cli_runs, info = cli_ms(a, model_dir, len(users))
            else:
                cli, cli_runs, info = cli_ms(a, model_dir, len(users))
                py, py_runs = python_ms(model, users, a.repeats)
            rounds.append({"python_ms": py, "cli_ms": cli, "ratio": py / cli, "load": load,
                           "python_runs_ms": py_runs, "cli_runs_ms": cli_runs})
            print(f"round {r + 1}: python {py:.3f} ms, cli {cli:.3f} ms, python/cli "
                  f"{py / cli:.3f} (load {load:.2f})", flush=True)
    py = median(x["python_ms"] for x in rounds)
    cli = median(x["cli_ms"] for x in rounds)
    ratio = median(x["ratio"] for x in rounds)
    print(f"recommend {len(users)} users, device {model.device}, scorer {info['scorer']}: "
          f"python {py:.3f} ms, cli {cli:.3f} ms (medians over {a.rounds} rounds); "
          f"python over the CLI {py / cli - 1:+.1%} (median of per-round ratios {ratio - 1:+.1%})")
    if a.json:
        a.json.write_text(json.dumps({
            "command": sys.argv, "dataset": str(a.dataset), "device": model.device,
            "scorer": info["scorer"], "machine": info.get("machine"), "threads": a.threads,
            "users": len(users), "rounds": rounds, "python_ms": py, "cli_ms": cli,
            "python_over_cli": py / cli - 1, "median_round_ratio": ratio}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
