"""Linear algebra beyond products: Cholesky, linear and triangular solves, least
squares, inverse, log-determinant and vector norms — each differentiable in both modes,
with the rules written in tensor operations (so they differentiate again).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .. import backend as B
from ..backend import device_kernels
from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ..core.tracing import record_call
from ..core.vmap import axis_rule
from .arguments import constant, floating, namespace, normalize_axes, to_tensor
from .elementwise import equal, where
from .linalg import _mm, _mT, einsum
from .reductions import sum as _sum


def _square(a: Tensor, what: str):
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{what}: expected square matrices (..., n, n), got shape {a.shape}")


def tril(x, k=0) -> Tensor:
    """The lower triangle of the last two axes (entries above diagonal ``k`` zeroed)."""
    x = to_tensor(x, "tril")
    xp = namespace(x)
    mask = xp.tril(xp.ones(x.shape[-2:], dtype=bool), k)
    return x * constant(mask)


def triu(x, k=0) -> Tensor:
    """The upper triangle of the last two axes (entries below diagonal ``k`` zeroed)."""
    x = to_tensor(x, "triu")
    xp = namespace(x)
    mask = xp.triu(xp.ones(x.shape[-2:], dtype=bool), k)
    return x * constant(mask)


def diagonal(x) -> Tensor:
    """The diagonal of the last two axes, shape ``(..., min(n, m))``."""
    x = to_tensor(x, "diagonal")
    if x.ndim < 2:
        raise ValueError(f"diagonal: expected at least 2 dimensions, got shape {x.shape}")
    n = min(x.shape[-2:])
    return einsum("...ii->...i", x[..., :n, :n])


def _phi(x):
    """Lower triangle with the diagonal halved (the Cholesky rules' projection)."""
    n = x.shape[-1]
    xp = namespace(x)
    w = xp.tril(xp.ones((n, n)), -1) + 0.5 * xp.eye(n)
    return x * constant(w.astype(x.dtype))


# ----------------------------------------------------------------------------- solve
def _solve_forward(a, b):
    return B.ns(a).linalg.solve(a, b)


def _solve_vjp_b(g, out, a, b):
    return solve(_mT(a), g)


def _solve_vjp_a(g, out, a, b):
    gb = solve(_mT(a), g)
    return -_mm(gb, _mT(out))


_solve = Primitive(
    "solve", _solve_forward, save={0: (0, "out"), 1: (0,)},
    vjp=(_solve_vjp_a, _solve_vjp_b),
    jvp=(lambda t, out, a, b: -solve(a, _mm(t, out)), lambda t, out, a, b: solve(a, t)))


def solve(a, b) -> Tensor:
    """Solve ``a @ x = b`` for square ``a`` (LU with pivoting; no inverse is formed).

    ``b`` is a vector (``(n,)``) or a stack of matrices (``(..., n, k)``).
    """
    a, b = floating(to_tensor(a, "solve")), floating(to_tensor(b, "solve"))
    _square(a, "solve")
    if b.ndim == 1:
        if b.shape[0] != a.shape[-1]:
            raise ValueError(f"solve: a {a.shape} and b {b.shape} do not fit")
        return solve(a, b.reshape(-1, 1)).reshape(a.shape[:-2] + (a.shape[-1],))
    if b.shape[-2] != a.shape[-1]:
        raise ValueError(f"solve: a {a.shape} and b {b.shape} do not fit (need b of shape "
                         f"(..., {a.shape[-1]}, k))")
    return apply(_solve, (a, b))


def inv(a) -> Tensor:
    """The inverse of square ``a`` (prefer :func:`solve` to applying it)."""
    a = floating(to_tensor(a, "inv"))
    _square(a, "inv")
    xp = namespace(a)
    eye = constant(xp.broadcast_to(xp.eye(a.shape[-1], dtype=a.dtype), a.shape).copy())
    return solve(a, eye)


# ----------------------------------------------------------------------------- triangular
@B.numpy_kernel(device=device_kernels.solve_triangular_forward)
def _tri_forward(a, b, *, lower, transpose):
    if a.ndim == 2:
        return scipy.linalg.solve_triangular(a, b, lower=lower, trans=1 if transpose else 0,
                                             check_finite=False)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a_b = np.broadcast_to(a, batch + a.shape[-2:])
    b_b = np.broadcast_to(b, batch + b.shape[-2:])
    out = np.empty(batch + b.shape[-2:], dtype=np.result_type(a, b))
    for idx in np.ndindex(*batch):
        out[idx] = scipy.linalg.solve_triangular(a_b[idx], b_b[idx], lower=lower,
                                                 trans=1 if transpose else 0, check_finite=False)
    return out


def _tri(a, b, lower, transpose):
    return apply(_tri_forward_prim, (a, b), {"lower": lower, "transpose": transpose})


def _tri_vjp_b(g, out, a, b, *, lower, transpose):
    return _tri(a, g, lower, not transpose)


def _tri_vjp_a(g, out, a, b, *, lower, transpose):
    gb = _tri(a, g, lower, not transpose)
    ga = -_mm(gb, _mT(out)) if not transpose else -_mm(out, _mT(gb))
    return tril(ga) if lower else triu(ga)


def _tri_jvp_a(t, out, a, b, *, lower, transpose):
    ta = tril(t) if lower else triu(t)
    return -_tri(a, _mm(_mT(ta) if transpose else ta, out), lower, transpose)


_tri_forward_prim = Primitive(
    "solve_triangular", _tri_forward, save={0: (0, "out"), 1: (0,)},
    vjp=(_tri_vjp_a, _tri_vjp_b),
    jvp=(_tri_jvp_a, lambda t, out, a, b, *, lower, transpose: _tri(a, t, lower, transpose)))


def solve_triangular(a, b, lower=True, transpose=False) -> Tensor:
    """Solve ``a @ x = b`` (or ``a.T @ x = b``) for triangular ``a`` by substitution.

    Only the named triangle of ``a`` is read, and only it receives a gradient.
    """
    a, b = floating(to_tensor(a, "solve_triangular")), floating(to_tensor(b, "solve_triangular"))
    _square(a, "solve_triangular")
    if b.ndim == 1:
        return solve_triangular(a, b.reshape(-1, 1), lower, transpose).reshape(-1)
    if b.shape[-2] != a.shape[-1]:
        raise ValueError(f"solve_triangular: a {a.shape} and b {b.shape} do not fit")
    return _tri(a, b, bool(lower), bool(transpose))


# ----------------------------------------------------------------------------- cholesky
def _chol_forward(a):
    try:
        return B.ns(a).linalg.cholesky(a)
    except np.linalg.LinAlgError:
        raise ValueError("cholesky: the matrix is not positive definite") from None


def _chol_vjp(g, L, a):
    # Murray (2016): A_bar = sym(L^-T Phi(L^T L_bar) L^-1)
    p = _phi(_mm(_mT(L), g))
    s = _tri(L, _mT(_tri(L, _mT(p), True, True)), True, True)
    return 0.5 * (s + _mT(s))


def _chol_jvp(t, L, a):
    # dL = L Phi(L^-1 dA L^-T)
    x = _tri(L, _mT(_tri(L, t, True, False)), True, False)
    return _mm(L, _phi(x))


_cholesky = Primitive("cholesky", _chol_forward, vjp=_chol_vjp, jvp=_chol_jvp, save=("out",))


def cholesky(a) -> Tensor:
    """Lower-triangular ``L`` with ``L @ L.T == a`` for symmetric positive definite ``a``.

    The gradient treats ``a`` as symmetric (it is symmetrised).
    """
    a = floating(to_tensor(a, "cholesky"))
    _square(a, "cholesky")
    return apply(_cholesky, (a,))


def slogdet(a):
    """``(sign, log|det a|)`` of square ``a`` via LU; differentiable in the log-determinant."""
    a = floating(to_tensor(a, "slogdet"))
    _square(a, "slogdet")
    return constant(record_call(_sign_of_det, a)), apply(_logabsdet, (a,))


def _sign_of_det(a):
    sign, _ = B.ns(a).linalg.slogdet(a)
    return B.ns(a).asarray(sign, dtype=a.dtype)


_logabsdet = Primitive(
    "logabsdet", lambda a: B.ns(a).linalg.slogdet(a)[1].astype(a.dtype), save=(0,),
    vjp=lambda g, out, a: g.expand_dims(-1).expand_dims(-1) * _mT(inv(a)),
    jvp=lambda t, out, a: diagonal(solve(a, t)).sum(-1))


# ----------------------------------------------------------------------------- least squares
def _lstsq_forward(x, y):
    if x.ndim != 2:
        raise ValueError("lstsq: expected a 2-D design matrix")
    w, *_ = B.ns(x).linalg.lstsq(x, y, rcond=None)
    return w


def _lstsq_parts(g, out, x, y):
    z = solve(_mm(_mT(x), x), g)            # (X^T X)^-1 g
    r = y - _mm(x, out)                     # residual
    return z, r


_lstsq = Primitive(
    "lstsq", _lstsq_forward, save=(0, 1, "out"),
    vjp=(lambda g, out, x, y: _lstsq_x(g, out, x, y), lambda g, out, x, y: _mm(x, solve(_mm(_mT(x), x), g))),
    jvp=(lambda t, out, x, y: solve(_mm(_mT(x), x), _mm(_mT(t), y - _mm(x, out)) - _mm(_mT(x), _mm(t, out))),
         lambda t, out, x, y: solve(_mm(_mT(x), x), _mm(_mT(x), t))))


def _lstsq_x(g, out, x, y):
    z, r = _lstsq_parts(g, out, x, y)
    return _mm(r, _mT(z)) - _mm(_mm(x, z), _mT(out))


def lstsq(x, y) -> Tensor:
    """The least-squares solution ``argmin_w ||x @ w - y||²`` (SVD-based, no inverse).

    ``x`` is ``(n, d)`` and ``y`` is ``(n,)`` or ``(n, k)``. The derivatives assume ``x``
    has full column rank.
    """
    x, y = floating(to_tensor(x, "lstsq")), floating(to_tensor(y, "lstsq"))
    if x.ndim != 2:
        raise ValueError(f"lstsq: x must be a 2-D (n, d) matrix, got shape {x.shape}")
    if y.shape[0] != x.shape[0] or y.ndim > 2:
        raise ValueError(f"lstsq: y must have shape ({x.shape[0]},) or ({x.shape[0]}, k), got {y.shape}")
    if y.ndim == 1:
        return lstsq(x, y.reshape(-1, 1)).reshape(-1)
    if y.dtype != x.dtype:
        y = y.astype(x.dtype)
    return apply(_lstsq, (x, y))


# ----------------------------------------------------------------------------- norms
def _norm_forward(x, *, axis, keepdims):
    return np.sqrt((x * x).sum(axis=axis, keepdims=keepdims))


def _norm_ratio(out, x, axis, keepdims):
    outk = out if keepdims else out.reshape(tuple(1 if i in axis else n for i, n in enumerate(x.shape)))
    zero = equal(outk, 0.0)
    return where(zero, 0.0, x / where(zero, 1.0, outk))


_norm2 = Primitive(
    "norm", _norm_forward, save=(0, "out"),
    vjp=lambda g, out, x, *, axis, keepdims: (
        (g if keepdims else g.reshape(tuple(1 if i in axis else n for i, n in enumerate(x.shape))))
        * _norm_ratio(out, x, axis, keepdims)),
    jvp=lambda t, out, x, *, axis, keepdims: _sum(t * _norm_ratio(out, x, axis, keepdims), axis, keepdims))
_norm2.batch = axis_rule(_norm2)


def norm(x, ord=None, axis=None, keepdims=False) -> Tensor:  # noqa: A002 - NumPy's name
    """Vector norms over ``axis``: 2 (default), 1, ``inf`` or any ``p > 0``.

    The 2-norm is one primitive whose gradient at 0 is taken as 0 (a subgradient).
    """
    x = floating(to_tensor(x, "norm"))
    axes = normalize_axes(axis, x.ndim, "norm")
    if ord in (None, 2, 2.0):
        return apply(_norm2, (x,), {"axis": axes, "keepdims": bool(keepdims)})
    if ord == 1:
        return x.abs().sum(axes, keepdims=keepdims)
    if ord in (float("inf"), "inf"):
        return x.abs().max(axes, keepdims=keepdims)
    if isinstance(ord, (int, float)) and ord > 0:
        return (x.abs() ** ord).sum(axes, keepdims=keepdims) ** (1.0 / ord)
    raise ValueError(f"norm: unsupported ord {ord!r}; use 1, 2, inf or a positive number")
