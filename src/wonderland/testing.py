"""Tools for trusting gradients: ``check_grads`` against central finite differences.

>>> wl.testing.check_grads(lambda x: (x.sin() * x).sum(), (wl.tensor([0.3, 1.2]),))

Arguments are converted to float64. For each requested mode the check compares, along
a random direction ``v`` (and a random output cotangent ``u``):

* ``"fwd"``: the JVP ``J v`` against ``(f(x + εv) − f(x − εv)) / 2ε``;
* ``"rev"``: the VJP through ``⟨Jᵀu, v⟩`` against ``⟨u, finite difference⟩``;
* with both, JVP against VJP: ``⟨u, J v⟩ = ⟨Jᵀ u, v⟩``.

With ``order=2`` (or more) the same checks run on the derivative maps
``x ↦ J(x) v`` and ``x ↦ J(x)ᵀ u``, so second derivatives are checked too.
A mismatch raises ``AssertionError`` naming the mode, order and the two values.
"""

from __future__ import annotations

import numpy as np

from .core.pytree import flatten, unflatten
from .core.tensor import Tensor
from .core.transforms import jvp, vjp
from .core import dtypes


def _f64(x):
    if isinstance(x, Tensor):
        if x.dtype.kind != "f":
            return x
        return Tensor(np.asarray(x.data, dtype=np.float64))
    arr = np.asarray(x)
    if arr.dtype.kind in "fiu" and arr.dtype.kind != "b":
        return Tensor(arr.astype(np.float64))
    return x


def _vdot(a_leaves, b_leaves) -> float:
    return float(sum(np.vdot(np.asarray(a.data if isinstance(a, Tensor) else a, dtype=np.float64),
                             np.asarray(b.data if isinstance(b, Tensor) else b, dtype=np.float64))
                     for a, b in zip(a_leaves, b_leaves)))


def _random_like(leaves, rng):
    return [Tensor(rng.standard_normal(np.shape(x.data)).astype(np.float64)) for x in leaves]


def _shift(leaves, direction, eps):
    return [Tensor(x.data + eps * d.data) for x, d in zip(leaves, direction)]


def _close(a, b, atol, rtol, what):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes differ, {a.shape} vs {b.shape}")
    if not np.allclose(a, b, atol=atol, rtol=rtol, equal_nan=False):
        err = np.max(np.abs(a - b)) if a.size else 0.0
        raise AssertionError(f"{what}: mismatch (max abs difference {err:.3g}, atol={atol}, "
                             f"rtol={rtol})\n  autodiff: {np.array2string(a.ravel()[:8])}\n"
                             f"  reference: {np.array2string(b.ravel()[:8])}")


def check_grads(f, args, order=2, modes=("fwd", "rev"), eps=1e-6, atol=1e-5, rtol=1e-5,
                seed=0):
    """Check derivatives of ``f`` at ``args`` up to ``order``; raise on a mismatch.

    ``args`` is a tuple of positional arguments (tensors, arrays, numbers or pytrees of
    them); every floating-point leaf is a variable. ``f`` returns a tensor or a pytree
    of tensors.
    """
    if not isinstance(args, (tuple, list)):
        raise TypeError("check_grads: args must be a tuple of arguments")
    if order < 1:
        raise ValueError(f"check_grads: order must be at least 1, got {order}")
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    for m in modes:
        if m not in ("fwd", "rev"):
            raise ValueError(f"check_grads: unknown mode {m!r}; use 'fwd' and/or 'rev'")
    leaves, tree = flatten(tuple(args))
    leaves = [_f64(x) for x in leaves]
    var_pos = [i for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.dtype.kind == "f"]
    if not var_pos:
        raise ValueError("check_grads: no floating-point argument to differentiate")
    rng = np.random.default_rng(seed)

    def g(*vs):   # f as a function of the variable leaves only
        full = list(leaves)
        for i, v in zip(var_pos, vs):
            full[i] = v
        return f(*unflatten(tree, full))

    _check(g, [leaves[i] for i in var_pos], order, modes, eps, atol, rtol, rng)


def _check(g, xs, order, modes, eps, atol, rtol, rng):
    out_leaves, _ = flatten(g(*xs))
    v = _random_like(xs, rng)
    u = _random_like(out_leaves, rng)
    plus, _ = flatten(g(*_shift(xs, v, eps)))
    minus, _ = flatten(g(*_shift(xs, v, -eps)))
    fd = [(p.data - m.data) / (2 * eps) for p, m in zip(plus, minus)]
    tangent = None
    if "fwd" in modes:
        _, t_out = jvp(g, tuple(xs), tuple(v))
        tangent, _ = flatten(t_out)
        for k, (t, d) in enumerate(zip(tangent, fd)):
            _close(t.data, d, atol, rtol, f"check_grads (fwd, order {order}, output {k})")
    if "rev" in modes:
        out, pullback = vjp(g, *xs)
        ct = pullback(_unflatten_like(out, u))
        ct_leaves, _ = flatten(ct)
        _close(_vdot(ct_leaves, v), _vdot(u, fd), atol, rtol,
               f"check_grads (rev, order {order}) <J^T u, v> vs finite differences")
        if tangent is not None:
            _close(_vdot(ct_leaves, v), _vdot(u, tangent), atol, rtol,
                   f"check_grads (order {order}) VJP <J^T u, v> vs JVP <u, J v>")
    if order > 1:
        if "fwd" in modes:
            _check(lambda *ys: jvp(g, tuple(ys), tuple(v))[1], xs, order - 1, modes, eps,
                   atol, rtol, rng)
        if "rev" in modes:
            def pulled(*ys):
                o, pb = vjp(g, *ys)
                return pb(_unflatten_like(o, u))
            _check(pulled, xs, order - 1, modes, eps, atol, rtol, rng)


def _unflatten_like(out, leaves):
    _, tree = flatten(out)
    return unflatten(tree, leaves)


def assert_allclose(actual, expected, atol=1e-6, rtol=1e-6, what="values"):
    """Compare tensors/arrays; raise ``AssertionError`` naming ``what`` on a mismatch."""
    a = actual.data if isinstance(actual, Tensor) else np.asarray(actual)
    b = expected.data if isinstance(expected, Tensor) else np.asarray(expected)
    _close(a, b, atol, rtol, what)


__all__ = ["check_grads", "assert_allclose", "dtypes"]
