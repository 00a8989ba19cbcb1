"""Original ids: ``load_dataset`` gives integer ids as int64 arrays and string ids as numpy
``str`` arrays, and ``recommend``/``similar_*`` with ``ids="original"`` take and answer in them
(what ``encore recommend --user`` does), for integer (HetRec) and string datasets alike."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

import encore

from conftest import planted

# Non-ASCII on purpose: the ids cross from UTF-8 (Rust) to UTF-32 (numpy), and their order
# (byte-wise UTF-8 in the core, code points in numpy) must agree for the lookups.
def user_name(u: int) -> str:
    return f"listener-{u:03d}" if u % 3 else f"höre-{u:03d}-ß"


def item_name(i: int) -> str:
    return f"trk-{i:04d}" if i % 4 else f"曲-{i}-é"


@pytest.fixture(scope="module")
def str_raw(tmp_path_factory):
    m = planted(n_users=120, n_items=90, per_user=20, seed=4).tocoo()
    path = tmp_path_factory.mktemp("strids") / "plays.tsv"
    with open(path, "w", encoding="utf-8") as f:
        for u, i, v in zip(m.row, m.col, m.data):
            f.write(f"{user_name(u)}\t{item_name(i)}\t{int(v)}\n")
    return path, m


@pytest.fixture(scope="module")
def str_ds(str_raw, tmp_path_factory):
    path, _ = str_raw
    out = tmp_path_factory.mktemp("strds") / "ds"
    man = encore.prep(path, out, show_progress=False)
    assert man["options"]["ids"] == "str"  # what auto found
    return encore.load_dataset(out)


@pytest.fixture(scope="module")
def str_model(str_ds):
    return encore.ALS(factors=8, iterations=3, device="cpu").fit(str_ds.train, show_progress=False)


def test_string_ids_load_as_ascending_str_arrays_matching_the_input(str_raw, str_ds):
    _, m = str_raw
    for ids, names in ((str_ds.user_ids, {user_name(u) for u in set(m.row)}),
                       (str_ds.item_ids, {item_name(i) for i in set(m.col)})):
        assert ids.dtype.kind == "U"
        assert np.all(ids[1:] > ids[:-1])
        assert set(ids.tolist()) <= names and len(ids) > 0.9 * len(names)
    # Every pair lands where its ids say, with its count.
    plays = {(user_name(u), item_name(i)): v for u, i, v in zip(m.row, m.col, m.data)}
    both = (str_ds.train + str_ds.valid).tocoo()
    for r, c, v in list(zip(both.row, both.col, both.data))[:300]:
        assert plays[(str_ds.user_ids[r], str_ds.item_ids[c])] == v
    assert str_ds.users.kind == "str" and str_ds.user_index("höre-000-ß") == 0


def test_integer_ids_load_as_int64(hetrec):
    assert hetrec.user_ids.dtype == np.int64 and hetrec.item_ids.dtype == np.int64
    assert hetrec.users.kind == "int"


def test_recommend_takes_and_answers_original_string_ids(str_ds, str_model):
    rows = np.array([0, 5, 17])
    users = str_ds.user_ids[rows]
    by_index, scores = str_model.recommend(rows, N=6)
    got, got_scores = str_model.recommend(users, N=6, ids="original")
    assert got.dtype.kind == "U" and got.shape == (3, 6)
    assert np.array_equal(got, str_ds.item_ids[by_index]) and np.array_equal(got_scores, scores)
    one, _ = str_model.recommend(str(users[1]), N=6, ids="original")
    assert one.shape == (6,) and np.array_equal(one, got[1])
    # filter_items and items are original ids too.
    banned = got[:, :2].ravel()
    filtered, _ = str_model.recommend(users, N=6, ids="original", filter_items=banned)
    assert not set(filtered.ravel()) & set(banned)
    subset = str_ds.item_ids[[3, 30, 60, 61]]
    only, _ = str_model.recommend(users, N=10, ids="original", items=subset,
                                  filter_already_liked_items=False)
    assert only.shape == (3, 4) and all(set(r) == set(subset) for r in only)


def test_short_lists_pad_with_an_empty_string(str_ds, str_model):
    user = str_ds.user_ids[0]
    liked = str_ds.train[0].indices
    subset = str_ds.item_ids[np.union1d(liked[:2], [np.setdiff1d(np.arange(90), liked)[0]])]
    ids, scores = str_model.recommend(user, N=3, ids="original", items=subset)
    assert ids.shape == (3,) and ids[0] != "" and list(ids[1:]) == ["", ""]
    assert np.all(np.isneginf(scores[1:]))


def test_similar_takes_and_answers_original_ids(str_ds, str_model):
    item = str_ds.item_ids[7]
    ids, scores = str_model.similar_items(item, N=5, ids="original")
    want, want_scores = str_model.similar_items(7, N=5)
    assert ids[0] == item and np.array_equal(ids, str_ds.item_ids[want])
    assert np.array_equal(scores, want_scores)
    users, _ = str_model.similar_users(str_ds.user_ids[[2, 3]], N=4, ids="original")
    assert users.shape == (2, 4) and list(users[:, 0]) == list(str_ds.user_ids[[2, 3]])


def test_original_integer_ids_on_hetrec(hetrec):
    m = encore.ALS(factors=8, iterations=2, device="cpu").fit(hetrec.train, show_progress=False)
    assert m.dataset is hetrec
    ids, _ = m.recommend(2, N=5, ids="original")  # HetRec user 2, not row 2
    want, _ = m.recommend(hetrec.user_index(2), N=5)
    assert ids.dtype == np.int64 and np.array_equal(ids, hetrec.item_ids[want])
    with pytest.raises(KeyError, match="unknown user"):
        m.recommend(1, ids="original")  # HetRec numbers users from 2
    with pytest.raises(KeyError, match="integers"):
        m.recommend("2", ids="original")


def test_bad_original_id_requests_say_what_to_do(str_ds, str_model, small_model):
    with pytest.raises(KeyError, match="unknown user id"):
        str_model.recommend("nobody", ids="original")
    with pytest.raises(KeyError, match="unknown item id"):
        str_model.recommend(str_ds.user_ids[0], ids="original", filter_items=["trk-9999"])
    with pytest.raises(KeyError, match="strings"):
        str_model.recommend(5, ids="original")
    with pytest.raises(ValueError, match="ids='original'"):
        str_model.recommend("höre-000-ß")
    with pytest.raises(ValueError, match="'index' or 'original'"):
        str_model.recommend(0, ids="names")
    # A model fitted on a matrix that is not a dataset's knows no ids.
    assert small_model.dataset is None
    with pytest.raises(ValueError, match="needs the model's dataset"):
        small_model.recommend(0, ids="original")


def test_a_saved_string_id_model_answers_as_the_cli(encore_cli, str_ds, str_model, tmp_path):
    str_model.save(tmp_path / "m")
    back = encore.load(tmp_path / "m", device="cpu")
    assert back.dataset is not None and back.dataset.user_ids.dtype.kind == "U"
    for user in str_ds.user_ids[[0, 1, 40]]:
        out = subprocess.run([str(encore_cli), "--quiet", "recommend", str(tmp_path / "m"),
                              "--user", user, "-k", "8", "--json", "--device", "cpu"],
                             check=True, capture_output=True, text=True).stdout
        want = json.loads(out)
        ids, scores = back.recommend(user, N=8, ids="original")
        assert [t["id"] for t in want["tracks"]] == ids.tolist()
        np.testing.assert_array_equal(np.float32([t["score"] for t in want["tracks"]]), scores)
