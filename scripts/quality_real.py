#!/usr/bin/env python3
"""Issue 15's quality evidence: Encore against implicit 0.7.x on real datasets, several splits.

For every dataset directory given (one per split seed, `NAME:SEED=DIR`), every solver and every
hyper-parameter set, runs `scripts/compare_implicit.py DIR --rounds 1` (the same train.npz, the
same confidence matrix, the same hyper-parameters with ν = 0 for Encore since implicit has no
ν, one BLAS thread for implicit, scored by the same metric code on valid.npz), and once per
dataset and split `--defaults` too (each library at its own defaults, and popularity). Prints
Markdown tables: every run, then the mean over the splits. Quality only: no timing is claimed
from these runs (scripts/compare-real.sh measures time, interleaved).

Usage:
  python scripts/quality_real.py OUT_DIR hetrec:42=ds-a hetrec:7=ds-b ml100k:42=ds-c ...
      [--encore target/release/encore] [--python PY] [--threads 2]
      [--solvers cg,cholesky] [--hp 'new=--regularization 10 --alpha 0.5' ...]
  python scripts/quality_real.py OUT_DIR --table     # the tables again from OUT_DIR/*.json
"""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

DEFAULT_HP = ["new=--regularization 10 --alpha 0.5", "old=--regularization 0.1 --alpha 2"]


def run_all(a) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for spec in a.datasets:
        label, path = spec.split("=", 1)
        name, seed = label.split(":")
        for solver in a.solvers.split(","):
            for j, hp in enumerate(a.hp):
                hp_name, flags = hp.split("=", 1)
                defaults = solver == a.solvers.split(",")[0] and j == 0
                tag = f"{name}-s{seed}-{solver}-{hp_name}"
                cmd = [a.python, str(Path(__file__).with_name("compare_implicit.py")), path,
                       "--encore", a.encore, "--threads", str(a.threads), "--solver", solver,
                       "--rounds", "1", "--json", str(out / f"{tag}.json")] + flags.split()
                if defaults:
                    cmd.append("--defaults")
                print("$", " ".join(cmd), flush=True)
                res = subprocess.run(cmd, capture_output=True, text=True)
                (out / f"{tag}.txt").write_text(res.stdout + res.stderr)
                if res.returncode != 0:
                    sys.exit(f"{tag} failed:\n{res.stdout}{res.stderr}")
                meta = json.loads((out / f"{tag}.json").read_text())
                meta["tag"] = {"dataset": name, "split_seed": int(seed), "solver": solver,
                               "hp": hp_name, "flags": flags}
                (out / f"{tag}.json").write_text(json.dumps(meta, indent=1))


def tables(out: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    runs = [r for r in runs if "tag" in r]
    lines = ["Same hyper-parameters (Encore ν = 0), nDCG@10 and p@10 (ours = hits/10; implicit's ="
             " hits/min(10, held-out)):", "",
             "| dataset | split seed | solver | λ, α | nDCG@10 Encore | implicit | ratio "
             "| p@10 ours E / i | p@10 implicit's E / i |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    groups = {}
    for r in sorted(runs, key=lambda r: (r["tag"]["dataset"], r["tag"]["hp"], r["tag"]["solver"],
                                         -r["tag"]["split_seed"])):
        t, e, i = r["tag"], r["encore"]["quality"], r["implicit"]["quality"]
        hp = f"λ {r['args']['regularization']:g}, α {r['args']['alpha']:g}"
        lines.append(f"| {t['dataset']} | {t['split_seed']} | {t['solver']} | {hp} | {e['ndcg']:.4f} "
                     f"| {i['ndcg']:.4f} | {e['ndcg'] / i['ndcg']:.3f} | {e['precision']:.4f} / "
                     f"{i['precision']:.4f} | {e['precision_implicit']:.4f} / "
                     f"{i['precision_implicit']:.4f} |")
        groups.setdefault((t["dataset"], t["solver"], hp), []).append((e["ndcg"], i["ndcg"]))
    lines += ["", "Mean over the splits:", "",
              "| dataset | solver | λ, α | splits | mean nDCG@10 Encore | implicit | ratio of means "
              "| lowest per-split ratio |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (ds, solver, hp), xs in sorted(groups.items()):
        me, mi = statistics.mean(x[0] for x in xs), statistics.mean(x[1] for x in xs)
        lines.append(f"| {ds} | {solver} | {hp} | {len(xs)} | {me:.4f} | {mi:.4f} | "
                     f"**{me / mi:.3f}** | {min(x[0] / x[1] for x in xs):.3f} |")
    lines += ["", "Each library at its own defaults (Encore: no flags, i.e. λ 10, α 0.5, ν 0.5, log "
              "confidence, cg; implicit: `AlternatingLeastSquares()` on the raw values), nDCG@10:", "",
              "| dataset | split seed | Encore defaults | implicit defaults | popularity "
              "| Encore / implicit | Encore / popularity |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    dgroups = {}
    for r in sorted(runs, key=lambda r: (r["tag"]["dataset"], -r["tag"]["split_seed"])):
        if "encore_defaults" not in r:
            continue
        t = r["tag"]
        e, i, p = r["encore_defaults"]["ndcg"], r["implicit_defaults"]["ndcg"], r["popularity"]["ndcg"]
        lines.append(f"| {t['dataset']} | {t['split_seed']} | {e:.4f} | {i:.4f} | {p:.4f} | "
                     f"{e / i:.2f} | {e / p:.2f} |")
        dgroups.setdefault(t["dataset"], []).append((e, i, p))
    for ds, xs in sorted(dgroups.items()):
        e, i, p = (statistics.mean(x[k] for x in xs) for k in range(3))
        lines.append(f"| {ds} (mean of {len(xs)}) | | {e:.4f} | {i:.4f} | {p:.4f} | **{e / i:.2f}** "
                     f"| **{e / p:.2f}** |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("datasets", nargs="*")
    p.add_argument("--encore", default="target/release/encore")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--solvers", default="cg,cholesky")
    p.add_argument("--hp", action="append")
    p.add_argument("--table", action="store_true")
    a = p.parse_intermixed_args()
    a.hp = a.hp or DEFAULT_HP
    if not a.table:
        run_all(a)
    text = tables(Path(a.out))
    (Path(a.out) / "tables.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
