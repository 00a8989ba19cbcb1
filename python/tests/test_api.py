"""The ALS API: shapes and dtypes, recommend (single and batched, filters, item subsets),
similarity, fold-in and partial fits, factor access, callbacks, devices, save and load, and the
docs. Scores are checked against a numpy oracle (brute-force dot products)."""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest
import scipy.sparse as sp

import encore
from encore import _encore

from conftest import planted


def oracle_top(model, users, n, exclude=None, only=None):
    """Brute-force top-n by (score desc, id asc) over item factors, numpy float64."""
    uf = model.user_factors.astype(np.float64)
    itf = model.item_factors.astype(np.float64)
    out = []
    for j, u in enumerate(users):
        s = itf @ uf[u]
        allowed = np.ones(len(s), bool)
        if exclude is not None:
            allowed[exclude[j]] = False
        if only is not None:
            mask = np.zeros(len(s), bool)
            mask[only] = True
            allowed &= mask
        cand = np.flatnonzero(allowed)
        order = cand[np.lexsort((cand, -s[cand]))]
        out.append((order[:n], s[order[:n]]))
    return out


def liked(m, u):
    return m.indices[m.indptr[u]:m.indptr[u + 1]]


# -- fit and factors --------------------------------------------------------------------------

def test_factors_are_float32_c_order_readonly_views_of_the_right_shape(small, small_model):
    for f, n in ((small_model.user_factors, small.shape[0]), (small_model.item_factors, small.shape[1])):
        assert f.dtype == np.float32 and f.shape == (n, 16)
        assert f.flags.c_contiguous and not f.flags.writeable
        with pytest.raises(ValueError):
            f[0, 0] = 1.0
        with pytest.raises(ValueError):
            f.flags.writeable = True
    # Two reads are views of the same memory, not copies.
    a, b = small_model.user_factors, small_model.user_factors
    assert np.shares_memory(a, b)


def test_defaults_are_the_librarys_own():
    d = json.loads(_encore.default_config())
    sig = inspect.signature(encore.ALS)
    for py_name, lib_name in [("factors", "factors"), ("regularization", "regularization"),
                              ("alpha", "alpha"), ("confidence", "confidence"),
                              ("epsilon", "epsilon"), ("iterations", "iterations"),
                              ("solver", "solver"), ("cg_steps", "cg_steps"),
                              ("random_state", "seed")]:
        assert sig.parameters[py_name].default == d[lib_name], py_name
    m = encore.ALS(device="cpu")
    assert (m.factors, m.regularization, m.alpha) == (d["factors"], d["regularization"], d["alpha"])
    # The whole configuration reaching the core is the library's: settings without a parameter
    # of their own are keywords and attributes of their names, at the library's defaults.
    assert json.loads(m._config_json()) == d
    for name in encore.ALS.LIBRARY_OPTIONS:
        assert getattr(m, name) == d[name], name
        given = encore.ALS(factors=2, iterations=1, device="cpu", **{name: d[name]})
        assert json.loads(given._config_json())[name] == d[name]
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_setting'"):
        encore.ALS(no_such_setting=1)


def test_fit_returns_the_model_and_records_its_history(small):
    seen = []
    m = encore.ALS(factors=8, iterations=4, device="cpu", calculate_training_loss=True)
    assert m.fit(small, show_progress=False, callback=lambda *a: seen.append(a)) is m
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert all(len(s) == 3 and s[1] > 0 and isinstance(s[2], float) for s in seen)
    # ALS never increases the exact objective.
    losses = [s[2] for s in seen]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses, losses[1:])), losses
    assert [h["iteration"] for h in m.history] == [1, 2, 3, 4]
    assert m.meta["config"]["factors"] == 8


def test_callback_gets_validation_metrics_when_asked(small):
    train, valid = split(small)
    seen = []
    encore.ALS(factors=8, iterations=3, device="cpu").fit(
        train, show_progress=False, validation=valid, eval_k=5, callback=lambda *a: seen.append(a))
    assert len(seen) == 3 and all(len(s) == 4 for s in seen)
    assert all(s[3]["k"] == 5 and 0 <= s[3]["precision"] <= 1 and 0 <= s[3]["ndcg"] <= 1 for s in seen)
    # The metrics after the last iteration are evaluate()'s at that K.
    m = encore.ALS(factors=8, iterations=3, device="cpu").fit(train, show_progress=False)
    assert seen[-1][3]["ndcg"] == pytest.approx(encore.evaluate(m, train, valid, K=5)["ndcg"])


def test_a_failing_callback_stops_fit_with_its_exception_and_keeps_the_old_model(small, small_model):
    m = encore.ALS(factors=8, iterations=50, device="cpu")
    calls = []

    def cb(it, secs, loss):
        calls.append(it)
        if it == 1:
            raise ZeroDivisionError("stop here")

    with pytest.raises(ZeroDivisionError, match="stop here"):
        m.fit(small, show_progress=False, callback=cb)
    assert m.user_factors is None and len(calls) < 50
    before = small_model.user_factors.copy()
    with pytest.raises(ZeroDivisionError):
        small_model.fit(small, show_progress=False, callback=lambda *a: 1 / 0)
    assert np.array_equal(small_model.user_factors, before)


def test_coo_csc_int64_indices_and_float64_data_train_the_same_model(small):
    cfg = dict(factors=8, iterations=3, solver="cholesky", device="cpu")
    ref = encore.ALS(**cfg).fit(small, show_progress=False).user_factors
    variants = [small.tocoo(), small.tocsc(), small.astype(np.float64),
                small.astype(np.int64), sp.csr_array(small)]
    wide = small.copy()
    wide.indptr = wide.indptr.astype(np.int64)
    wide.indices = wide.indices.astype(np.int64)
    variants.append(wide)
    for v in variants:
        got = encore.ALS(**cfg).fit(v, show_progress=False).user_factors
        assert np.array_equal(got, ref), type(v)


def test_threads_do_not_change_the_cholesky_model(small):
    cfg = dict(factors=8, iterations=3, solver="cholesky", device="cpu")
    one = encore.ALS(threads=1, **cfg).fit(small, show_progress=False)
    many = encore.ALS(threads=2, **cfg).fit(small, show_progress=False)
    assert one._model.threads == 1 and many._model.threads == 2
    assert np.array_equal(one.item_factors, many.item_factors)


def test_implicit_argument_names_are_accepted(small):
    a = encore.ALS(factors=8, iterations=2, use_cg=False, num_threads=1, device="cpu")
    assert a.solver == "cholesky" and a.threads == 1
    assert encore.AlternatingLeastSquares is encore.ALS
    with pytest.raises(ValueError, match="not both"):
        encore.ALS(threads=1, num_threads=2)


# -- recommend --------------------------------------------------------------------------------

def test_single_and_batched_recommend_agree_and_match_brute_force(small, small_model):
    users = np.array([0, 5, 17, 399])
    ids, scores = small_model.recommend(users, N=7)
    assert ids.shape == scores.shape == (4, 7)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    for j, u in enumerate(users):
        one_ids, one_scores = small_model.recommend(int(u), N=7)
        assert one_ids.shape == (7,)
        assert np.array_equal(one_ids, ids[j]) and np.array_equal(one_scores, scores[j])
        want_ids, want_scores = oracle_top(small_model, [u], 7, exclude=[liked(small, u)])[0]
        assert np.array_equal(ids[j], want_ids)
        np.testing.assert_allclose(scores[j], want_scores, rtol=1e-5, atol=1e-6)
    # Numpy ints and lists are ids too.
    assert np.array_equal(small_model.recommend(np.int32(5), N=7)[0], ids[1])
    assert np.array_equal(small_model.recommend([0, 5], N=7)[0], ids[:2])


def test_the_model_remembers_its_training_matrix_for_filtering(small, small_model):
    ids, _ = small_model.recommend(np.arange(50), N=20)
    for u in range(50):
        assert not set(ids[u]) & set(liked(small, u))
    # Without filtering, the user's own (strongest) items come back.
    ids, _ = small_model.recommend(np.arange(50), N=20, filter_already_liked_items=False)
    assert sum(len(set(ids[u]) & set(liked(small, u))) for u in range(50)) > 200


def test_user_items_rows_follow_userid(small, small_model):
    users = np.array([3, 9])
    rows = small[[9, 3]]  # deliberately the other users' rows
    ids, _ = small_model.recommend(users, user_items=rows, N=10)
    want = oracle_top(small_model, users, 10, exclude=[liked(small, 9), liked(small, 3)])
    assert np.array_equal(ids, np.stack([w[0] for w in want]))
    with pytest.raises(ValueError, match="1 row for every userid"):
        small_model.recommend(users, user_items=small[:3], N=10)


def test_filtering_reads_int32_and_int64_rows_alike_and_refuses_bad_ones(small, small_model):
    """The rows filtered with are read in place (int32 indices) or converted (int64): the same
    answer either way, and a row with corrupt offsets or columns is a ValueError naming it,
    never a crash or a silently wrong filter."""
    users = np.array([4, 8, 15])
    rows = small[users]
    want, _ = small_model.recommend(users, user_items=rows, N=10)
    wide = rows.copy()
    wide.indptr = wide.indptr.astype(np.int64)
    wide.indices = wide.indices.astype(np.int64)
    assert np.array_equal(small_model.recommend(users, user_items=wide, N=10)[0], want)
    assert np.array_equal(small_model.recommend(users, N=10)[0], want)
    # Values are not read to filter (as in implicit): a stored entry is left out whatever its
    # count, even one training would refuse.
    odd = rows.copy()
    odd.data = np.full_like(odd.data, np.nan)
    assert np.array_equal(small_model.recommend(users, user_items=odd, N=10)[0], want)
    for dtype in (np.int32, np.int64):
        bad = rows.copy()
        bad.indptr = bad.indptr.astype(dtype)
        bad.indices = bad.indices.astype(dtype)
        bad.indptr[2] = bad.indptr[1] - 1  # row 1 ends before it starts
        with pytest.raises(ValueError, match="indptr is not non-decreasing .* at row 1"):
            small_model.recommend(users, user_items=bad, N=10)
        bad = rows.copy()
        bad.indices = bad.indices.astype(dtype)
        bad.indices[bad.indptr[2] - 1] = small.shape[1]  # the last column of row 1
        with pytest.raises(ValueError, match=f"row 1 has column {small.shape[1]}, outside"):
            small_model.recommend(users, user_items=bad, N=10)
        bad.indices[bad.indptr[2] - 1] = -1
        with pytest.raises(ValueError, match="row 1 has column -1"):
            small_model.recommend(users, user_items=bad, N=10)


def test_library_recommender_times_the_clis_call(hetrec, hetrec_ds_dir, tmp_path):
    """The in-process CLI recommend (scripts/recommend_overhead.py's reference) loads a model
    directory with its dataset, answers the same users and refuses bad ones."""
    m = encore.ALS(factors=8, iterations=2, device="cpu", threads=1).fit(
        hetrec.train, show_progress=False)
    m.save(tmp_path / "model")
    lib = encore._encore.LibraryRecommender(str(tmp_path / "model"), str(hetrec_ds_dir),
                                            "cpu", threads_of=m._model)
    assert lib.scorer == "cpu"
    assert lib.time_ms(np.arange(20, dtype=np.int64), 10, True) > 0
    with pytest.raises(ValueError, match="out of range"):
        lib.time_ms(np.array([hetrec.train.shape[0]], dtype=np.int64))


def test_filter_items_and_items_are_honoured(small, small_model):
    u = np.array([1, 2, 3])
    full, _ = small_model.recommend(u, N=5)
    banned = np.unique(full[:, :2])
    ids, _ = small_model.recommend(u, N=5, filter_items=banned)
    assert not set(ids.ravel()) & set(banned)
    want = oracle_top(small_model, u, 5, exclude=[np.union1d(liked(small, x), banned) for x in u])
    assert np.array_equal(ids, np.stack([w[0] for w in want]))

    subset = np.array([250, 3, 77, 120, 9, 42, 199, 3])  # unsorted, with a duplicate
    ids, scores = small_model.recommend(u, N=4, items=subset)
    assert set(ids.ravel()) - {-1} <= set(subset)
    want = oracle_top(small_model, u, 4, exclude=[liked(small, x) for x in u], only=np.unique(subset))
    for j in range(3):
        n = len(want[j][0])
        assert np.array_equal(ids[j, :n], want[j][0])
        assert np.all(ids[j, n:] == -1)
    with pytest.raises(ValueError, match="both items and filter_items"):
        small_model.recommend(u, items=subset, filter_items=banned)


def test_n_is_capped_at_the_candidates_and_short_rows_are_padded(small_model):
    ids, scores = small_model.recommend([0, 1], N=1000, items=[1, 2, 3, 4, 5, 6],
                                        filter_already_liked_items=False)
    assert ids.shape == (2, 6) and np.all(ids >= 1)
    m = planted(n_users=3, n_items=6, groups=1, per_user=4, seed=1)
    tiny = encore.ALS(factors=2, iterations=2, device="cpu").fit(m, show_progress=False)
    ids, scores = tiny.recommend(0, N=10)
    assert ids.shape == (6,)
    left = 6 - len(liked(m, 0))
    assert np.all(ids[:left] >= 0) and np.all(ids[left:] == -1)
    assert np.all(np.isneginf(scores[left:])) and np.all(np.isfinite(scores[:left]))


def test_recommend_can_be_called_from_many_threads(small_model):
    from concurrent.futures import ThreadPoolExecutor
    users = np.arange(400)
    want = small_model.recommend(users, N=10)[0]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda u: small_model.recommend(u, N=10)[0], range(400)))
    assert np.array_equal(np.stack(got), want)


# -- similarity -------------------------------------------------------------------------------

def test_similar_items_and_users_rank_by_cosine_with_the_query_first(small_model):
    for side, f in (("items", small_model.item_factors), ("users", small_model.user_factors)):
        call = small_model.similar_items if side == "items" else small_model.similar_users
        unit = f / np.linalg.norm(f, axis=1, keepdims=True)
        for q in (0, 13):
            ids, scores = call(q, N=6)
            assert ids.shape == (6,) and ids[0] == q and scores[0] == pytest.approx(1.0, abs=1e-5)
            cos = unit @ unit[q]
            cos[q] = -np.inf
            order = np.lexsort((np.arange(len(cos)), -cos))[:5]
            assert np.array_equal(ids[1:], order)
            np.testing.assert_allclose(scores[1:], cos[order], rtol=1e-4, atol=1e-5)
        batch, _ = call([0, 13], N=6)
        assert batch.shape == (2, 6) and np.array_equal(batch[1], call(13, N=6)[0])


# -- fold-in ----------------------------------------------------------------------------------

def normal_equations(model, cols, plays):
    """The ALS user update for one history, solved in float64 by numpy: the fold-in oracle."""
    y = model.item_factors.astype(np.float64)
    lam, alpha, eps = model.regularization, model.alpha, model.epsilon
    w = alpha * np.log1p(plays / eps) if model.confidence == "log" else alpha * plays
    a = y.T @ y + lam * np.eye(y.shape[1]) + (y[cols].T * w) @ y[cols]
    b = ((1 + w)[:, None] * y[cols]).sum(0)
    return np.linalg.solve(a, b)


def test_recalculate_user_solves_the_als_normal_equations(small, small_model):
    x = small_model.recalculate_user(7, small[7])
    assert x.shape == (16,) and x.dtype == np.float32
    want = normal_equations(small_model, liked(small, 7), small[7].data.astype(np.float64))
    np.testing.assert_allclose(x, want, rtol=2e-3, atol=2e-5)
    xs = small_model.recalculate_user([7, 8], small[[7, 8]])
    assert xs.shape == (2, 16) and np.array_equal(xs[0], x)
    # recommend(recalculate_user=True) scores with exactly that factor.
    ids, scores = small_model.recommend(7, user_items=small[7], recalculate_user=True, N=5)
    s = small_model.item_factors @ x
    s[liked(small, 7)] = -np.inf
    np.testing.assert_allclose(scores, np.sort(s)[::-1][:5], rtol=1e-5, atol=1e-6)


def test_partial_fit_users_adds_and_updates_users_and_their_filter(small):
    m = encore.ALS(factors=8, iterations=4, solver="cholesky", device="cpu").fit(small, show_progress=False)
    n = small.shape[0]
    history = sp.csr_matrix(([5.0, 3.0, 9.0], ([0, 0, 0], [1, 2, 3])), shape=(1, small.shape[1]),
                            dtype=np.float32)
    m.partial_fit_users([n + 2], history)
    assert m.user_factors.shape == (n + 3, 8)
    assert np.all(m.user_factors[n:n + 2] == 0)
    np.testing.assert_array_equal(m.user_factors[n + 2], m.recalculate_user(0, history))
    ids, _ = m.recommend(n + 2, N=20)
    assert not {1, 2, 3} & set(ids)
    # An existing user's row is replaced, the others are kept.
    before = m.user_factors.copy()
    m.partial_fit_users([4], history)
    assert np.array_equal(m.user_factors[4], m.recalculate_user(0, history))
    assert np.array_equal(np.delete(m.user_factors, 4, 0), np.delete(before, 4, 0))
    with pytest.raises(ValueError, match="duplicate"):
        m.partial_fit_users([1, 1], sp.vstack([history, history]).tocsr())


def test_partial_fit_items_adds_items(small):
    m = encore.ALS(factors=8, iterations=4, device="cpu").fit(small, show_progress=False)
    n_items = small.shape[1]
    listeners = sp.csr_matrix(([4.0, 4.0], ([0, 0], [10, 11])), shape=(1, small.shape[0]),
                              dtype=np.float32)
    m.partial_fit_items([n_items], listeners)
    assert m.item_factors.shape == (n_items + 1, 8)
    np.testing.assert_array_equal(m.item_factors[n_items], m.recalculate_item(0, listeners))
    # The new item is a liked item of users 10 and 11 now, so it is filtered for them.
    ids, _ = m.recommend([10, 11, 12], N=n_items + 1)
    assert n_items not in ids[0] and n_items not in ids[1] and n_items in ids[2]


def test_assigning_factors_replaces_them(small):
    m = encore.ALS(factors=4, iterations=2, device="cpu").fit(small, show_progress=False)
    uf = np.zeros_like(m.user_factors)
    uf[:, 0] = 1.0
    itf = np.zeros_like(m.item_factors)
    itf[:, 0] = np.arange(itf.shape[0])
    m.user_factors, m.item_factors = uf, itf
    ids, _ = m.recommend(0, N=3, filter_already_liked_items=False)
    assert list(ids) == [itf.shape[0] - 1, itf.shape[0] - 2, itf.shape[0] - 3]
    with pytest.raises(ValueError, match="shape"):
        m.user_factors = np.zeros((3, 5), np.float32)


# -- devices ----------------------------------------------------------------------------------

def test_cpu_device_and_auto_say_where_they_run():
    assert encore.ALS(device="cpu").device == "cpu"
    auto = encore.ALS(device="auto")
    if encore.gpu_available():
        assert auto.device.startswith("gpu:")
    else:
        assert auto.device == "cpu" and auto.device_note
    with pytest.raises(ValueError, match="unknown device"):
        encore.ALS(device="tpu")


def test_gpu_without_a_gpu_raises_gpu_error_not_a_fallback():
    if encore.gpu_available():
        pytest.skip("this host has a usable GPU")
    with pytest.raises(encore.GpuError) as e:
        encore.ALS(device="gpu")
    assert isinstance(e.value, RuntimeError)
    if not _encore.driver_present():
        assert "no CUDA driver found" in str(e.value)
    with pytest.raises(encore.GpuError):
        encore.ALS(device="gpu:3")


def test_pip_cublas_is_found_in_site_packages_layouts(tmp_path):
    from encore._cuda import pip_cublas_candidates
    for rel in ["nvidia/cublas/lib/libcublas.so.12", "nvidia/cu13/lib/libcublas.so.13",
                "nvidia/cu13/lib/libcublasLt.so.13", "nvidia/cublas/lib/libcublas.so"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    found = pip_cublas_candidates([str(tmp_path)])
    assert [p.split("/nvidia/")[1] for p in found] == ["cu13/lib/libcublas.so.13",
                                                       "cublas/lib/libcublas.so.12"]


def test_a_panic_in_rust_is_a_runtime_error_not_a_panic_exception():
    for in_pool in (False, True):
        with pytest.raises(RuntimeError, match="internal error in Encore.*deliberate panic"):
            _encore._panic_for_tests(in_pool)


# -- save and load ----------------------------------------------------------------------------

def test_save_load_round_trip(small, small_model, tmp_path):
    small_model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "item_factors.npy", "model.json", "user_factors.npy"]
    assert np.array_equal(np.load(tmp_path / "m/user_factors.npy"), small_model.user_factors)
    back = encore.load(tmp_path / "m", device="cpu")
    assert np.array_equal(back.item_factors, small_model.item_factors)
    assert back.meta["config"] == small_model.meta["config"]
    assert (back.factors, back.solver) == (16, "cholesky")
    # Trained on an in-memory matrix: no training matrix comes back, and recommend says so.
    assert back.user_items is None
    with pytest.raises(ValueError, match="no training matrix"):
        back.recommend(0)
    a = small_model.recommend(np.arange(20), N=5)
    b = back.recommend(np.arange(20), user_items=small[:20], N=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(FileExistsError, match="already exists"):
        small_model.save(tmp_path / "m")
    small_model.save(tmp_path / "m", force=True)


def test_a_dataset_trained_model_reloads_with_its_training_matrix_and_names(hetrec, tmp_path):
    m = encore.ALS(factors=8, iterations=2, device="cpu").fit(hetrec.train, show_progress=False)
    assert m.meta["dataset"]["dir"] == hetrec.dir
    assert m.meta["dataset"]["content_hash"] == hetrec.manifest["content_hash"]
    m.save(tmp_path / "m")
    back = encore.load(tmp_path / "m", device="cpu")
    assert back.dataset is not None and back.user_items.nnz == hetrec.train.nnz
    assert np.array_equal(back.recommend(np.arange(30))[0], m.recommend(np.arange(30))[0])
    # A changed matrix is not the dataset any more.
    changed = hetrec.train.copy()
    changed._encore_dataset = hetrec.train._encore_dataset
    changed.data[0] += 1
    m2 = encore.ALS(factors=8, iterations=1, device="cpu").fit(changed, show_progress=False)
    assert m2.meta["dataset"]["dir"] == _encore.IN_MEMORY


# -- datasets ---------------------------------------------------------------------------------

def test_load_dataset_gives_train_valid_id_maps_and_names(hetrec, hetrec_dir):
    train, valid = hetrec
    assert train is hetrec.train and sp.issparse(train) and train.format == "csr"
    assert train.dtype == np.float32 and train.shape == valid.shape
    assert train.multiply(valid).nnz == 0
    assert np.all(np.diff(hetrec.user_ids) > 0)
    m = hetrec.manifest
    assert (train.shape[0], train.shape[1]) == (m["counts"]["kept"]["users"], m["counts"]["kept"]["items"])
    assert train.nnz + valid.nnz == m["counts"]["kept"]["pairs"]
    # Ids and names against the raw files, read independently here.
    names = {}
    for line in (hetrec_dir / "artists.dat").read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.split("\t")
        names[int(parts[0])] = parts[1]
    plays = {}
    for line in (hetrec_dir / "user_artists.dat").read_text().splitlines()[1:]:
        u, a, w = map(int, line.split("\t"))
        plays[(u, a)] = w
    row = hetrec.user_index(2)
    assert hetrec.user_ids[row] == 2 and hetrec.users[row] == 2
    cols = np.concatenate([liked(train, row), liked(valid, row)])
    for c in cols[:20]:
        artist = int(hetrec.item_ids[c])
        assert hetrec.item_index(artist) == c
        assert (2, artist) in plays
        if artist in names and names[artist].strip():
            assert hetrec.item_names[c] == " ".join(names[artist].split())
    dense = train[row].toarray().ravel() + valid[row].toarray().ravel()
    assert dense[hetrec.item_index(51)] == plays[(2, 51)]
    with pytest.raises(KeyError, match="unknown user"):
        hetrec.user_index(10**9)
    assert np.array_equal(hetrec.user_index(hetrec.user_ids[:5]), np.arange(5))


def test_prep_options_are_checked_and_outputs_protected(hetrec_dir, tmp_path):
    man = encore.prep(hetrec_dir, tmp_path / "d", min_user_tracks=20, valid_fraction=0.1,
                      show_progress=False)
    assert man["options"]["min_user_tracks"] == 20
    assert man["options"]["split"] == {"kind": "random", "fraction": 0.1, "seed": 42}
    with pytest.raises(FileExistsError, match="force"):
        encore.prep(hetrec_dir, tmp_path / "d", show_progress=False)
    encore.prep(hetrec_dir, tmp_path / "d", force=True, show_progress=False)
    with pytest.raises(ValueError, match="filter"):
        encore.prep(hetrec_dir, tmp_path / "e", filter="sometimes", show_progress=False)
    with pytest.raises(ValueError, match="valid-fraction"):
        encore.prep(hetrec_dir, tmp_path / "e", valid_fraction=1.5, show_progress=False)
    with pytest.raises(ValueError, match="needs timestamps"):
        encore.prep(hetrec_dir, tmp_path / "e", split="time", show_progress=False)
    with pytest.raises(FileNotFoundError):
        encore.prep(tmp_path / "missing.tsv", tmp_path / "e", show_progress=False)
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\t2\t3\n1\tx\t3\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: "):
        encore.prep(bad, tmp_path / "e", show_progress=False)


def test_prep_reads_chosen_columns_values_and_id_kinds(tmp_path):
    """The delimited-file options (`encore prep --user-column ... --value rating --min-value`):
    columns by name and by position, ratings kept at their highest, low ones dropped, ids as
    strings even where they look like numbers."""
    rng = np.random.default_rng(1)
    rows = [(int(rng.integers(1_600_000_000, 1_700_000_000)), f"{i}", f"{u}",
             float(rng.integers(1, 11)) / 2) for u in range(30) for i in rng.choice(40, 12, replace=False)]
    rows += [(1, "3", "0", 5.0), (2, "3", "0", 1.0)]  # a pair rated twice keeps its highest
    path = tmp_path / "ratings.txt"
    path.write_text("ts,item,user,score\n" + "".join(f"{t},{i},{u},{v}\n" for t, i, u, v in rows))
    encore.prep(path, tmp_path / "d", format="triples", user_column="user", item_column=2,
                value_column="score", value="rating", min_value=3.0, ids="string",
                min_user_tracks=1, min_track_users=1, valid_fraction=0.0, show_progress=False)
    ds = encore.load_dataset(tmp_path / "d")
    assert ds.user_ids.dtype.kind == "U" and ds.item_ids.dtype.kind == "U"
    want = {}
    for _, i, u, v in rows:
        want[(u, i)] = max(want.get((u, i), 0.0), v)
    want = {k: v for k, v in want.items() if v >= 3.0}
    coo = ds.train.tocoo()
    got = {(ds.user_ids[r], ds.item_ids[c]): v for r, c, v in zip(coo.row, coo.col, coo.data)}
    assert got == want
    with pytest.raises(ValueError, match="user_column"):
        encore.prep(path, tmp_path / "e", user_column=0, show_progress=False)
    with pytest.raises(ValueError, match="min_value"):
        encore.prep(path, tmp_path / "e", min_value=float("nan"), show_progress=False)


# -- evaluation -------------------------------------------------------------------------------

def reference_metrics(model, train, valid, k):
    """Encore's metric definitions written out in numpy (README, `encore eval`)."""
    users = np.flatnonzero(np.diff(valid.indptr))
    ranked = model.recommend(users, user_items=train[users], N=k)[0]
    p = r = nd = ap = 0.0
    hits_total = slots = 0
    for u, lst in zip(users, ranked):
        rel = set(liked(valid, u).tolist())
        hits, dcg, a = 0, 0.0, 0.0
        for i, item in enumerate(lst[:k]):
            if item in rel:
                hits += 1
                dcg += 1 / np.log2(i + 2)
                a += hits / (i + 1)
        ideal = min(k, len(rel))
        p += hits / k
        r += hits / len(rel)
        nd += dcg / sum(1 / np.log2(i + 2) for i in range(ideal))
        ap += a / ideal
        hits_total += hits
        slots += ideal
    n = len(users)
    cov = len(set(ranked[:, :k].ravel()) - {-1}) / train.shape[1]
    return dict(precision=p / n, recall=r / n, ndcg=nd / n, map=ap / n, coverage=cov,
                precision_implicit=hits_total / slots, users=n, k=k)


def test_evaluate_uses_encore_evals_definitions(hetrec):
    m = encore.ALS(factors=16, iterations=5, device="cpu").fit(hetrec.train, show_progress=False)
    got = encore.evaluate(m, hetrec.train, hetrec.valid, K=10)
    want = reference_metrics(m, hetrec.train, hetrec.valid, 10)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    # Any object with factors is evaluated by the same code.
    class Plain:
        user_factors = m.user_factors
        item_factors = m.item_factors
    plain = encore.evaluate(Plain(), hetrec.train, hetrec.valid)
    assert plain.keys() == got.keys()
    # (means are summed in parallel, so the last bits may differ from run to run)
    assert all(plain[key] == pytest.approx(got[key], rel=1e-12) for key in got)
    with pytest.raises(ValueError, match="K must be"):
        encore.evaluate(m, hetrec.train, hetrec.valid, K=0)


def split(m, seed=3):
    """A random 80/20 split of the pairs of each user with at least 2 (test helper)."""
    rng = np.random.default_rng(seed)
    coo = m.tocoo()
    hold = rng.random(coo.nnz) < 0.2
    t = sp.csr_matrix((coo.data[~hold], (coo.row[~hold], coo.col[~hold])), shape=m.shape)
    v = sp.csr_matrix((coo.data[hold], (coo.row[hold], coo.col[hold])), shape=m.shape)
    return t.astype(np.float32), v.astype(np.float32)


# -- docs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    encore.ALS, encore.ALS.fit, encore.ALS.recommend, encore.ALS.similar_items,
    encore.ALS.similar_users, encore.ALS.recalculate_user, encore.ALS.recalculate_item,
    encore.ALS.partial_fit_users, encore.ALS.partial_fit_items, encore.ALS.save,
    encore.ALS.to_gpu, encore.prep, encore.load, encore.load_dataset, encore.evaluate,
    encore.gpu_available, encore.IdMap.index, encore.IdMap.original,
], ids=lambda f: f.__qualname__)
def test_help_explains_every_argument(fn):
    """Every argument has an entry (``name : type`` and its explanation) in the docstring's
    Parameters section, which is what help() shows."""
    doc = inspect.getdoc(fn)
    assert "Parameters\n----------\n" in doc, fn.__qualname__
    section = doc.split("Parameters\n----------\n", 1)[1].split("\n\n")[0]
    documented = set()
    for entry in re.findall(r"^\*{0,2}(\w[\w, ]*?)\s*:", section, re.M):
        documented |= {name.strip() for name in entry.split(",")}
    for p in inspect.signature(fn).parameters:
        if p != "self":
            assert p in documented, f"{fn.__qualname__}: {p} has no Parameters entry"


def test_the_stub_lists_what_the_extension_has():
    import ast
    from pathlib import Path
    stub = ast.parse((Path(encore.__file__).parent / "_encore.pyi").read_text())
    declared = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {t.id for n in stub.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    actual = {n for n in dir(_encore) if not n.startswith("__")} | {"__version__"}
    assert declared == actual
    model_stub = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "Model")
    methods = {n.name for n in model_stub.body if isinstance(n, ast.FunctionDef)}
    assert methods == {n for n in dir(_encore.Model) if not n.startswith("_")}
