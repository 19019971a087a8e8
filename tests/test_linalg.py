"""Decompositions and solves: values against NumPy/SciPy, gradients in float64 both
modes and second order, and the fused layer primitives against their composites."""

import numpy as np
import pytest

import wonderland as wl
from conftest import check_primitive, f64

R = np.random.default_rng(3)


def spd(n):
    a = R.standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


def test_cholesky():
    s = spd(4)
    np.testing.assert_allclose(wl.linalg.cholesky(f64(s)).numpy(), np.linalg.cholesky(s))
    check_primitive(lambda a: wl.linalg.cholesky((a + a.T) * 0.5), f64(s))


def test_solves():
    s = spd(4)
    b = R.standard_normal((4, 2))
    np.testing.assert_allclose(wl.linalg.solve(f64(s), f64(b)).numpy(), np.linalg.solve(s, b))
    check_primitive(wl.linalg.solve, f64(s), f64(b))
    check_primitive(wl.linalg.solve, f64(s), f64(R.standard_normal(4)))
    check_primitive(wl.linalg.solve, f64(np.stack([s, spd(4)])), f64(R.standard_normal((2, 4, 3))), order=1)
    L = np.linalg.cholesky(s)
    check_primitive(lambda a, y: wl.linalg.solve_triangular(wl.tril(a), y), f64(L), f64(b))
    check_primitive(lambda a, y: wl.linalg.solve_triangular(wl.triu(a), y, lower=False, transpose=True),
                    f64(L.T), f64(b))
    check_primitive(wl.linalg.inv, f64(s))
    np.testing.assert_allclose(wl.linalg.inv(f64(s)).numpy(), np.linalg.inv(s))


def test_slogdet_and_norm():
    s = spd(3)
    sign, logdet = wl.linalg.slogdet(f64(s))
    assert sign.item() == 1.0 and logdet.item() == pytest.approx(np.linalg.slogdet(s)[1])
    check_primitive(lambda a: wl.linalg.slogdet(a)[1], f64(s))
    x = R.standard_normal((3, 4))
    np.testing.assert_allclose(wl.linalg.norm(f64(x), axis=1).numpy(), np.linalg.norm(x, axis=1))
    check_primitive(lambda a: wl.linalg.norm(a, axis=-1), f64(x))
    assert wl.linalg.norm(f64(x), ord=1).item() == pytest.approx(np.abs(x).sum())
    g = wl.grad(lambda v: wl.linalg.norm(v))(wl.zeros(3, dtype=wl.float64))
    np.testing.assert_array_equal(g.numpy(), 0.0)


def test_lstsq():
    x, y = R.standard_normal((8, 3)), R.standard_normal((8, 2))
    np.testing.assert_allclose(wl.linalg.lstsq(f64(x), f64(y)).numpy(), np.linalg.lstsq(x, y, rcond=None)[0])
    check_primitive(wl.linalg.lstsq, f64(x), f64(y))
    check_primitive(wl.linalg.lstsq, f64(x), f64(y[:, 0]))


def test_diagonal_tril_triu():
    a = R.standard_normal((2, 3, 3))
    np.testing.assert_array_equal(wl.diagonal(f64(a)).numpy(), np.diagonal(a, axis1=-2, axis2=-1))
    np.testing.assert_array_equal(wl.tril(f64(a)).numpy(), np.tril(a))
    np.testing.assert_array_equal(wl.triu(f64(a), 1).numpy(), np.triu(a, 1))
    check_primitive(lambda t: wl.diagonal(t), f64(a[0]))


def test_fused_linear_matches_composite():
    x, w, b = R.standard_normal((2, 3, 4)), R.standard_normal((4, 5)), R.standard_normal(5)
    np.testing.assert_allclose(wl.linear(f64(x), f64(w), f64(b)).numpy(), x @ w + b)
    check_primitive(wl.linear, f64(x), f64(w), f64(b))
    check_primitive(wl.linear, f64(x[0, 0]), f64(w), f64(b))
    gf = wl.grad(lambda *a: (wl.linear(*a) ** 2).sum(), argnums=(0, 1, 2))(f64(x), f64(w), f64(b))
    gc = wl.grad(lambda a, c, d: ((a @ c + d) ** 2).sum(), argnums=(0, 1, 2))(f64(x), f64(w), f64(b))
    # two primitives' rules, ≤ 6 products an entry: ≤ 6 × 1.1e-16 × sum|terms| (≲ 60) ≈ 4e-14
    for a, c in zip(gf, gc):
        np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-12, atol=1e-12)


def test_fused_softmax_cross_entropy_matches_composite():
    z, q = R.standard_normal((4, 5)), R.uniform(size=(4, 5))
    fused = lambda a, b: wl.softmax_cross_entropy(a, b)  # noqa: E731
    composite = lambda a, b: -(b * wl.log_softmax(a)).sum(-1)  # noqa: E731
    np.testing.assert_allclose(fused(f64(z), f64(q)).numpy(), composite(f64(z), f64(q)).numpy())
    check_primitive(fused, f64(z), f64(q))
    for a, c in zip(wl.jacrev(fused, argnums=(0, 1))(f64(z), f64(q)),
                    wl.jacrev(composite, argnums=(0, 1))(f64(z), f64(q))):
        np.testing.assert_allclose(a.numpy(), c.numpy(), atol=1e-12)
    big = f64([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(wl.softmax_cross_entropy(big, f64([[0.0, 0.0, 1.0]])).numpy()).all()
