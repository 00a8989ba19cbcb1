#!/usr/bin/env python3
"""Checks an Encore dataset directory with scipy and numpy, independently of Encore's own reader.

Usage: check_dataset.py DATASET_DIR

Verifies that scipy.sparse.load_npz reads train.npz and valid.npz as CSR float32 matrices of the
same shape, that user_ids.npy / item_ids.npy are int64 (or |S strings, strictly ascending
byte-wise) and match the shape, that train and valid
share no (user, track) pair, and that every count in manifest.json adds up. Exits non-zero on any
mismatch.
"""
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def main(d: Path) -> None:
    m = json.loads((d / "manifest.json").read_text())
    train = sp.load_npz(d / "train.npz")
    valid = sp.load_npz(d / "valid.npz")
    users = np.load(d / "user_ids.npy")
    items = np.load(d / "item_ids.npy")
    assert sp.isspmatrix_csr(train) or isinstance(train, sp.csr_array), type(train)
    assert train.dtype == np.float32 and valid.dtype == np.float32, (train.dtype, valid.dtype)
    assert train.shape == valid.shape == (len(users), len(items)), (train.shape, valid.shape)
    for ids in (users, items):
        if ids.dtype.kind == "S":  # string ids: UTF-8, strictly ascending as numpy orders bytes
            assert np.all(ids[1:] > ids[:-1]), "string ids not ascending"
            np.char.decode(ids, "utf-8")
        else:
            assert ids.dtype == np.int64, ids.dtype
            assert np.all(np.diff(ids) > 0), "ids not ascending"
    assert train.has_sorted_indices and valid.has_sorted_indices
    assert train.indptr.dtype.name == m["indptr_dtype"], (train.indptr.dtype, m["indptr_dtype"])
    overlap = train.multiply(valid).nnz
    assert overlap == 0, f"{overlap} pairs in both train and valid"
    c = m["counts"]
    for name, mat in (("train", train), ("valid", valid)):
        assert mat.nnz == c[name]["pairs"], (name, mat.nnz, c[name]["pairs"])
        if m["options"].get("value", "count") != "rating":  # ratings: events are rounded per pair
            assert int(mat.sum(dtype=np.float64)) == c[name]["events"], name
    kept = c["kept"]
    assert train.nnz + valid.nnz == kept["pairs"]
    if m["options"].get("value", "count") != "rating":
        assert int(train.sum(dtype=np.float64) + valid.sum(dtype=np.float64)) == kept["events"]
    assert (kept["users"], kept["items"]) == train.shape
    lines = m["lines"]
    assert lines["records"] + lines["header"] + lines["blank"] + lines["bad_skipped"] == lines["total"]
    print(
        f"ok: {d}: {train.shape[0]} users x {train.shape[1]} tracks, "
        f"train nnz {train.nnz}, valid nnz {valid.nnz}, indptr {train.indptr.dtype}, "
        f"scipy {__import__('scipy').__version__}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
