"""Sparse-matrix arguments: scipy CSR is read in place; other formats are converted once."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def as_csr(m: Any, name: str) -> Any:
    """`m` as a scipy CSR matrix (``csr_matrix`` or ``csr_array``).

    A CSR matrix is returned as is, so its arrays are read without a copy (Encore checks their
    dtypes, contiguity and canonical order itself and says what to change). COO, CSC and the
    other sparse formats are converted with ``tocsr()``, which costs one copy. Dense arrays are
    refused: a users x items dense matrix is almost always a mistake at this scale.
    """
    if sp.issparse(m):
        return m if m.format == "csr" else m.tocsr()
    if isinstance(m, np.ndarray):
        raise ValueError(
            f"{name} is a dense numpy array of shape {m.shape}; pass a scipy.sparse matrix "
            f"(scipy.sparse.csr_matrix({name}) converts one)"
        )
    raise ValueError(f"{name} must be a scipy.sparse matrix (users x items), got {type(m).__name__}")


def as_ids(ids: Any, name: str) -> np.ndarray:
    """A 1-D int64 array of ids from an int, a sequence or an array; anything that is not an
    integer (floats, strings, booleans) is a ValueError."""
    a = np.asarray(ids)
    if a.ndim > 1:
        raise ValueError(f"{name} must be an int or a 1-D array of ints, got shape {a.shape}")
    a = np.atleast_1d(a)
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has ids beyond int64")
    return np.ascontiguousarray(a, dtype=np.int64)


def is_scalar_id(x: Any) -> bool:
    """Whether `x` is one id (implicit's rule: a scalar gives 1-D results)."""
    return np.isscalar(x) or (isinstance(x, np.ndarray) and x.ndim == 0)


def replace_rows(m: Any, rows: np.ndarray, new: Any) -> Any:
    """`m` (CSR) with rows `rows` replaced by the rows of `new`, growing it when a row is past
    its end; the result is canonical CSR. One pass over both matrices."""
    n_rows = max(m.shape[0], int(rows.max()) + 1 if rows.size else 0)
    old = m.tocoo()
    keep = ~np.isin(old.row, rows)
    add = new.tocoo()
    r = np.concatenate([old.row[keep], rows[add.row]])
    c = np.concatenate([old.col[keep], add.col])
    v = np.concatenate([old.data[keep], add.data.astype(old.data.dtype, copy=False)])
    out = sp.csr_matrix((v, (r, c)), shape=(n_rows, max(m.shape[1], new.shape[1])))
    out.sum_duplicates()
    return out
