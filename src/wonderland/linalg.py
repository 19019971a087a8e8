"""``wl.linalg``: decompositions, solves and norms, NumPy's names, all differentiable.

``cholesky``, ``solve``, ``solve_triangular``, ``lstsq``, ``inv``, ``slogdet``, ``norm``,
plus ``tril``, ``triu``, ``diagonal``.

A matrix the operation cannot handle (singular for ``inv``/``solve``/``solve_triangular``,
not positive definite for ``cholesky``) raises :class:`LinAlgError` — NumPy's
``numpy.linalg.LinAlgError`` (itself a ``ValueError``) — naming the operation and the
shapes it was given.
"""

import functools

import numpy as np

from .ops import decompositions as _d
from .ops.decompositions import diagonal, lstsq, norm, slogdet, tril, triu


class LinAlgError(np.linalg.LinAlgError):
    """A linear-algebra operation failed on its input (e.g. a singular matrix)."""


def _shape(a):
    return tuple(getattr(a, "shape", np.shape(a)))


def _is_failure(exc, phrase) -> bool:
    if isinstance(exc, LinAlgError):
        return False
    return isinstance(exc, np.linalg.LinAlgError) or (phrase is not None and phrase in str(exc))


def _named(fn, phrase=None):
    """``fn`` with its linear-algebra failures (NumPy's ``LinAlgError``, or a
    ``ValueError`` whose message holds ``phrase``) re-raised as :class:`LinAlgError`
    naming the operation and the shapes of its operands."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            if not _is_failure(exc, phrase):
                raise
            shapes = " and ".join(str(_shape(a)) for a in args)
            reason = str(exc).removeprefix(f"{name}: ")
            reason = reason[:1].lower() + reason[1:]
            raise LinAlgError(f"{name}: {reason} (input{'s' * (len(args) > 1)} of shape "
                              f"{shapes})") from None

    return wrapper


inv = _named(_d.inv)
solve = _named(_d.solve)
solve_triangular = _named(_d.solve_triangular)
# cholesky reports a matrix that is not positive definite as a ValueError
cholesky = _named(_d.cholesky, phrase="not positive definite")

__all__ = ["LinAlgError", "cholesky", "diagonal", "inv", "lstsq", "norm", "slogdet", "solve",
           "solve_triangular", "tril", "triu"]
