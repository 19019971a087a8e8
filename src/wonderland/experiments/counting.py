"""What a computation does, counted rather than timed: a count does not change with how
busy the machine is, so the tour's claims about cost compare counts, and the measured
times are reported beside them.

``with count_products() as c: fn()`` tallies, while the block runs, every primitive
applied (``c.calls``, ``c.by_name``) and the multiply-adds of the products among them
(``c.macs``), from the shapes each application actually received: a matrix product
``(…, m, k) @ (…, k, n)`` costs ``m·k·n`` per batch element, a dense layer likewise, an
einsum the product of the sizes of all its indices, attention ``L·S·(E + Ev)`` per head
(scores ``q kᵀ`` and mixing ``p v``, over all ``L × S`` pairs). Elementwise primitives
add to ``calls`` only. Like the profiler, the block swaps each primitive's ``forward``
for a counting one and puts the originals back on leaving. Primitives applied inside VJP
and JVP rules are counted; a rule's own array code is not (the profiler's ``calls``
include each rule run).
"""

from __future__ import annotations

import collections
import math

from wonderland.core.primitive import ALL_PRIMITIVES


def _first(result):
    return result[0] if isinstance(result, tuple) else result


def _matmul_macs(args, params, result):
    a = args[0]
    return _first(result).size * (a.shape[-1] if a.ndim else 1)


def _einsum_macs(args, params, result):
    """The product of the sizes of every index (the ellipsis's broadcast dimensions
    included): one multiply-add per point of the index space. A one-operand einsum (a
    transpose or a sum) multiplies nothing."""
    if len(args) < 2:
        return 0
    sizes, batch = {}, ()
    for sub, arr in zip(params["spec"].split("->")[0].split(","), args):
        pre, _, post = sub.partition("...")
        shape = arr.shape
        if "..." in sub:
            for letter, n in zip(post, shape[len(shape) - len(post):]):
                sizes[letter] = max(sizes.get(letter, 1), n)
            batch = _broadcast(batch, shape[len(pre):len(shape) - len(post)])
        for letter, n in zip(pre, shape):
            sizes[letter] = max(sizes.get(letter, 1), n)
    return math.prod(batch) * math.prod(sizes.values())


def _broadcast(a, b):
    a, b = (1,) * (len(b) - len(a)) + tuple(a), (1,) * (len(a) - len(b)) + tuple(b)
    return tuple(max(x, y) for x, y in zip(a, b))


def _attention_macs(args, params, result):
    q, k, v = args[:3]
    L, E, S, Ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    heads = _first(result).size // max(L * Ev, 1)
    return heads * L * S * (E + Ev)


PRODUCTS = {"matmul": _matmul_macs, "linear": _matmul_macs, "einsum": _einsum_macs,
            "attention": _attention_macs}


class Counts:
    """``calls`` (primitive applications), ``by_name`` (a Counter of them) and ``macs``
    (multiply-adds of the products) of one :func:`count_products` block."""

    def __init__(self):
        self.by_name = collections.Counter()
        self.macs = 0
        self._saved = []

    @property
    def calls(self) -> int:
        return sum(self.by_name.values())

    def _counting(self, prim, forward):
        name, macs = prim.name, PRODUCTS.get(prim.name)

        def counted(*args, **params):
            result = forward(*args, **params)
            self.by_name[name] += 1
            if macs is not None:
                self.macs += int(macs(args, params, result))
            return result

        counted.__wrapped__ = forward
        return counted

    def __enter__(self):
        for prim in list(ALL_PRIMITIVES):
            self._saved.append((prim, prim.forward))
            prim.forward = self._counting(prim, prim.forward)
        return self

    def __exit__(self, *exc):
        for prim, forward in reversed(self._saved):
            prim.forward = forward
        self._saved.clear()
        return False


def count_products() -> Counts:
    """A context manager counting the primitives applied inside it (see the module)."""
    return Counts()
