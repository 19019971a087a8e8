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
  tensors), and objects travel as JSON, never pickled;
* the ranks **agree before they move data**: every collective first exchanges a small
  fixed-size header (16 int64 per rank) describing what this rank is calling — the
  collective's name, the reduction op, the source rank, the dtype and shape — and if the
  ranks disagree (a different shape, dtype, op or source, or a different collective
  altogether, say ``all_reduce`` on one rank and ``barrier`` on another) every rank raises
  a :class:`DistributedError` naming the collective and each rank's description, e.g.
  ``all_reduce: ranks disagree: rank 0 has all_reduce(sum) float32[3], rank 1 has
  all_reduce(sum) float32[4]``, instead of reducing mismatched bytes or crashing inside
  MPI. Nothing of the failed collective is left half-started, so the job may go on.

Headers travel on their own communicator, and payloads start in the order of their
headers, so a non-blocking :func:`iall_reduce` stays non-blocking: its payload starts as
soon as its header has arrived from every rank, driven by ``Work.test()``/``wait()`` or
by the next collective. The header costs one extra small collective per call (measured
with two ranks on one machine: 6-12 µs, whatever the payload's size); ``barrier`` is the
header alone, and the object collectives carry their sizes in it, so they cost what they
did. A caller that has agreed on a fixed sequence of reductions once —
``DistributedDataParallel`` agrees on its bucket layout when it is built — may skip the
per-call header with ``iall_reduce(..., check=False)``.

Without ``mpiexec`` (no MPI launcher in the environment) :func:`init` gives a world of
one process, in which every collective returns its input: the same script runs alone.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
import zlib

import numpy as np

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "local_size",
           "is_main_process", "barrier", "all_reduce", "broadcast", "all_gather_object",
           "broadcast_object", "iall_reduce", "Work", "wait_all", "test_all",
           "DistributedError", "abort", "shutdown", "get_timeout"]

_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_DEFAULT_TIMEOUT = 300.0


class DistributedError(RuntimeError):
    """A collective operation failed or timed out, or the ranks disagree."""


class _World:
    comm = None           # mpi4py communicator for payloads (None for a world of one)
    headers = None        # its twin, for the headers the ranks agree on first
    pending = collections.deque()   # Works whose payload waits for earlier headers
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
    _W.MPI, _W.comm, _W.headers = MPI, comm, comm.Dup()
    _W.pending.clear()
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
    done; ``wait()`` blocks (up to the timeout) until it is. Either raises a
    :class:`DistributedError` if the ranks turn out to disagree about it."""

    __slots__ = ("_request", "_what", "done", "_launch", "_header", "_error")

    def __init__(self, request, what, launch=None, header=None):
        self._request = request   # the payload's MPI request, once it has started
        self._what = what
        self._launch = launch     # starts the payload (when it waits for a header)
        self._header = header     # (this rank's row, every rank's rows, MPI request)
        self._error = None
        self.done = request is None and launch is None

    def test(self) -> bool:
        self._raise_if_failed()
        if not self.done:
            if self._request is None:
                _advance()
                self._raise_if_failed()
            if self._request is not None:
                self.done = bool(self._request.Test())
        return self.done

    def wait(self) -> None:
        self._raise_if_failed()
        if not self.done:
            self._start_payload()
            _wait([self._request], self._what)
            self.done = True

    def _start_payload(self):
        """Block until this work's payload has started (its header, and those of the
        works queued before it, have arrived and agree)."""
        if self._request is None:
            self._raise_if_failed()
            _advance(until=self)
            self._raise_if_failed()

    def _raise_if_failed(self):
        if self._error is not None:
            raise self._error


def _advance(until=None):
    """Start, in queue order, the payloads of queued works whose headers have arrived
    from every rank; with ``until``, wait for the headers up to that work's. A header
    that shows disagreement raises here (and again from its own work's ``wait``)."""
    pending = _W.pending
    while pending:
        work = pending[0]
        if work._header is not None:
            row, rows, request = work._header
            if until is None:
                if not request.Test():
                    return
            else:
                _wait([request], f"{work._what} (agreeing on it with the other ranks)")
            work._header = None
            if not _agrees(row, rows):
                pending.popleft()
                work._launch = None
                work._error = DistributedError(_disagreement(_name_of(row), rows))
                raise work._error
        pending.popleft()
        work._request, work._launch = work._launch(), None
        if work is until:
            return


def wait_all(works) -> None:
    """Wait for several :class:`Work` objects together."""
    pending = [w for w in works if not w.done]
    for w in pending:
        w._start_payload()
    if pending:
        _wait([w._request for w in pending], pending[0]._what)
        for w in pending:
            w.done = True


def test_all(works) -> None:
    """Drive the progress of several :class:`Work` objects without blocking."""
    pending = [w for w in works if not w.done]
    if not pending:
        return
    if _W.pending:
        _advance()
    for w in pending:
        w._raise_if_failed()
    if all(w._request is not None for w in pending) \
            and _W.MPI.Request.Testall([w._request for w in pending]):
        for w in pending:
            w.done = True


# ----------------------------------------------------------------------------- agreement
# A header is 16 int64: what this rank is about to call. The ranks gather everyone's
# header (one small allgather on their own communicator) and compare; the last slot is
# per-rank data that is not compared (an object's size in bytes).
_COLLECTIVES = ("barrier", "all_reduce", "iall_reduce", "broadcast", "all_gather_object",
                "broadcast_object")
_HEADER = 16
_COMPARED = _HEADER - 1       # slots 0..14 must be equal on every rank; slot 15 is free
_DIMS = 8                     # axes spelled out in the header (all are in its digest)
_NAME, _OP, _SRC, _DTYPE, _NDIM, _SIZE, _DIGEST, _SHAPE = range(8)


_ROWS = {}                    # recent header rows without per-rank data, by description


def _header(name, op=None, src=None, dtype=None, shape=None, free=0):
    """This rank's header row for collective ``name`` on a value of ``dtype`` and
    ``shape`` (read-only: rows are reused)."""
    key = None
    if not free:
        key = (name, op, src, dtype, shape)
        row = _ROWS.get(key)
        if row is not None:
            return row
    row = np.zeros(_HEADER, dtype=np.int64)
    row[_NAME] = _COLLECTIVES.index(name) + 1
    row[_OP] = _OPS.index(op) + 1 if op is not None else 0
    row[_SRC] = src if src is not None else -1
    row[_NDIM] = -1
    if dtype is not None:
        row[_DTYPE] = _dtype_code(dtype)
        row[_NDIM] = len(shape)
        row[_SIZE] = int(np.prod(shape, dtype=np.int64))
        row[_DIGEST] = zlib.crc32(np.array(shape, dtype=np.int64).tobytes())
        row[_SHAPE:_SHAPE + min(len(shape), _DIMS)] = shape[:_DIMS]
    row[_COMPARED] = free
    row.flags.writeable = False
    if key is not None:
        if len(_ROWS) >= 256:
            _ROWS.clear()
        _ROWS[key] = row
    return row


def _dtype_code(dtype):
    """A dtype as one int64: its ``dtype.str`` (``'<f4'``) in ASCII, or a negative digest
    of it when it is longer than 8 characters."""
    text = dtype.str.encode()
    if len(text) <= 8:
        return int.from_bytes(text.ljust(8, b"\0"), "little", signed=True)
    return -1 - zlib.crc32(text)


def _dtype_name(code):
    if code < 0:
        return f"dtype#{-1 - code:08x}"
    try:
        dtype = np.dtype(int(code).to_bytes(8, "little").rstrip(b"\0").decode())
    except (TypeError, ValueError, UnicodeDecodeError):
        return f"dtype#{code:x}"
    return dtype.name if dtype.byteorder in "=|" else dtype.str


def _name_of(row):
    code = int(row[_NAME])
    return _COLLECTIVES[code - 1] if 1 <= code <= len(_COLLECTIVES) else f"collective#{code}"


def _describe(row, detail=False):
    """A header in words: ``all_reduce(sum) float32[3, 4]``."""
    text = _name_of(row)
    args = []
    if row[_OP] > 0:
        code = int(row[_OP])
        args.append(_OPS[code - 1] if code <= len(_OPS) else f"op#{code}")
    if row[_SRC] >= 0:
        args.append(f"src={int(row[_SRC])}")
    if args:
        text += f"({', '.join(args)})"
    ndim = int(row[_NDIM])
    if ndim >= 0:
        dims = ", ".join(str(int(d)) for d in row[_SHAPE:_SHAPE + min(ndim, _DIMS)])
        if ndim > _DIMS:
            dims += f", ... ({ndim} axes)"
        text += f" {_dtype_name(int(row[_DTYPE]))}[{dims}]"
        if detail:
            text += f" ({int(row[_SIZE])} values, shape digest {int(row[_DIGEST]):08x})"
    return text


def _agrees(row, rows):
    return rows[:, :_COMPARED].tobytes() == row[:_COMPARED].tobytes() * len(rows)


def _disagreement(name, rows) -> str:
    """The error message when the gathered header ``rows`` are not all equal: each
    distinct description with the ranks that have it, in rank order."""
    groups = {}
    for r, row in enumerate(rows):
        groups.setdefault(row[:_COMPARED].tobytes(), []).append(r)
    words = [_describe(rows[ranks[0]]) for ranks in groups.values()]
    if len(set(words)) < len(words):         # shapes that differ past the spelled-out axes
        words = [_describe(rows[ranks[0]], detail=True) for ranks in groups.values()]
    parts = []
    for ranks, text in list(zip(groups.values(), words))[:6]:
        who = f"rank {ranks[0]} has" if len(ranks) == 1 else f"ranks {_rank_list(ranks)} have"
        parts.append(f"{who} {text}")
    if len(groups) > 6:
        parts.append(f"and {len(groups) - 6} more different calls")
    return (f"{name}: ranks disagree: {', '.join(parts)}; every rank must call the same "
            f"collectives in the same order, with the same shapes, dtypes and arguments "
            f"(this is rank {_W.rank} of {_W.size})")


def _rank_list(ranks):
    """``0, 1, 2`` for a few ranks, ``0-30, 32-63`` for many."""
    if len(ranks) <= 4:
        return ", ".join(map(str, ranks))
    runs, start = [], ranks[0]
    for a, b in zip(ranks, ranks[1:] + [None]):
        if b != a + 1:
            runs.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(runs)


def _agree(row, what):
    """Exchange this rank's header with every rank's and return all of them (one row per
    rank); raise :class:`DistributedError` on every rank if they differ. The payloads
    of queued non-blocking works are started first, so payloads keep the headers' order
    (and no header of this call is left in flight if one of theirs disagrees)."""
    if _W.pending:
        _advance(until=_W.pending[-1])
    rows = np.empty((_W.size, _HEADER), dtype=np.int64)
    request = _W.headers.Iallgather(row, rows)
    _wait([request], f"{what} (agreeing on it with the other ranks)")
    if not _agrees(row, rows):
        raise DistributedError(_disagreement(what, rows))
    return rows


# ----------------------------------------------------------------------------- collectives
_OPS = ("sum", "mean", "max", "min", "prod")


def _mpi_op(op, what):
    if op not in _OPS:
        raise ValueError(f"{what}: op must be one of {', '.join(map(repr, _OPS))}, got {op!r}")
    MPI = _W.MPI
    return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN,
            "prod": MPI.PROD}[op]


def iall_reduce(buffer: np.ndarray, op: str = "sum", *, check: bool = True) -> Work:
    """Start reducing a contiguous NumPy ``buffer`` in place across the ranks (``sum``,
    ``max``, ``min``, ``prod``); returns a :class:`Work`. In a world of one it is done.

    The ranks first agree on the call (``iall_reduce``, ``op``, dtype and shape) through a
    non-blocking header exchange; the reduction starts once that has arrived (driven by
    ``test()``, ``wait()`` or the next collective), and a disagreement raises
    :class:`DistributedError` there on every rank. ``check=False`` skips the header, for
    a sequence of reductions the ranks have already agreed on (as
    ``DistributedDataParallel`` does with its buckets): a mismatch is then undetected."""
    if not isinstance(buffer, np.ndarray) or not buffer.flags.c_contiguous \
            or not buffer.flags.writeable:
        raise TypeError(f"iall_reduce: expected a writeable C-contiguous NumPy array, got "
                        f"{type(buffer).__name__}")
    if op == "mean":
        raise ValueError("iall_reduce: reduce with 'sum' and divide by world_size()")
    if op not in _OPS:
        raise ValueError(f"iall_reduce: op must be one of {', '.join(map(repr, _OPS))}, "
                         f"got {op!r}")
    what = f"iall_reduce({op}) of {buffer.size} {buffer.dtype} values"
    if _W.size == 1:
        return Work(None, what)
    comm, in_place, mpi_op = _W.comm, _W.MPI.IN_PLACE, _mpi_op(op, "iall_reduce")

    def launch():
        return comm.Iallreduce(in_place, buffer, op=mpi_op)

    if not check and not _W.pending:
        return Work(launch(), what)
    header = None
    if check:
        row = _header("iall_reduce", op=op, dtype=buffer.dtype, shape=buffer.shape)
        rows = np.empty((_W.size, _HEADER), dtype=np.int64)
        header = (row, rows, _W.headers.Iallgather(row, rows))
    work = Work(None, what, launch, header)
    _W.pending.append(work)
    _advance()
    return work


def _host_array(x, what):
    """``(host array, rebuild)``: ``x`` (tensor, array or number) as a contiguous NumPy
    copy, and a function turning a host result back into ``x``'s kind and device."""
    from .. import backend as B
    from ..core.tensor import Tensor, from_array

    if isinstance(x, Tensor):
        backend = B.backend_of(x.data)
        host = np.array(B.to_numpy(x.data), copy=True, order="C")
        return host, lambda h: from_array(backend.from_numpy(h))
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
    ``"prod"``); a new value of ``x``'s kind (tensor on its device, array, number).

    Every rank must pass the same op and a value of the same dtype and shape; otherwise
    every rank raises :class:`DistributedError` naming what each rank passed."""
    host, rebuild = _host_array(x, "all_reduce")
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {', '.join(map(repr, _OPS))}, got {op!r}")
    if _W.size > 1:
        _agree(_header("all_reduce", op=op, dtype=host.dtype, shape=host.shape), "all_reduce")
        _wait([_W.comm.Iallreduce(_W.MPI.IN_PLACE, host, op=_mpi_op(op, "all_reduce"))],
              f"all_reduce({op}) of {host.size} {host.dtype} values")
    if op == "mean":
        host = host / _W.size if host.dtype.kind == "f" else host / float(_W.size)
    return rebuild(host)


def broadcast(x, src: int = 0):
    """Rank ``src``'s value of ``x`` on every rank. Every rank passes the same ``src`` and
    a value of the same shape and dtype (the others' values are placeholders); otherwise
    every rank raises :class:`DistributedError` naming what each rank passed."""
    host, rebuild = _host_array(x, "broadcast")
    _check_src(src, "broadcast")
    if _W.size > 1:
        _agree(_header("broadcast", src=src, dtype=host.dtype, shape=host.shape), "broadcast")
        _wait([_W.comm.Ibcast(host, root=src)],
              f"broadcast(src={src}) of {host.size} {host.dtype} values")
    return rebuild(host)


def _check_src(src, what):
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < _W.size:
        raise ValueError(f"{what}: src must be a rank from 0 to {_W.size - 1}, got {src!r}")


def barrier() -> None:
    """Wait until every rank has reached this point (a rank that reached another
    collective instead makes every rank raise :class:`DistributedError`)."""
    if _W.size > 1:
        _agree(_header("barrier"), "barrier")     # the header exchange is the barrier


def all_gather_object(obj) -> list:
    """Every rank's ``obj`` (anything JSON can hold), in rank order, on every rank."""
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
    if _W.size == 1:
        return [json.loads(data.tobytes())]
    rows = _agree(_header("all_gather_object", free=data.size), "all_gather_object")
    sizes = np.ascontiguousarray(rows[:, _COMPARED])        # each rank's size in bytes
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    _wait([_W.comm.Iallgatherv(data, [out, sizes, offsets, _W.MPI.BYTE])],
          "all_gather_object")
    return [json.loads(out[o:o + n].tobytes()) for o, n in zip(offsets, sizes)]


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` (JSON-able) on every rank; every rank passes the same
    ``src`` (the others' ``obj`` is ignored)."""
    _check_src(src, "broadcast_object")
    if _W.size == 1:
        return json.loads(json.dumps(obj))
    data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8) if _W.rank == src else None
    rows = _agree(_header("broadcast_object", src=src,
                          free=data.size if data is not None else 0), "broadcast_object")
    size = int(rows[src, _COMPARED])                         # src's size in bytes
    buf = np.array(data, copy=True) if data is not None else np.empty(size, np.uint8)
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
        _W.headers.Free()
    _W.comm, _W.headers, _W.rank, _W.size, _W.local_rank, _W.local_size = None, None, 0, 1, 0, 1
    _W.pending.clear()
    _W.initialized = False
