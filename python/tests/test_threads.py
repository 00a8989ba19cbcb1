"""The GIL is released around long calls (another Python thread runs during fit), and Ctrl-C
stops a long fit between half-steps with KeyboardInterrupt, leaving the model unchanged."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import encore

from conftest import planted


@pytest.fixture(scope="module")
def bigger():
    return planted(n_users=3000, n_items=2000, per_user=60, seed=11)


def test_another_python_thread_runs_during_fit(bigger):
    stamps = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    t = threading.Thread(target=spin)
    m = encore.ALS(factors=64, iterations=40, device="cpu")
    t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    m.fit(bigger, show_progress=False)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = np.array([s for s in stamps if start < s < end])
    assert end - start > 0.2, "fit too short to measure"
    # With the GIL held for the whole fit, the spinning thread would record nothing inside it
    # (it only gets the GIL back at the end). Released, it runs throughout: stamps in every
    # tenth of the fit.
    bins = np.histogram(during, bins=10, range=(start, end))[0]
    assert np.all(bins > 0), bins


def test_ctrl_c_interrupts_a_long_fit_cleanly(bigger, small):
    m = encore.ALS(factors=32, iterations=2, device="cpu").fit(small, show_progress=False)
    before = m.user_factors.copy()
    m.iterations = 10_000
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        m.fit(bigger, show_progress=False)
    elapsed = time.perf_counter() - start
    timer.join()
    # 10,000 iterations would take minutes; the stop comes within a half-step of the signal.
    assert elapsed < 5, elapsed
    assert np.array_equal(m.user_factors, before)
    # The model still works, and a new fit runs to the end.
    assert m.recommend(0, N=3)[0].shape == (3,)
    m.iterations = 2
    m.fit(bigger, show_progress=False)
    assert m.user_factors.shape[0] == bigger.shape[0]
