#!/usr/bin/env python3
"""The λ × α sweeps behind Encore's defaults (issue 15): `encore train` then `encore eval` on
valid.npz for every (λ, α) of a grid, one ν and k per run, printed as a Markdown table (the
tables in BENCHMARKS.md) and kept as JSON.

Usage:
  python3 scripts/sweep_defaults.py DATASET OUT.json [--encore target/release/encore]
      [--regularization 0.1,1,3,10,20,30,50,100] [--alpha 0.25,0.5,1,2,4,8] [--factors 64]
      [--solver cg] [--title TEXT] [-- EXTRA TRAIN FLAGS, e.g. --reg-exponent 0.5]
  python3 scripts/sweep_defaults.py --table OUT.json [--title TEXT]   # the table again

Each cell is one training with the seed of `encore train` (42), so the grid is deterministic:
Encore's CPU solvers give the same factors on any thread count. Needs only the standard library.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def table(rows, title: str) -> str:
    regs = sorted({r["reg"] for r in rows})
    alphas = sorted({r["alpha"] for r in rows})
    best = max(rows, key=lambda r: r["ndcg"])
    out = [f"{title} (popularity {rows[0]['pop_ndcg']:.4f}; best **{best['ndcg']:.4f}** at "
           f"λ {best['reg']:g}, α {best['alpha']:g})", "",
           "| λ \\ α | " + " | ".join(f"{a:g}" for a in alphas) + " |",
           "| ---: | " + " | ".join("---:" for _ in alphas) + " |"]
    for g in regs:
        cells = []
        for a in alphas:
            x = next((r for r in rows if r["reg"] == g and r["alpha"] == a), None)
            cells.append("" if x is None else
                         (f"**{x['ndcg']:.4f}**" if x is best else f"{x['ndcg']:.4f}"))
        out.append(f"| {g:g} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--table", help="print the table of an earlier run's JSON and stop")
    p.add_argument("--encore", default="target/release/encore")
    p.add_argument("--regularization", default="0.1,1,3,10,20,30,50,100")
    p.add_argument("--alpha", default="0.25,0.5,1,2,4,8")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--solver", default="cg")
    p.add_argument("--title", default="nDCG@10 on valid.npz")
    a = p.parse_args(argv)
    if a.table:
        rows = [r for r in json.loads(Path(a.table).read_text()) if r["k"] == a.factors]
        print(table(rows, a.title))
        return
    if not a.dataset or not a.out:
        p.error("DATASET and OUT.json are needed (or --table OUT.json)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = str(Path(tmp) / "model")
        for reg in [float(x) for x in a.regularization.split(",")]:
            for alpha in [float(x) for x in a.alpha.split(",")]:
                t = time.time()
                subprocess.run([a.encore, "-q", "train", a.dataset, "--out", model, "--force",
                                "--factors", str(a.factors), "--regularization", str(reg),
                                "--alpha", str(alpha), "--solver", a.solver] + extra,
                               check=True, stdout=subprocess.DEVNULL)
                ev = json.loads(subprocess.run([a.encore, "-q", "eval", a.dataset, model, "--json"],
                                               check=True, capture_output=True, text=True).stdout)
                r = dict(solver=a.solver, k=a.factors, reg=reg, alpha=alpha, extra=extra,
                         ndcg=ev["model"]["ndcg"], p=ev["model"]["precision"],
                         pop_ndcg=ev["popularity"]["ndcg"], s=time.time() - t)
                rows.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
    print(table(rows, a.title))


if __name__ == "__main__":
    main()
