"""The README's Python example runs as written (on HetRec, in a scratch directory) and prints
what it says; the package README and the module docstring show the same five lines."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import encore

from conftest import REPO

HETREC_IN_EXAMPLE = "../shared/data/hetrec2011-lastfm-2k"


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def code_lines(src: str) -> list:
    """The statements, comments and spacing aside."""
    return [ast.unparse(node) for node in ast.parse(src).body]


def test_the_readme_example_is_five_lines_and_runs(hetrec_dir, tmp_path):
    src = readme_example()
    assert len(src.strip().splitlines()) == 5
    assert HETREC_IN_EXAMPLE in src
    run = src.replace(HETREC_IN_EXAMPLE, str(hetrec_dir))
    out = subprocess.run([sys.executable, "-c", run], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # Five artist names, the ones this model gives (the same defaults and seed: the same
    # model), then encore.evaluate's dict.
    ds = encore.load_dataset(tmp_path / "hetrec")
    ids, _ = encore.ALS().fit(ds.train, show_progress=False).recommend(ds.user_index(2), N=5)
    printed, metrics_line = out.stdout.strip().rsplit("\n", 1)
    assert all(repr(str(name)) in printed for name in ds.item_names[ids]), printed
    metrics = ast.literal_eval(metrics_line)
    assert metrics["k"] == 10 and metrics["ndcg"] > 0.1
    assert (tmp_path / "hetrec/manifest.json").is_file()


def test_the_package_readme_and_docstring_show_the_same_example():
    want = code_lines(readme_example())
    pkg = (REPO / "python/README.md").read_text(encoding="utf-8")
    assert code_lines(re.search(r"```python\n(.*?)```", pkg, re.S).group(1)) == want
    doc = encore.__doc__.split("::\n", 1)[1]
    assert code_lines("\n".join(line[4:] for line in doc.splitlines())) == want
