"""Bad inputs raise the exception the issue names, with a message that says what to do: wrong
dtypes, non-contiguous arrays, non-canonical CSR, negative or non-finite values, negative and
out-of-range ids, N = 0, mismatched shapes, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import encore


def model(m, **kw):
    return encore.ALS(factors=4, iterations=1, device="cpu", **kw).fit(m, show_progress=False)


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, np.float16, np.uint8])
def test_unsupported_value_dtypes_are_named(small, dtype):
    m = small.copy()
    m.data = m.data.astype(dtype)
    with pytest.raises(ValueError, match=rf"user_items.data has dtype {np.dtype(dtype)}.*astype"):
        model(m)


def test_unsupported_index_dtypes_are_named(small):
    m = small.copy()
    m.indices = m.indices.astype(np.uint32)
    with pytest.raises(ValueError, match="user_items.indices has dtype uint32; Encore reads int32 or int64"):
        model(m)
    m = small.copy()
    m.indptr = m.indptr.astype(np.int16)
    with pytest.raises(ValueError, match="user_items.indptr has dtype int16"):
        model(m)


def test_non_contiguous_arrays_are_refused_not_copied(small):
    m = small.copy()
    wide = np.zeros(2 * m.nnz, np.float32)
    wide[::2] = m.data
    m.data = wide[::2]
    assert not m.data.flags.c_contiguous
    with pytest.raises(ValueError, match="user_items.data is not contiguous"):
        model(m)


def test_non_canonical_matrices_are_refused_with_the_fix(small):
    # Duplicates: scipy keeps them in a CSR built from (data, indices, indptr).
    dup = sp.csr_matrix((np.ones(3, np.float32), np.array([1, 1, 2]), np.array([0, 3, 3])), shape=(2, 4))
    assert not dup.has_canonical_format
    with pytest.raises(ValueError, match=r"not canonical: row 0 .*sum_duplicates\(\)"):
        model(dup)
    unsorted = sp.csr_matrix((np.ones(2, np.float32), np.array([3, 1]), np.array([0, 2, 2])), shape=(2, 4))
    with pytest.raises(ValueError, match="not canonical: row 0 has column 1 after 3"):
        model(unsorted)
    m = model(small)
    with pytest.raises(ValueError, match="not canonical"):
        m.recommend(0, user_items=sp.csr_matrix(
            (np.ones(2, np.float32), np.array([3, 1]), np.array([0, 2])), shape=(1, small.shape[1])))


def test_corrupt_offsets_are_errors_not_crashes(small):
    m = small.copy()
    m.indptr = m.indptr.copy()
    m.indptr[5] = m.nnz + 100
    with pytest.raises(ValueError, match="indptr"):
        model(m)


@pytest.mark.parametrize("value,word", [(-1.0, "-1"), (np.nan, "NaN"), (np.inf, "inf")])
def test_negative_and_non_finite_counts_are_named(small, value, word):
    m = small.copy()
    m.data = m.data.copy()
    m.data[10] = value
    with pytest.raises(ValueError, match=rf"value at row \d+, column \d+ is {word}"):
        model(m)


def test_dense_and_foreign_inputs_are_refused(small):
    with pytest.raises(ValueError, match="dense numpy array"):
        model(small.toarray())
    with pytest.raises(ValueError, match="scipy.sparse"):
        model([[1, 2], [3, 4]])


def test_bad_ids_and_n(small_model, small):
    n_users, n_items = small.shape
    with pytest.raises(ValueError, match="userid -1 is negative"):
        small_model.recommend(-1)
    with pytest.raises(ValueError, match=f"userid {n_users} is out of range: the model has {n_users} users"):
        small_model.recommend([0, n_users])
    with pytest.raises(ValueError, match="N must be at least 1, got 0"):
        small_model.recommend(0, N=0)
    with pytest.raises(ValueError, match="N must be at least 1"):
        small_model.recommend(0, N=-3)
    with pytest.raises(ValueError, match="N must be an int"):
        small_model.recommend(0, N=2.5)
    with pytest.raises(ValueError, match="userid must be integers"):
        small_model.recommend(1.5)
    with pytest.raises(ValueError, match=f"filter_items id {n_items} is out of range"):
        small_model.recommend(0, filter_items=[n_items])
    with pytest.raises(ValueError, match="items id -2 is negative"):
        small_model.recommend(0, items=[3, -2])
    with pytest.raises(ValueError, match=f"itemid {n_items} is out of range"):
        small_model.similar_items(n_items)
    with pytest.raises(ValueError, match="N must be at least 1"):
        small_model.similar_users(0, N=0)
    with pytest.raises(ValueError, match="columns but the model has"):
        small_model.recommend(0, user_items=sp.csr_matrix((1, n_items + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="columns but the model has"):
        small_model.recalculate_user(0, sp.csr_matrix((1, n_items - 1), dtype=np.float32))


def test_unfitted_models_say_so():
    m = encore.ALS(device="cpu")
    assert m.user_factors is None
    with pytest.raises(ValueError, match="not fitted"):
        m.recommend(0)
    with pytest.raises(ValueError, match="not fitted"):
        m.save("/tmp/never")


@pytest.mark.parametrize("kw,msg", [
    (dict(factors=0), "factors must be at least 1"),
    (dict(factors=2.5), "factors must be an int"),
    (dict(iterations=0), "iterations must be at least 1"),
    (dict(solver="newton"), "unknown variant `newton`"),
    (dict(confidence="cubic"), "unknown variant `cubic`"),
    (dict(regularization=-1.0), "--regularization must be in"),
    (dict(alpha=float("nan")), "alpha must be a finite number"),
    (dict(alpha=1e13), "--alpha must be in"),
    (dict(regularization="0.1"), "regularization must be a number"),
    (dict(epsilon=0.0), "--epsilon must be > 0"),
    (dict(threads=-1), "threads must be None or an int"),
    (dict(threads=10**6), "more than 4x"),
    (dict(random_state="x"), "random_state must be"),
    (dict(device=0), "device must be a str"),
    (dict(solver="lu", device="cpu"), "solver lu needs a GPU"),
])
def test_bad_settings_are_value_errors(kw, msg, small):
    with pytest.raises(ValueError, match=msg):
        encore.ALS(**{"device": "cpu", **kw}).fit(small, show_progress=False)


def test_alpha_that_overflows_float32_is_named(small):
    with pytest.raises(ValueError, match="alpha"):
        encore.ALS(alpha=1e30, device="cpu").fit(small, show_progress=False)


def test_bad_model_directories(tmp_path):
    with pytest.raises(ValueError, match="not a model directory"):
        encore.load(tmp_path / "nothing")
    (tmp_path / "m").mkdir()
    with pytest.raises(FileNotFoundError, match="model.json"):
        encore.load(tmp_path / "m")
