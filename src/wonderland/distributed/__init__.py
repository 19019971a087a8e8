"""Several processes training one model: the ranks of an MPI job.

Launch a script with MPI and call :func:`init` in it::

    mpiexec -n 2 python train.py                     # two processes on this machine
    mpiexec -n 8 -f hosts python train.py            # eight across the machines in `hosts`

    import wonderland as wl
    rank, world = wl.distributed.init()
    total = wl.distributed.all_reduce(wl.tensor([1.0]))      # [world] on every rank

MPI (``mpi4py`` on the ``mpich`` wheel, ``pip install "wonderland[mpi]"``) starts the
processes, tells each its rank and moves the bytes; wonderland adds a small layer:

* every wait has a **timeout** (``WONDERLAND_DIST_TIMEOUT`` seconds, 300 by default, or
  ``init(timeout=...)``), polled with short sleeps rather than MPI's busy wait, so a rank
  that stopped turns into an error naming the operation instead of a hang;
* an uncaught exception on any rank prints its traceback with the rank and **aborts the
  whole job** (``MPI_Abort``), so the other ranks do not wait for it forever;
* each rank's thread pool gets its share of the machine's cores (two ranks on two
  cores: one thread each), unless ``WONDERLAND_NUM_THREADS`` says otherwise;
* values are tensors, NumPy arrays or numbers (staged through host memory for GPU
  tensors), and objects travel as JSON, never pickled.

Without ``mpiexec`` (no MPI launcher in the environment) :func:`init` gives a world of
one process, in which every collective returns its input: the same script runs alone.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "local_size",
           "is_main_process", "barrier", "all_reduce", "broadcast", "all_gather_object",
           "broadcast_object", "iall_reduce", "Work", "DistributedError", "abort", "shutdown",
           "get_timeout"]

_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_DEFAULT_TIMEOUT = 300.0


class DistributedError(RuntimeError):
    """A collective operation failed or timed out, or the ranks disagree."""


class _World:
    comm = None           # mpi4py communicator (None for a world of one)
    MPI = None
    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    timeout = _DEFAULT_TIMEOUT
    initialized = False


_W = _World()


def _launched_size():
    """The number of processes an MPI launcher started (``None`` when none did)."""
    for name in _LAUNCHER_SIZE_VARS:
        raw = os.environ.get(name, "").strip()
        if raw.isdigit():
            return int(raw)
    return None


def _timeout_from_env():
    raw = os.environ.get("WONDERLAND_DIST_TIMEOUT", "").strip()
    if not raw:
        return _DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"WONDERLAND_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"WONDERLAND_DIST_TIMEOUT must be positive, got {raw!r}")
    return value


def init(timeout: float | None = None, set_threads: bool = True) -> tuple:
    """Join the job: returns ``(rank, world_size)``. Safe to call more than once.

    Under ``mpiexec`` this initialises MPI (mpi4py); otherwise (or with
    ``WONDERLAND_DISTRIBUTED=off``) the world is this one process. ``timeout`` bounds
    every wait (seconds); ``set_threads`` gives each rank its share of the cores.
    """
    if _W.initialized:
        if timeout is not None:
            _W.timeout = _check_timeout(timeout)
        return _W.rank, _W.size
    _W.timeout = _check_timeout(timeout) if timeout is not None else _timeout_from_env()
    mode = os.environ.get("WONDERLAND_DISTRIBUTED", "").strip().lower()
    launched = _launched_size()
    if mode == "off" or (launched is None and mode != "mpi"):
        _W.initialized = True
        return 0, 1
    try:
        import mpi4py
        mpi4py.rc.thread_level = "funneled"      # MPI is called from the main thread only
        from mpi4py import MPI
    except ImportError:
        if launched and launched > 1:
            raise DistributedError(
                f"this process was started by an MPI launcher as one of {launched}, but "
                f"mpi4py is not installed: pip install \"wonderland[mpi]\"") from None
        _W.initialized = True
        return 0, 1
    comm = MPI.COMM_WORLD.Dup()
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    _W.MPI, _W.comm = MPI, comm
    _W.rank, _W.size = comm.Get_rank(), comm.Get_size()
    _W.local_rank, _W.local_size = local.Get_rank(), local.Get_size()
    local.Free()
    _W.initialized = True
    if _W.size > 1:
        _install_abort_hook()
        if set_threads and not os.environ.get("WONDERLAND_NUM_THREADS", "").strip():
            from ..backend import threads

            threads.set_num_threads(max(1, threads.available_cores() // _W.local_size))
    return _W.rank, _W.size


def _check_timeout(timeout):
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"distributed.init: timeout must be a positive number of seconds, "
                         f"got {timeout!r}")
    return float(timeout)


def _install_abort_hook():
    previous = sys.excepthook

    def abort_on_error(exc_type, exc, tb):
        try:
            sys.stderr.write(f"wonderland.distributed: rank {_W.rank} of {_W.size} stopped "
                             f"with an error; aborting every rank\n")
            previous(exc_type, exc, tb)
            sys.stderr.flush()
            sys.stdout.flush()
        finally:
            if _W.comm is not None and not isinstance(exc, KeyboardInterrupt):
                _W.comm.Abort(1)

    sys.excepthook = abort_on_error


def is_initialized() -> bool:
    return _W.initialized


def rank() -> int:
    """This process's rank (0 when not initialised)."""
    return _W.rank


def world_size() -> int:
    """How many processes the job has (1 when not initialised)."""
    return _W.size


def local_rank() -> int:
    """This process's rank among the processes on its machine (its GPU index)."""
    return _W.local_rank


def local_size() -> int:
    return _W.local_size


def is_main_process() -> bool:
    """True on rank 0, the one that writes files and prints."""
    return _W.rank == 0


def get_timeout() -> float:
    return _W.timeout


# ----------------------------------------------------------------------------- waiting
def _wait(requests, what):
    """Wait for MPI requests, polling with growing sleeps, up to the timeout."""
    MPI = _W.MPI
    if MPI.Request.Testall(requests):
        return
    start = time.monotonic()
    deadline = start + _W.timeout
    polls = 0
    while not MPI.Request.Testall(requests):
        polls += 1
        if polls > 200:
            time.sleep(min(1e-3, 2e-5 * (polls - 200) / 50 + 2e-5))
        if time.monotonic() > deadline:
            raise DistributedError(
                f"{what} on rank {_W.rank} of {_W.size} did not complete within "
                f"{_W.timeout:g} s: another rank has stopped (it died, raised an error or "
                f"left the loop early) or the ranks called different operations; set "
                f"WONDERLAND_DIST_TIMEOUT to wait longer")


class Work:
    """A non-blocking collective in flight: ``test()`` drives it and says whether it is
    done; ``wait()`` blocks (up to the timeout) until it is."""

    __slots__ = ("_request", "_what", "done")

    def __init__(self, request, what):
        self._request = request
        self._what = what
        self.done = request is None

    def test(self) -> bool:
        if not self.done:
            self.done = bool(self._request.Test())
        return self.done

    def wait(self) -> None:
        if not self.done:
            _wait([self._request], self._what)
            self.done = True


def wait_all(works) -> None:
    """Wait for several :class:`Work` objects together."""
    pending = [w for w in works if not w.done]
    if pending:
        _wait([w._request for w in pending], pending[0]._what)
        for w in pending:
            w.done = True


def test_all(works) -> None:
    """Drive the progress of several :class:`Work` objects without blocking."""
    pending = [w for w in works if not w.done]
    if pending and _W.MPI.Request.Testall([w._request for w in pending]):
        for w in pending:
            w.done = True


# ----------------------------------------------------------------------------- collectives
_OPS = ("sum", "mean", "max", "min", "prod")


def _mpi_op(op, what):
    if op not in _OPS:
        raise ValueError(f"{what}: op must be one of {', '.join(map(repr, _OPS))}, got {op!r}")
    MPI = _W.MPI
    return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN,
            "prod": MPI.PROD}[op]


def iall_reduce(buffer: np.ndarray, op: str = "sum") -> Work:
    """Start reducing a contiguous NumPy ``buffer`` in place across the ranks (``sum``,
    ``max``, ``min``, ``prod``); returns a :class:`Work`. In a world of one it is done."""
    if not isinstance(buffer, np.ndarray) or not buffer.flags.c_contiguous \
            or not buffer.flags.writeable:
        raise TypeError(f"iall_reduce: expected a writeable C-contiguous NumPy array, got "
                        f"{type(buffer).__name__}")
    if op == "mean":
        raise ValueError("iall_reduce: reduce with 'sum' and divide by world_size()")
    if _W.size == 1:
        return Work(None, "all_reduce")
    request = _W.comm.Iallreduce(_W.MPI.IN_PLACE, buffer, op=_mpi_op(op, "iall_reduce"))
    return Work(request, f"all_reduce of {buffer.size} {buffer.dtype} values")


def _host_array(x, what):
    """``(host array, rebuild)``: ``x`` (tensor, array or number) as a contiguous NumPy
    copy, and a function turning a host result back into ``x``'s kind and device."""
    from .. import backend as B
    from ..core.tensor import Tensor, _wrap

    if isinstance(x, Tensor):
        backend = B.backend_of(x.data)
        host = np.array(B.to_numpy(x.data), copy=True, order="C")
        return host, lambda h: _wrap(backend.from_numpy(h))
    if B.is_array(x) and not isinstance(x, np.ndarray):
        backend = B.backend_of(x)
        return np.array(B.to_numpy(x), copy=True, order="C"), backend.from_numpy
    if isinstance(x, (np.ndarray, np.generic)):
        return np.array(x, copy=True, order="C"), lambda h: h
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        kind = type(x)
        return np.array([x], dtype=np.float64 if kind is float else np.int64), \
            lambda h: kind(h[0])
    raise TypeError(f"{what}: expected a tensor, an array or a number, got {type(x).__name__}")


def all_reduce(x, op: str = "sum"):
    """``x`` combined over all ranks (``"sum"``, ``"mean"``, ``"max"``, ``"min"``,
    ``"prod"``); a new value of ``x``'s kind (tensor on its device, array, number)."""
    host, rebuild = _host_array(x, "all_reduce")
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(map(repr, _OPS))}, got {op!r}")
    if _W.size > 1:
        _wait([_W.comm.Iallreduce(_W.MPI.IN_PLACE, host, op=_mpi_op(op, "all_reduce"))],
              f"all_reduce of {host.size} {host.dtype} values")
    if op == "mean":
        host = host / _W.size if host.dtype.kind == "f" else host / float(_W.size)
    return rebuild(host)


def broadcast(x, src: int = 0):
    """Rank ``src``'s value of ``x`` on every rank (same shape and dtype everywhere)."""
    host, rebuild = _host_array(x, "broadcast")
    _check_src(src, "broadcast")
    if _W.size > 1:
        _wait([_W.comm.Ibcast(host, root=src)], f"broadcast of {host.size} {host.dtype} values")
    return rebuild(host)


def _check_src(src, what):
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < _W.size:
        raise ValueError(f"{what}: src must be a rank from 0 to {_W.size - 1}, got {src!r}")


def barrier() -> None:
    """Wait until every rank has reached this point."""
    if _W.size > 1:
        _wait([_W.comm.Ibarrier()], "barrier")


def all_gather_object(obj) -> list:
    """Every rank's ``obj`` (anything JSON can hold), in rank order, on every rank."""
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    if _W.size == 1:
        return [json.loads(data.tobytes())]
    sizes = np.zeros(_W.size, dtype=np.int64)
    _wait([_W.comm.Iallgather(np.array([data.size], dtype=np.int64), sizes)],
          "all_gather_object (sizes)")
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    _wait([_W.comm.Iallgatherv(data, [out, sizes, offsets, _W.MPI.BYTE])],
          "all_gather_object")
    return [json.loads(out[o:o + n].tobytes()) for o, n in zip(offsets, sizes)]


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (JSON-able) on every rank."""
    _check_src(src, "broadcast_object")
    if _W.size == 1:
        return json.loads(json.dumps(obj))
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8) if _W.rank == src else None
    size = np.array([data.size if data is not None else 0], dtype=np.int64)
    _wait([_W.comm.Ibcast(size, root=src)], "broadcast_object (size)")
    buf = np.array(data, copy=True) if data is not None else np.empty(int(size[0]), np.uint8)
    _wait([_W.comm.Ibcast(buf, root=src)], "broadcast_object")
    return json.loads(buf.tobytes())


def abort(code: int = 1) -> None:
    """End every rank of the job now with exit status ``code`` (after an error that the
    other ranks cannot know about); in a world of one, exit this process."""
    sys.stderr.flush()
    sys.stdout.flush()
    if _W.comm is not None and _W.size > 1:
        _W.comm.Abort(code)
    raise SystemExit(code)


def shutdown() -> None:
    """Leave the job (MPI is finalised at exit anyway); collectives then act on one rank."""
    if _W.comm is not None:
        _W.comm.Free()
    _W.comm, _W.rank, _W.size, _W.local_rank, _W.local_size = None, 0, 1, 0, 1
    _W.initialized = False
