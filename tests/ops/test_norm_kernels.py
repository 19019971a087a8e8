"""The compiled layer norm over the last axis (``ops/kernels/norm.py``) against the
composite NumPy reference and against the primitive with the kernels switched off."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.ops import norm as N
from wonderland.ops.kernels import norm as K

TOL = {np.float32: 2e-6, np.float64: 1e-13}


def _reference(x, w, b, g, eps):
    """Layer norm and its gradients in float64 NumPy, pass by pass."""
    x, w, b, g = (a.astype(np.float64) for a in (x, w, b, g))
    mu = x.mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xh = (x - mu) * inv
    gy = g * w
    gx = (gy - gy.mean(-1, keepdims=True) - xh * (gy * xh).mean(-1, keepdims=True)) * inv
    lead = tuple(range(x.ndim - 1))
    return xh * w + b, mu, inv, gx, (g * xh).sum(lead), g.sum(lead)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 64), (4, 1, 257)])
def test_kernels_equal_the_reference(dtype, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    w, b = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))
    g = rng.standard_normal(shape).astype(dtype)
    y, (mu, inv) = K.layer_norm(x, w, b, 1e-5)
    gx, gw, gb = K.layer_norm_backward(g, x, w, mu, inv)
    y_r, mu_r, inv_r, gx_r, gw_r, gb_r = _reference(x, w, b, g, 1e-5)
    assert mu.shape == shape[:-1] + (1,) and mu.dtype == dtype and gw.dtype == dtype
    # magnitudes: y, ∂x ~ a few units; ∂w, ∂b sum over the rows
    rows = x.size // shape[-1]
    for got, want, scale in [(y, y_r, 10), (mu, mu_r, 10), (inv, inv_r, 1), (gx, gx_r, 10),
                             (gw, gw_r, 10 * rows), (gb, gb_r, 10 * rows)]:
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


def _primitive(x0, w0, b0, g0):
    x, w, b = (wl.tensor(a, requires_grad=True) for a in (x0, w0, b0))
    y = N.normalize(x, (x0.ndim - 1,), 1e-5, w, b)
    y.backward(wl.tensor(g0))
    return [y.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_primitive_takes_the_kernels_and_equals_its_plain_form(dtype, monkeypatch):
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((4, 6, 32)).astype(dtype)
    w0, b0 = (rng.standard_normal(32).astype(dtype) for _ in range(2))
    g0 = rng.standard_normal(x0.shape).astype(dtype)
    calls = []
    forward, backward = K.layer_norm, K.layer_norm_backward
    monkeypatch.setattr(K, "layer_norm", lambda *a: calls.append("f") or forward(*a))
    monkeypatch.setattr(K, "layer_norm_backward", lambda *a: calls.append("b") or backward(*a))
    fast = _primitive(x0, w0, b0, g0)
    assert calls == ["f", "b"]
    monkeypatch.setattr(K, "applies", lambda *a: False)
    plain = _primitive(x0, w0, b0, g0)
    for a, b in zip(fast, plain):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL[dtype] * 40)


def test_layer_norm_gradients_by_finite_differences_and_jvp_against_vjp():
    rng = np.random.default_rng(2)
    x, w, b = (wl.tensor(rng.standard_normal(s)) for s in ((3, 6), (6,), (6,)))
    wl.testing.check_grads(lambda x, w, b: N.normalize(x, (1,), 1e-5, w, b), (x, w, b),
                           order=2)


def test_jitted_loss_and_gradients_equal_eager():
    rng = np.random.default_rng(3)
    x0, w0, b0 = (rng.standard_normal(s).astype(np.float32) for s in ((8, 16), (16,), (16,)))
    loss = wl.value_and_grad(lambda x, w, b: (N.normalize(x, (1,), 1e-5, w, b) ** 2).sum(),
                             argnums=(0, 1, 2))
    f = wl.jit(loss)
    for scale in (1.0, 1.0, 2.0):            # trace, replay, replay with new values
        new = [wl.tensor(a * scale) for a in (x0, w0, b0)]
        value, grads = loss(*new)
        got_value, got_grads = f(*new)
        np.testing.assert_allclose(got_value.numpy(), value.numpy(), rtol=1e-6)
        for a, b in zip(got_grads, grads):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
