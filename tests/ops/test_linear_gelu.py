"""``linear(..., activation="gelu")`` and ``"gelu_tanh"``: the bias and GELU (exact, or
its tanh form) in the product's epilogue, against the composite reference
``gelu(linear(x, w, b), approximate)``."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.backend import compiled
from wonderland.ops import nn as ops_nn
from wonderland.ops.kernels import special

F = wl.nn.functional


def _arrays(dtype, shape=(3, 5, 16), out=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(dtype),
            (rng.standard_normal((shape[-1], out)) * 0.5).astype(dtype),
            rng.standard_normal(out).astype(dtype),
            rng.standard_normal(shape[:-1] + (out,)).astype(dtype))


def _run(fn, x, w, b, g):
    ts = [wl.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = fn(*ts)
    y.backward(wl.tensor(g))
    return [y.numpy()] + [t.grad.numpy() for t in ts]


FORMS = ["gelu", "gelu_tanh"]


def _fused(x, w, b, form="gelu"):
    return F.linear(x, w, b, activation=form)


def _composite(x, w, b, form="gelu"):
    return F.gelu(F.linear(x, w, b), approximate="tanh" if form == "gelu_tanh" else "none")


def _both(form):
    return (lambda x, w, b: _fused(x, w, b, form)), (lambda x, w, b: _composite(x, w, b, form))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", [(3, 5, 16), (7, 16), (16,)])
def test_float32_fused_equals_the_composite(shape, form):
    x, w, b, g = _arrays(np.float32, shape)
    fused_fn, composite_fn = _both(form)
    fused, ref = _run(fused_fn, x, w, b, g), _run(composite_fn, x, w, b, g)
    for a, r in zip(fused, ref):
        assert a.dtype == np.float32 and a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(r).max()))


@pytest.mark.parametrize("form", FORMS)
def test_float32_fused_takes_the_epilogue_kernels(monkeypatch, form):
    if not special.applies(np.zeros(1, np.float32)):
        pytest.skip("compiled kernels are switched off")
    calls = []
    for name in ("bias_gelu", "gelu_grad_bias"):
        fn = getattr(special, name)
        monkeypatch.setattr(special, name,
                            lambda *a, fn=fn, name=name: calls.append((name, a[-1])) or fn(*a))
    _run(_both(form)[0], *_arrays(np.float32))
    tanh_form = form == "gelu_tanh"
    assert calls == [("bias_gelu", tanh_form), ("gelu_grad_bias", tanh_form)]


@pytest.mark.parametrize("form", FORMS)
def test_float64_equals_the_composite_and_finite_differences(form):
    x, w, b, g = _arrays(np.float64, (2, 3, 4), out=5)
    fused_fn, composite_fn = _both(form)
    for a, r in zip(_run(fused_fn, x, w, b, g), _run(composite_fn, x, w, b, g)):
        np.testing.assert_allclose(a, r, rtol=1e-13, atol=1e-13)
    wl.testing.check_grads(fused_fn, (wl.tensor(x), wl.tensor(w), wl.tensor(b)), order=2)


@pytest.mark.parametrize("form", FORMS)
def test_kernels_switched_off(monkeypatch, form):
    x, w, b, g = _arrays(np.float32)
    fused_fn = _both(form)[0]
    on = _run(fused_fn, x, w, b, g)
    monkeypatch.setattr(compiled, "ENABLED", False)
    off = _run(fused_fn, x, w, b, g)
    for a, r in zip(on, off):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(r).max()))


def test_without_bias_and_bad_arguments():
    x, w, _, _ = _arrays(np.float32)
    np.testing.assert_allclose(F.linear(x, w, activation="gelu").numpy(),
                               F.gelu(F.linear(x, w)).numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        F.linear(x, w, activation="relu6")
    with pytest.raises(ValueError, match="input features"):
        F.linear(x[..., :3], w, activation="gelu")


def test_vmap_jvp_and_jit_agree_with_the_composite():
    x, w, b, _ = _arrays(np.float64, (4, 6), out=5, seed=3)
    X, W, Bb = wl.tensor(x), wl.tensor(w), wl.tensor(b)
    np.testing.assert_allclose(wl.vmap(lambda r: _fused(r, W, Bb))(X).numpy(),
                               _composite(X, W, Bb).numpy(), rtol=1e-13)
    batched_w = wl.tensor(np.stack([w, 2 * w, -w, w]))
    got = wl.vmap(lambda r, m: _fused(r, m, Bb))(X, batched_w).numpy()
    want = np.stack([_composite(X[i], batched_w[i], Bb).numpy() for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-13)
    t = wl.tensor(np.random.default_rng(4).standard_normal(x.shape))
    _, tan = wl.jvp(lambda v: _fused(v, W, Bb), (X,), (t,))
    _, tan_ref = wl.jvp(lambda v: _composite(v, W, Bb), (X,), (t,))
    np.testing.assert_allclose(tan.numpy(), tan_ref.numpy(), rtol=1e-12, atol=1e-14)
    x32, w32, b32, g32 = (wl.tensor(a) for a in _arrays(np.float32, seed=5))
    loss = wl.jit(lambda a, m, c: (_fused(a, m, c) * g32).sum())
    grad = wl.jit(wl.grad(lambda a, m, c: (_fused(a, m, c) * g32).sum(), argnums=(0, 1, 2)))
    for _ in range(3):                          # trace, first replay (checked), replay
        np.testing.assert_allclose(loss(x32, w32, b32).numpy(),
                                   (_composite(x32, w32, b32) * g32).sum().numpy(), rtol=1e-5)
        eager = wl.grad(lambda a, m, c: (_composite(a, m, c) * g32).sum(), argnums=(0, 1, 2))(
            x32, w32, b32)
        for a, r in zip(grad(x32, w32, b32), eager):
            np.testing.assert_allclose(a.numpy(), r.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("where", ["gpt", "gpt_tanh", "encoder"])
def test_layers_with_gelu_use_the_fused_node(where, monkeypatch):
    """The GPT block (exact GELU, or GPT-2's tanh form) and the transformer layers put
    their GELU in the first product's epilogue; the result is that of the composite."""
    prims = []
    apply = ops_nn.apply
    monkeypatch.setattr(ops_nn, "apply",
                        lambda p, *a, **k: prims.append(p.name) or apply(p, *a, **k))
    wl.random.seed(0)
    if where.startswith("gpt"):
        model = wl.models.GPT(11, 8, 2, 2, 16,
                              activation="gelu_tanh" if where == "gpt_tanh" else "gelu")
        x = np.random.default_rng(0).integers(0, 11, (2, 8))
    else:
        model = wl.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu")
        x = np.random.default_rng(0).standard_normal((2, 8, 16)).astype(np.float32)
    y = model(x).numpy()
    assert "linear_gelu" in prims
    monkeypatch.setattr(ops_nn, "linear_gelu", lambda a, m, c, approximate="none": F.gelu(
        F.linear(a, m, c), approximate=approximate))
    monkeypatch.setattr(wl.nn.dense, "_fused_linear_gelu", ops_nn.linear_gelu)
    np.testing.assert_allclose(model(x).numpy(), y, rtol=1e-5, atol=1e-5)


def test_an_unknown_gelu_form_is_a_clear_error():
    x, w, b, _ = _arrays(np.float32)
    with pytest.raises(ValueError, match="linear_gelu: approximate must be 'none' or 'tanh', "
                                         "got 'erf'"):
        ops_nn.linear_gelu(wl.tensor(x), wl.tensor(w), wl.tensor(b), "erf")
    with pytest.raises(ValueError, match="linear: activation must be None, 'gelu' or "
                                         "'gelu_tanh', got 'relu6'"):
        F.linear(x, w, b, activation="relu6")
