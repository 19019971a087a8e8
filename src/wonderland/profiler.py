"""Where a step's time goes: time per primitive, forward and backward apart.

::

    with wl.profile() as prof:
        for _ in range(10):
            train_step()
    print(prof.table())

Every operation runs through one primitive's ``forward`` (the backward pass too: VJP
rules are made of primitives), so timing those calls accounts for the arithmetic. While
the block runs, each primitive's ``forward`` is replaced by a timed one; on leaving, the
originals come back, and outside the block nothing is timed or slowed. Times are
*exclusive*: a primitive whose forward applies others (a scan running its body) is
charged only for what its children did not take. In the backward sweep each node's VJP
rule is timed as ``<primitive> backward`` (what the rule did itself: a compiled kernel,
Python), and the primitives it applies as ``<primitive>/<applied> backward``
(``conv/conv_transpose``); sums and casts the sweep applies between rules appear under
their own names. What no primitive and no rule took — Python between operations, graph
bookkeeping, optimiser updates — is the ``(outside primitives)`` row. The steps of a
``wl.jit`` program replayed inside the block are listed with the phase ``jit``.

Meant for one thread at a time: primitives applied from another thread during the
block are timed too, but their phase follows whichever thread is in a backward sweep.
"""

from __future__ import annotations

import threading
import time

from .core import engine, tracing
from .core.engine import BACKWARD_DEPTH
from .core.primitive import ALL_PRIMITIVES

__all__ = ["profile", "Profile"]


class Profile:
    """The record of one ``profile()`` block: ``totals[(name, phase)] = [calls,
    seconds]``, ``wall`` (seconds the block took) and :meth:`table`."""

    def __init__(self):
        self.totals: dict = {}
        self.wall = 0.0
        self._local = threading.local()
        self._saved = []
        self._start = None
        self._outer = None

    # -- timing
    def _charge(self, key, took):
        """Add ``took`` seconds less what nested timed calls took to ``key``."""
        stack = self._local.stack
        children = stack.pop()
        if stack:
            stack[-1] += took
        entry = self.totals.get(key)
        if entry is None:
            entry = self.totals[key] = [0, 0.0]
        entry[0] += 1
        entry[1] += took - children

    def _stacks(self):
        local = self._local
        if getattr(local, "stack", None) is None:
            local.stack, local.rules = [], []
        return local.stack, local.rules

    def _timed(self, prim, forward):
        clock = time.perf_counter

        def timed(*args, **params):
            stack, rules = self._stacks()
            stack.append(0.0)                  # time the children take, filled by them
            start = clock()
            try:
                return forward(*args, **params)
            finally:
                if rules:
                    key = (f"{rules[-1]}/{prim.name}", "backward")
                else:
                    key = (prim.name, "backward" if BACKWARD_DEPTH[0] else "forward")
                self._charge(key, clock() - start)

        timed.__wrapped__ = forward
        return timed

    def _timed_rule(self, run_rule):
        clock = time.perf_counter

        def timed(node, *args):
            stack, rules = self._stacks()
            stack.append(0.0)
            rules.append(node.prim.name)
            start = clock()
            try:
                return run_rule(node, *args)
            finally:
                rules.pop()
                self._charge((node.prim.name, "backward"), clock() - start)

        timed.__wrapped__ = run_rule
        return timed

    def time_step(self, name, fn, arrays, params):
        """Run one step of a ``wl.jit`` program, timed as ``<name> jit replay``."""
        stack, _ = self._stacks()
        stack.append(0.0)
        start = time.perf_counter()
        try:
            return fn(*arrays, **params)
        finally:
            self._charge((name, "jit"), time.perf_counter() - start)

    def __enter__(self):
        if self._start is not None:
            raise RuntimeError("profile: this profile is already running")
        self._outer = tracing.PROFILE[0]
        tracing.PROFILE[0] = self
        for prim in list(ALL_PRIMITIVES):
            self._saved.append((prim, "forward", prim.forward))
            prim.forward = self._timed(prim, prim.forward)
        self._saved.append((engine, "_run_rule", engine._run_rule))
        engine._run_rule = self._timed_rule(engine._run_rule)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        tracing.PROFILE[0] = self._outer
        self.wall += time.perf_counter() - self._start
        self._start = None
        for owner, attr, original in reversed(self._saved):
            setattr(owner, attr, original)
        self._saved.clear()
        return False

    # -- reading
    def primitive_seconds(self) -> float:
        return sum(seconds for _, seconds in self.totals.values())

    def rows(self):
        """``(name, phase, calls, seconds)`` from the most time to the least, the time
        outside primitives included as one row."""
        rows = [(name, phase, calls, seconds)
                for (name, phase), (calls, seconds) in self.totals.items()]
        rows.append(("(outside primitives)", "", 0, max(0.0, self.wall - self.primitive_seconds())))
        return sorted(rows, key=lambda r: -r[3])

    def table(self, top: int = 20, per: int = 1) -> str:
        """A text table of the ``top`` rows; ``per`` divides the times (pass the number
        of steps profiled to read milliseconds per step)."""
        if not isinstance(per, int) or per < 1:
            raise ValueError(f"profile.table: per must be a positive integer, got {per!r}")
        lines = [f"{'primitive':<34} {'phase':<9} {'calls':>7} {'ms':>10} {'share':>6}",
                 "-" * 70]
        wall = self.wall or 1.0
        for name, phase, calls, seconds in self.rows()[:top]:
            lines.append(f"{name:<34} {phase:<9} {calls / per:>7.0f} {seconds / per * 1e3:>10.3f} "
                         f"{seconds / wall:>6.1%}")
        lines.append("-" * 70)
        lines.append(f"{'total (wall)':<34} {'':<9} {'':>7} {self.wall / per * 1e3:>10.3f} {1:>6.1%}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def profile() -> Profile:
    """A context manager timing every primitive applied inside it (see the module)."""
    return Profile()
