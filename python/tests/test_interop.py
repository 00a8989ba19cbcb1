"""The CLI and the Python package share one model directory format and one core: a model
trained by `encore train` opens in Python and answers as `encore recommend` does; a model
trained in Python with the same settings is the CLI's, bit for bit, and `encore eval`,
`encore recommend` and `encore serve` accept it; the server's fold-in answers as
`recommend(recalculate_user=True)` does."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest

import encore


def cli(encore_cli, *args):
    out = subprocess.run([str(encore_cli), "--quiet", *map(str, args)], check=True,
                         capture_output=True, text=True)
    return out.stdout


SETTINGS = dict(factors=16, iterations=4, solver="cholesky")


@pytest.fixture(scope="module")
def cli_model(encore_cli, hetrec_ds_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    cli(encore_cli, "--threads", 2, "train", hetrec_ds_dir, "--out", out, "--device", "cpu",
        "--factors", SETTINGS["factors"], "--iterations", SETTINGS["iterations"],
        "--solver", SETTINGS["solver"])
    return out


def test_a_cli_model_opens_in_python_and_recommends_as_the_cli_does(encore_cli, cli_model, hetrec_ds_dir):
    m = encore.load(cli_model, device="cpu")
    assert m.dataset is not None and m.factors == SETTINGS["factors"]
    ds = m.dataset
    for user in ds.user_ids[[0, 7, 100]]:
        want = json.loads(cli(encore_cli, "recommend", cli_model, "--user", user, "-k", 10,
                              "--json", "--device", "cpu"))
        ids, scores = m.recommend(ds.user_index(int(user)), N=10)
        assert [t["id"] for t in want["tracks"]] == ds.item_ids[ids].tolist()
        assert [t["name"] for t in want["tracks"]] == ds.item_names[ids].tolist()
        np.testing.assert_array_equal(np.float32([t["score"] for t in want["tracks"]]), scores)


def test_python_training_is_the_clis_bit_for_bit(cli_model, hetrec):
    m = encore.ALS(**SETTINGS, threads=2, device="cpu").fit(hetrec.train, show_progress=False)
    assert np.array_equal(m.user_factors, np.load(cli_model / "user_factors.npy"))
    assert np.array_equal(m.item_factors, np.load(cli_model / "item_factors.npy"))
    cli_meta = json.loads((cli_model / "model.json").read_text())
    assert m.meta["config"] == cli_meta["config"]
    assert m.meta["dataset"] == cli_meta["dataset"]


def test_the_cli_defaults_are_the_pythons(encore_cli, hetrec_ds_dir, tmp_path):
    cli(encore_cli, "train", hetrec_ds_dir, "--out", tmp_path / "m", "--iterations", 1, "--device", "cpu")
    cfg = json.loads((tmp_path / "m/model.json").read_text())["config"]
    py = json.loads(encore.ALS(iterations=1, device="cpu")._config_json())
    assert py == cfg


@pytest.fixture(scope="module")
def py_model(hetrec, tmp_path_factory):
    """A model trained in Python on the dataset's matrix and saved: the CLI's input below."""
    m = encore.ALS(**SETTINGS, threads=2, device="cpu").fit(hetrec.train, show_progress=False)
    out = tmp_path_factory.mktemp("py") / "model"
    m.save(out)
    return m, out


def test_a_python_model_works_with_encore_eval_and_recommend(encore_cli, py_model, hetrec, hetrec_ds_dir):
    m, saved = py_model
    ev = json.loads(cli(encore_cli, "eval", hetrec_ds_dir, saved, "--json", "--device", "cpu"))
    got = encore.evaluate(m, hetrec.train, hetrec.valid, K=10)
    for key in ("precision", "recall", "ndcg", "map", "coverage", "users"):
        assert ev["model"][key] == pytest.approx(got[key], rel=1e-12), key
    # `encore recommend` on the Python model answers as the Python model does: ids, names and
    # scores, bit for bit (the CLI finds the dataset, and so the names, through model.json).
    for row in (0, 3, 7, 100):
        user = int(hetrec.user_ids[row])
        rec = json.loads(cli(encore_cli, "recommend", saved, "--user", user, "-k", 10, "--json",
                             "--device", "cpu"))
        ids, scores = m.recommend(row, N=10)
        assert [t["id"] for t in rec["tracks"]] == hetrec.item_ids[ids].tolist()
        assert [t["name"] for t in rec["tracks"]] == hetrec.item_names[ids].tolist()
        np.testing.assert_array_equal(np.float32([t["score"] for t in rec["tracks"]]), scores)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("trained_by", ["cli", "python"])
def test_recalculate_user_is_the_servers_fold_in(encore_cli, cli_model, py_model, hetrec, trained_by):
    """`encore serve` on a CLI or a Python model: `/v1/recommend/history` ranks and scores a
    history it has never seen exactly as `recommend(recalculate_user=True)` does, and the
    factor its scores imply is `recalculate_user`'s."""
    served = cli_model if trained_by == "cli" else py_model[1]
    port = free_port()
    server = subprocess.Popen([str(encore_cli), "--quiet", "serve", str(served), "--device",
                               "cpu", "--addr", f"127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"encore serve exited: {server.stderr.read().decode()}")
                time.sleep(0.1)
        m = encore.load(served, device="cpu")
        k = 4 * SETTINGS["factors"]
        for row in (5, 40):
            history_row = hetrec.valid[row]  # histories the model was not trained on
            history = [{"track": int(hetrec.item_ids[c]), "plays": float(v)}
                       for c, v in zip(history_row.indices, history_row.data)]
            req = urllib.request.Request(base + "/v1/recommend/history", method="POST",
                                         data=json.dumps({"history": history, "k": k}).encode(),
                                         headers={"Content-Type": "application/json"})
            answer = json.loads(urllib.request.urlopen(req, timeout=10).read())
            ids, scores = m.recommend(0, user_items=history_row, recalculate_user=True, N=k)
            assert [t["id"] for t in answer["tracks"]] == hetrec.item_ids[ids].tolist()
            served_scores = np.float32([t["score"] for t in answer["tracks"]])
            np.testing.assert_array_equal(served_scores, scores)
            # The server does not expose its factor, but its k = 4 x factors scores are linear
            # in it: solving Y[ids] x = scores gives it back, to float32 rounding.
            x_served = np.linalg.lstsq(m.item_factors[ids].astype(np.float64),
                                       served_scores.astype(np.float64), rcond=None)[0]
            x = m.recalculate_user(0, history_row)
            np.testing.assert_allclose(x_served, x, rtol=1e-3, atol=1e-4 * np.abs(x).max())
    finally:
        server.terminate()
        server.wait(timeout=10)
