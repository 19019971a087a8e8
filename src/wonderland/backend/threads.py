"""One threading policy for the whole library.

wonderland runs its own parallel work (convolution chunks, slices of large optimiser
updates) on **one** pool of worker threads, sized from the cores this process may run on
(``os.sched_getaffinity``), or from ``WONDERLAND_NUM_THREADS``, or from
:func:`set_num_threads`. Three rules keep it from fighting other processes for the cores:

* **BLAS runs single-threaded by default.** OpenBLAS's threads synchronise by spinning:
  when another process takes a core, the thread left waiting burns its time slice and a
  matrix product slows down many times over (measured in ``benchmarks/README.md``). The
  library's parallelism comes from the pool instead, whose idle threads sleep. Callers
  who own the machine may give BLAS more threads with ``set_num_threads(n,
  blas_threads=k)`` or ``WONDERLAND_BLAS_THREADS``; BLAS is still limited to one thread
  while the pool's own threads run, so the two never multiply.
* **No spinning waits.** Each pool thread sleeps on a lock of its own until it is handed
  work, and the caller sleeps on a lock until the thread is done: one wake-up each way,
  the cheapest hand-off Python offers (no queue, no futures).
  When wonderland is imported before NumPy, ``OPENBLAS_THREAD_TIMEOUT`` is set (unless the
  user set it) so that idle OpenBLAS threads go to sleep at once instead of spinning for
  about a tenth of a second after each call; the variable only takes effect if it is set
  before NumPy loads OpenBLAS.
* **Small jobs run inline**, and work submitted from inside a pool thread runs inline
  too, so nested parallel calls can never deadlock; so does work submitted while another
  thread of the program has the pool (the two never queue behind each other).
"""

from __future__ import annotations

import contextlib
import os
import threading

NUM_THREADS_ENV = "WONDERLAND_NUM_THREADS"
BLAS_THREADS_ENV = "WONDERLAND_BLAS_THREADS"

_lock = threading.RLock()
_local = threading.local()
_state = {"size": None, "blas": None, "pool": None, "controllers": None, "blas_set": None}
_blas_users = [0]            # callers currently holding BLAS at one thread
_blas_saved = [None]         # BLAS thread counts to restore when the last one leaves


def available_cores() -> int:
    """How many cores this process may run on (its CPU affinity, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _positive_int(value, what) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{what} must be a positive integer, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{what} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return n


def _env_int(name, default) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    return _positive_int(raw, f"the environment variable {name}")


def get_num_threads() -> int:
    """The number of threads wonderland's parallel work uses (the caller included)."""
    with _lock:
        if _state["size"] is None:
            _state["size"] = _env_int(NUM_THREADS_ENV, available_cores())
        return _state["size"]


def get_blas_threads() -> int:
    """The number of threads BLAS may use outside the pool (1 unless raised)."""
    with _lock:
        if _state["blas"] is None:
            _state["blas"] = _env_int(BLAS_THREADS_ENV, 1)
        return _state["blas"]


def set_num_threads(n: int, blas_threads: int | None = None) -> None:
    """Use ``n`` threads for wonderland's parallel work (1: everything on the calling
    thread). ``blas_threads`` (default: unchanged, initially 1) is how many threads BLAS
    may use for products called outside the pool; keep it at 1 on a shared machine."""
    n = _positive_int(n, "set_num_threads: n")
    if blas_threads is not None:
        blas_threads = _positive_int(blas_threads, "set_num_threads: blas_threads")
    with _lock:
        old = _state["pool"]
        _state["size"], _state["pool"] = n, None
        if blas_threads is not None:
            _state["blas"] = blas_threads
    if old is not None:
        old.shutdown()
    apply_blas_policy()


# ----------------------------------------------------------------------------- BLAS
def _blas_controllers(refresh=False):
    with _lock:
        if _state["controllers"] is None or refresh:
            try:
                from threadpoolctl import ThreadpoolController

                _state["controllers"] = [c for c in ThreadpoolController().lib_controllers
                                         if c.user_api == "blas"]
            except Exception:  # pragma: no cover - threadpoolctl is a dependency
                _state["controllers"] = []
        return _state["controllers"]


def blas_thread_counts() -> list:
    """The current thread count of every BLAS library loaded in the process."""
    return [c.num_threads for c in _blas_controllers()]


def apply_blas_policy() -> None:
    """Set every BLAS library loaded so far to :func:`get_blas_threads` threads (if the
    pool is running, that count is restored when it finishes)."""
    target = get_blas_threads()
    with _lock:
        if _blas_users[0]:
            _blas_saved[0] = [target] * len(_blas_controllers())
            _state["blas_set"] = None
            return
        for c in _blas_controllers(refresh=True):
            if c.num_threads != target:
                c.set_num_threads(target)
        _state["blas_set"] = target


@contextlib.contextmanager
def single_threaded_blas():
    """Hold every BLAS library at one thread for the duration (re-entrant, shared
    between threads: the counts are restored when the last holder leaves). Free when the
    policy has already set BLAS to one thread (the default): nothing to change."""
    if _state["blas_set"] == 1:
        yield
        return
    with _lock:
        if _blas_users[0] == 0:
            controllers = _blas_controllers()
            _blas_saved[0] = [c.num_threads for c in controllers]
            for c in controllers:
                if c.num_threads != 1:
                    c.set_num_threads(1)
        _blas_users[0] += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users[0] -= 1
            if _blas_users[0] == 0:
                for c, n in zip(_blas_controllers(), _blas_saved[0]):
                    if c.num_threads != n:
                        c.set_num_threads(n)


# ----------------------------------------------------------------------------- the pool
class _Worker:
    """One pool thread: it sleeps on ``_go`` until handed a list of tasks, runs them,
    keeps the first error and releases ``_done``."""

    def __init__(self, name):
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._tasks, self.error = None, None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self):
        _local.in_pool = True
        while True:
            self._go.acquire()
            tasks = self._tasks
            if tasks is None:                       # shut down
                return
            try:
                for task in tasks:
                    task()
            except BaseException as err:            # re-raised on the caller's thread
                self.error = err
            finally:
                self._tasks = None
                self._done.release()

    def start(self, tasks):
        self.error, self._tasks = None, tasks
        self._go.release()

    def join(self):
        """Wait for the tasks handed over by ``start``; return their first error."""
        self._done.acquire()
        return self.error

    def stop(self):
        self._tasks = None
        self._go.release()
        self._thread.join()


class _Pool:
    """``size - 1`` persistent workers; one caller at a time hands them work (``busy``)."""

    def __init__(self, size):
        self.busy = threading.Lock()
        self.workers = [_Worker(f"wl_{i}") for i in range(size - 1)]

    def shutdown(self):
        with self.busy:
            for worker in self.workers:
                worker.stop()


def _pool(size):
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = _Pool(size)
        return _state["pool"]


def in_worker() -> bool:
    """True on one of the pool's threads (where parallel calls run inline)."""
    return getattr(_local, "in_pool", False)


def _run_inline(tasks):
    for task in tasks:
        task()


def run_parallel(tasks) -> None:
    """Run the callables ``tasks`` (no arguments), the first on the calling thread and
    the others on the pool (task ``i`` on lane ``i mod size``), with BLAS at one thread;
    return when all have finished and re-raise the first error. Runs them one after
    another where threads cannot help: one task, a pool of one, a call from a pool
    thread, or the pool busy with another thread's work."""
    tasks = list(tasks)
    size = get_num_threads()
    if len(tasks) <= 1 or size <= 1 or in_worker():
        _run_inline(tasks)
        return
    pool = _pool(size)
    if not pool.busy.acquire(blocking=False):
        _run_inline(tasks)
        return
    try:
        lanes = min(size, len(tasks))
        workers = pool.workers[:lanes - 1]
        with single_threaded_blas():
            for i, worker in enumerate(workers, start=1):
                worker.start(tasks[i::lanes])
            try:
                _run_inline(tasks[0::lanes])
            finally:
                errors = [worker.join() for worker in workers]
    finally:
        pool.busy.release()
    for err in errors:
        if err is not None:
            raise err


MIN_PARALLEL_WORK = 1 << 19   # elements of work below which a thread hand-off does not pay


def parallel_for(n_items: int, work, size=None, min_size: int | None = None) -> None:
    """Split ``range(n_items)`` into up to :func:`get_num_threads` contiguous parts and
    run ``work(lo, hi, lane)`` on each in parallel (lane numbers the part); compiled
    kernels release the GIL, so their parts run at once. With ``size`` (the job's work
    in elements) below ``min_size`` everything runs inline: a thread hand-off costs more
    than a small job (``min_size`` defaults to ``MIN_PARALLEL_WORK``)."""
    if min_size is None:
        min_size = MIN_PARALLEL_WORK
    parts = min(get_num_threads(), n_items)
    if parts <= 1 or in_worker() or (size is not None and size < min_size):
        work(0, n_items, 0)
        return
    bounds = [n_items * i // parts for i in range(parts + 1)]
    run_parallel([(lambda lo=lo, hi=hi, lane=lane: work(lo, hi, lane))
                  for lane, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))])


def _reset_after_fork():
    # a forked child has none of the parent's threads: start afresh on first use
    _state["pool"] = None
    _blas_users[0] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


__all__ = ["available_cores", "get_num_threads", "set_num_threads", "get_blas_threads",
           "apply_blas_policy", "single_threaded_blas", "blas_thread_counts", "run_parallel",
           "parallel_for", "in_worker", "MIN_PARALLEL_WORK", "NUM_THREADS_ENV", "BLAS_THREADS_ENV"]
