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


def test_a_python_model_works_with_encore_eval_and_recommend(encore_cli, hetrec, hetrec_ds_dir, tmp_path):
    m = encore.ALS(factors=16, iterations=3, device="cpu").fit(hetrec.train, show_progress=False)
    m.save(tmp_path / "py-model")
    ev = json.loads(cli(encore_cli, "eval", hetrec_ds_dir, tmp_path / "py-model", "--json",
                        "--device", "cpu"))
    got = encore.evaluate(m, hetrec.train, hetrec.valid, K=10)
    for key in ("precision", "recall", "ndcg", "map", "coverage", "users"):
        assert ev["model"][key] == pytest.approx(got[key], rel=1e-12), key
    user = int(hetrec.user_ids[3])
    rec = json.loads(cli(encore_cli, "recommend", tmp_path / "py-model", "--user", user, "--json",
                         "--device", "cpu"))
    ids, _ = m.recommend(3, N=10)
    assert [t["id"] for t in rec["tracks"]] == hetrec.item_ids[ids].tolist()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_recalculate_user_answers_as_the_servers_fold_in(encore_cli, cli_model, hetrec):
    port = free_port()
    server = subprocess.Popen([str(encore_cli), "--quiet", "serve", str(cli_model), "--device",
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
        m = encore.load(cli_model, device="cpu")
        row = hetrec.valid[5]  # a history the model was not trained on
        history = [{"track": int(hetrec.item_ids[c]), "plays": float(v)}
                   for c, v in zip(row.indices, row.data)]
        req = urllib.request.Request(base + "/v1/recommend/history", method="POST",
                                     data=json.dumps({"history": history, "k": 10}).encode(),
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=10).read())
        ids, scores = m.recommend(0, user_items=row, recalculate_user=True, N=10)
        assert [t["track_id"] for t in answer["tracks"]] == hetrec.item_ids[ids].tolist()
        np.testing.assert_array_equal(np.float32([t["score"] for t in answer["tracks"]]), scores)
    finally:
        server.terminate()
        server.wait(timeout=10)
