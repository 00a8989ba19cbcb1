"""Shared fixtures: HetRec 2011 (read in place from the shared data directory), a small
synthetic matrix with planted structure, the `encore` CLI binary, and the GPU marker.

Environment:
- ENCORE_HETREC: the HetRec 2011 Last.fm directory (default: ../shared/data/hetrec2011-lastfm-2k
  beside the repository, as the Rust tests and CI use). Missing data fails the tests that need
  it, as in tests/prep.rs, rather than skipping them.
- ENCORE_REQUIRE_GPU: when set, an unusable GPU is an error rather than a skip of the `gpu`
  tests (scripts/gpu-python-test.sh sets it on the GPU host).
- ENCORE_CLI: the `encore` binary for the CLI <-> Python tests (default: the release build in
  $CARGO_TARGET_DIR or target/). When it is set, a missing binary fails; when it is not and no
  build is found, those tests are skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import encore

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not encore.gpu_available():
        try:
            encore._encore.describe_gpu(0)
            why = "no usable NVIDIA GPU"
        except encore.GpuError as e:
            why = str(e)
        if os.environ.get("ENCORE_REQUIRE_GPU"):
            raise pytest.UsageError(f"ENCORE_REQUIRE_GPU is set but the GPU is not usable: {why}")
        skip = pytest.mark.skip(reason=f"no usable NVIDIA GPU (driver, device and cuBLAS): {why}")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def hetrec_dir() -> Path:
    d = Path(os.environ.get("ENCORE_HETREC", REPO.parent / "shared/data/hetrec2011-lastfm-2k"))
    if not (d / "user_artists.dat").is_file():
        pytest.fail(f"HetRec 2011 data not found at {d} (set ENCORE_HETREC)")
    return d


@pytest.fixture(scope="session")
def hetrec_ds_dir(hetrec_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hetrec") / "ds"
    encore.prep(hetrec_dir, out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def hetrec(hetrec_ds_dir) -> encore.Dataset:
    return encore.load_dataset(hetrec_ds_dir)


def planted(n_users=400, n_items=300, groups=5, per_user=25, seed=7) -> sp.csr_matrix:
    """Users x items play counts with planted taste: each user listens mostly within one group
    of items (so a model can beat popularity), counts heavy-tailed, canonical CSR float32."""
    rng = np.random.default_rng(seed)
    item_group = rng.integers(0, groups, n_items)
    rows, cols = [], []
    for u in range(n_users):
        g = u % groups
        own = np.flatnonzero(item_group == g)
        k_own = min(len(own), int(per_user * 0.8))
        chosen = set(rng.choice(own, k_own, replace=False).tolist())
        chosen |= set(rng.choice(n_items, per_user - k_own, replace=False).tolist())
        for i in sorted(chosen):
            rows.append(u)
            cols.append(i)
    data = rng.zipf(1.8, len(rows)).clip(1, 500).astype(np.float32)
    m = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)
    m.sum_duplicates()
    return m


@pytest.fixture(scope="session")
def small() -> sp.csr_matrix:
    return planted()


@pytest.fixture(scope="session")
def small_model(small) -> encore.ALS:
    return encore.ALS(factors=16, iterations=8, solver="cholesky", device="cpu").fit(
        small, show_progress=False)


@pytest.fixture(scope="session")
def encore_cli() -> Path:
    env = os.environ.get("ENCORE_CLI")
    if env:
        p = Path(env)
        if not p.is_file():
            pytest.fail(f"ENCORE_CLI={env} does not exist")
        return p
    for target in filter(None, [os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")]):
        p = Path(target) / "release/encore"
        if p.is_file():
            return p
    found = shutil.which("encore")
    if found:
        return Path(found)
    pytest.skip("no encore binary (build with cargo build --release, or set ENCORE_CLI)")
