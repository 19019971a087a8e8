"""Which random generators a piece of code draws from, so that it can be replayed.

``checkpoint`` (and the lazily recorded gradients of ``grad``) run a function twice: once
forward, once again during the backward pass. Dropout inside it must draw the same masks
both times, from whichever generators it uses — the global one or explicit ones passed
to it. A generator calls :func:`touch` before each draw; inside :func:`tracking` the
first touch of each generator records its state, and :func:`replaying` puts those
states back for the second run (restoring the generators' current states afterwards).

Generators are duck-typed: anything with ``get_state()`` and ``set_state(state)``.
"""

from __future__ import annotations

import contextlib
import contextvars

_TOUCHED = contextvars.ContextVar("wonderland_rng_touched", default=None)


def touch(generator) -> None:
    """Called by a generator before it draws: remember its state if tracking."""
    touched = _TOUCHED.get()
    if touched is not None and id(generator) not in touched:
        touched[id(generator)] = (generator, generator.get_state())


@contextlib.contextmanager
def tracking():
    """Collect ``{id: (generator, state before its first draw)}`` for the block."""
    outer = _TOUCHED.get()
    touched = {}
    token = _TOUCHED.set(touched)
    try:
        yield touched
    finally:
        _TOUCHED.reset(token)
        if outer is not None:            # an enclosing tracker needs the same generators
            for key, entry in touched.items():
                outer.setdefault(key, entry)


@contextlib.contextmanager
def replaying(touched):
    """Run a block with the generators in ``touched`` set back to their recorded states;
    their present states come back afterwards."""
    present = [(g, g.get_state()) for g, _ in touched.values()]
    for g, state in touched.values():
        g.set_state(state)
    try:
        yield
    finally:
        for g, state in present:
            g.set_state(state)
