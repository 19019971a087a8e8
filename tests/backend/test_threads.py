"""One threading policy: a single pool sized from the cores available, BLAS at one thread
while it runs (and by default), no spinning idle threads."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import wonderland as wl
from wonderland.backend import threads


def _python(code, **env):
    """Run ``code`` in a fresh interpreter with ``env`` added; return its last stdout line."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("WONDERLAND_NUM_THREADS", "WONDERLAND_BLAS_THREADS",
                         "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_pool_size_follows_the_cpu_affinity():
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "import wonderland as wl; print(wl.get_num_threads())")
    assert _python(code) == "1"
    assert _python("import os, wonderland as wl; "
                   "print(wl.get_num_threads() == len(os.sched_getaffinity(0)))") == "True"


def test_environment_variable_sets_the_pool_size():
    assert _python("import wonderland as wl; print(wl.get_num_threads())",
                   WONDERLAND_NUM_THREADS="3") == "3"
    code = ("import wonderland as wl\ntry:\n    wl.get_num_threads()\n"
            "except ValueError as e:\n    print(e)")
    assert _python(code, WONDERLAND_NUM_THREADS="many") == (
        "the environment variable WONDERLAND_NUM_THREADS must be a positive integer, got 'many'")


def test_set_num_threads_checks_its_argument(set_threads):
    set_threads(3)
    assert wl.get_num_threads() == 3
    with pytest.raises(ValueError, match="set_num_threads: n must be a positive integer, got 0"):
        wl.set_num_threads(0)
    with pytest.raises(TypeError, match="set_num_threads: n must be a positive integer, got 2.5"):
        wl.set_num_threads(2.5)
    assert wl.get_num_threads() == 3


def test_convolution_and_optimiser_share_one_pool(set_threads):
    set_threads(2)
    x = wl.random.normal((64, 16, 16, 8))
    conv = wl.nn.Conv2d(8, 16, 3)
    conv(x).sum().backward()                                   # parallel column chunks
    big = wl.nn.Parameter(np.ones(300_000, np.float32))
    big.grad = wl.ones(300_000)
    wl.optim.Adam([big], 1e-3).step()                           # parallel slices
    names = [t.name for t in threading.enumerate() if t.name.startswith("wl")]
    assert names and all(n.startswith("wl_") for n in names), names
    assert len(names) <= 1                                      # n - 1 workers for n = 2


def test_blas_runs_single_threaded_while_the_pool_runs(set_threads):
    set_threads(2, blas_threads=2)
    try:
        if not threads.blas_thread_counts():
            pytest.skip("no BLAS library that threadpoolctl can control")
        assert set(threads.blas_thread_counts()) == {2}
        seen = []
        threads.run_parallel([lambda: seen.append(set(threads.blas_thread_counts()))] * 2)
        assert seen == [{1}, {1}]
        assert set(threads.blas_thread_counts()) == {2}
    finally:
        wl.set_num_threads(wl.get_num_threads(), blas_threads=1)
    assert set(threads.blas_thread_counts()) == {1}


def test_blas_is_single_threaded_by_default():
    code = ("import json, wonderland as wl; from threadpoolctl import threadpool_info; "
            "print(json.dumps([p['num_threads'] for p in threadpool_info() "
            "if p['user_api'] == 'blas']))")
    counts = json.loads(_python(code))
    assert counts and set(counts) == {1}


def test_idle_blas_threads_do_not_spin():
    """With BLAS allowed two threads, the CPU time used while the process sleeps after
    some products must stay near zero (OpenBLAS's default spins for ~0.1 s per call)."""
    code = ("import time, wonderland as wl\n"
            "a = wl.random.normal((512, 512))\n"
            "for _ in range(5):\n    a @ a\n"
            "t0 = time.process_time(); time.sleep(0.5); print(time.process_time() - t0)")
    idle = float(_python(code, WONDERLAND_BLAS_THREADS="2"))
    assert idle < 0.03
    user_choice = "import os, wonderland; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    assert _python(user_choice, OPENBLAS_THREAD_TIMEOUT="20") == "20"


def test_nested_parallel_calls_run_inline_and_errors_propagate(set_threads):
    set_threads(2)
    done = []

    def inner(lo, hi, lane):
        done.append((lo, hi, threads.in_worker()))

    threads.run_parallel([lambda: threads.parallel_for(4, inner)] * 2)
    assert sorted(d[:2] for d in done).count((0, 4)) == 1     # nested on the worker: inline
    assert len(done) == 3

    def boom():
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        threads.run_parallel([lambda: None, boom])


def test_every_task_runs_once_and_the_pool_survives_errors(set_threads):
    set_threads(2)
    ran = []
    threads.run_parallel([(lambda i=i: ran.append(i)) for i in range(5)])   # 5 tasks, 2 lanes
    assert sorted(ran) == [0, 1, 2, 3, 4]

    def boom():
        raise ValueError("on the calling thread")

    with pytest.raises(ValueError, match="on the calling thread"):
        threads.run_parallel([boom, lambda: ran.append("worker")])
    assert ran[-1] == "worker"                          # the worker's task still finished
    ran.clear()
    threads.run_parallel([lambda: ran.append(0), lambda: ran.append(1)])    # usable again
    assert sorted(ran) == [0, 1]


def test_a_second_caller_runs_inline_while_the_pool_is_busy(set_threads):
    """Two threads of a program calling parallel work at once: the second runs its tasks
    on its own thread instead of queueing behind the first (so it cannot deadlock)."""
    set_threads(2)
    seen = []

    def second_caller():
        me = threading.get_ident()
        threads.run_parallel([lambda: seen.append(threading.get_ident() == me)] * 2)

    def first_task():
        other = threading.Thread(target=second_caller)
        other.start()
        other.join()

    threads.run_parallel([first_task, lambda: None])
    assert seen == [True, True]


def test_resizing_the_pool_stops_the_old_workers(set_threads):
    set_threads(3)
    threads.run_parallel([lambda: None] * 3)
    old = [t for t in threading.enumerate() if t.name.startswith("wl_")]
    assert len(old) == 2
    set_threads(2)
    assert not any(t.is_alive() for t in old)
    lanes = set()
    threads.run_parallel([lambda: lanes.add(threading.get_ident())] * 2)
    assert len(lanes) == 2
    assert len([t for t in threading.enumerate() if t.name.startswith("wl_")]) == 1
