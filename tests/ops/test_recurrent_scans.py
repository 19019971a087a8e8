"""Scan primitives: associative_scan, the linear recurrence (real and complex), the
causal FFT convolution, the fused recurrent layers, the selective scan and WKV —
values against plain loops written here, gradients by finite differences (float64,
both modes, second order), every fast path against its reference, vmap against a loop."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.backend import compiled as _compiled
from wonderland.ops.recurrence import recurrent_layer, reference
from wonderland.ops.scan_ops import METHODS
from wonderland.ops.selective import selective_scan
from wonderland.ops.wkv import wkv

from conftest import check_primitive


def loop_recurrence(a, b, h0=None, reverse=False):
    """h_t = a_t h_{t-1} + b_t along axis 1, one step at a time."""
    a = np.broadcast_to(a, b.shape)
    h = np.zeros(b.shape[:1] + b.shape[2:], dtype=np.result_type(a, b)) if h0 is None else h0
    out = np.zeros(b.shape, dtype=h.dtype)
    steps = range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])
    for t in steps:
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out


# ----------------------------------------------------------------------------- associative scan
def test_associative_scan_matches_cumulative_ops(rng):
    for n in (1, 2, 5, 8, 13):
        x = rng.standard_normal((n, 3))
        np.testing.assert_allclose(wl.associative_scan(wl.add, wl.tensor(x)).numpy(),
                                   np.cumsum(x, 0), atol=1e-12)
        np.testing.assert_allclose(wl.associative_scan(wl.maximum, wl.tensor(x)).numpy(),
                                   np.maximum.accumulate(x, 0))
        np.testing.assert_allclose(wl.associative_scan(wl.add, wl.tensor(x), reverse=True).numpy(),
                                   np.cumsum(x[::-1], 0)[::-1], atol=1e-12)


def test_associative_scan_pytree_gives_the_linear_recurrence(rng):
    a = rng.uniform(-1, 1, (2, 11, 3))
    b = rng.standard_normal((2, 11, 3))

    def combine(left, right):
        return {"a": left["a"] * right["a"], "b": right["a"] * left["b"] + right["b"]}

    out = wl.associative_scan(combine, {"a": wl.tensor(a), "b": wl.tensor(b)}, axis=1)
    np.testing.assert_allclose(out["b"].numpy(), loop_recurrence(a, b), atol=1e-12)
    np.testing.assert_allclose(out["a"].numpy(), np.cumprod(a, 1), atol=1e-12)
    rev = wl.associative_scan(lambda l, r: (l[0] * r[0], r[0] * l[1] + r[1]),
                              (wl.tensor(a), wl.tensor(b)), reverse=True, axis=-2)
    np.testing.assert_allclose(rev[1].numpy(), loop_recurrence(a, b, reverse=True), atol=1e-12)


def test_associative_scan_gradients(rng):
    a = rng.uniform(-1, 1, (5, 2))
    b = rng.standard_normal((5, 2))
    wl.testing.check_grads(
        lambda a, b: wl.associative_scan(lambda l, r: (l[0] * r[0], r[0] * l[1] + r[1]),
                                         (a, b))[1], (a, b), order=2)


def test_associative_scan_errors():
    with pytest.raises(ValueError, match="associative_scan: the elements have different lengths"):
        wl.associative_scan(lambda l, r: l, (wl.ones(3), wl.ones(4)))


def test_associative_scan_elements_whose_shapes_fn_cannot_keep(rng):
    """Elements may differ in shape where fn broadcasts them back (a (5, 1) decay beside
    (5, 3) inputs); where it cannot, the error names the element and the shapes."""
    def combine(l, r):
        return l[0] * r[0], r[0] * l[1] + r[1]

    def mixed(l, r):
        return l[0] * r[1], l[1] + r[1]

    a, b = rng.uniform(size=(5, 1)), rng.standard_normal((5, 3))
    _, h = wl.associative_scan(combine, (wl.tensor(a), wl.tensor(b)))
    np.testing.assert_allclose(h.numpy(), loop_recurrence(a[None], b[None])[0], atol=1e-12)
    for f, (sa, sb), axis, leaf in [(mixed, ((5, 1), (5, 3)), 0, 0),
                                    (combine, ((5, 3), (5, 1)), 0, 1),
                                    (combine, ((3, 5), (1, 5)), 1, 1),
                                    (mixed, ((1, 5), (3, 5)), 1, 0)]:
        elems = (wl.tensor(rng.standard_normal(sa)), wl.tensor(rng.standard_normal(sb)))
        with pytest.raises(ValueError, match=rf"associative_scan: fn changed the shape of element "
                                             rf"{leaf} \(elements of shapes \[.*\] along axis "
                                             rf"{axis}\): combining slices of shape "):
            wl.associative_scan(f, elems, axis=axis)


# ----------------------------------------------------------------------------- linear recurrence
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_recurrence_methods_match_a_loop(method, reverse, rng):
    a = rng.uniform(-1, 1, (3, 37, 4))
    b = rng.standard_normal((3, 37, 4))
    h0 = rng.standard_normal((3, 4))
    out = wl.linear_recurrence(a, b, h0, reverse=reverse, method=method)
    np.testing.assert_allclose(out.numpy(), loop_recurrence(a, b, h0, reverse), atol=1e-11)
    # time-invariant coefficients broadcast along time and batch
    a1 = rng.uniform(0, 1, (4,))
    out = wl.linear_recurrence(a1, b, reverse=reverse, method=method)
    np.testing.assert_allclose(out.numpy(), loop_recurrence(a1, b, reverse=reverse), atol=1e-11)


def test_linear_recurrence_axis_and_zero_length(rng):
    a = rng.uniform(-1, 1, (6, 2))
    b = rng.standard_normal((6, 2))
    out = wl.linear_recurrence(a, b, axis=0).numpy()
    np.testing.assert_allclose(out, loop_recurrence(a[None], b[None])[0], atol=1e-12)
    assert wl.linear_recurrence(np.ones((2, 0, 3)), np.ones((2, 0, 3))).shape == (2, 0, 3)


def test_logspace_survives_products_that_underflow(rng):
    """Coefficients of 1e-30: the cumulative product underflows to 0 after a dozen steps,
    so a naive cumsum(b / cumprod(a)) form divides by zero; the chunked log-space form
    and the sequential kernel stay exact."""
    a = np.full((1, 200, 2), 1e-30) * rng.uniform(0.5, 1, (1, 200, 2))
    b = rng.standard_normal((1, 200, 2))
    with np.errstate(all="ignore"):
        naive = np.cumprod(a, 1) * np.cumsum(b / np.cumprod(a, 1), 1)
    assert not np.isfinite(naive).all()
    for method in METHODS:
        out = wl.linear_recurrence(a, b, method=method).numpy()
        # h_t ≈ b_t, the coefficients' terms ~1e-30 of it: a few roundings, ~1e-15 relative
        np.testing.assert_allclose(out, loop_recurrence(a, b), rtol=1e-10, err_msg=method)
    # float32 over a long sequence with |a| near 1 stays close to float64
    a = rng.uniform(0.99, 1.0, (2, 3000, 3))
    b = rng.standard_normal((2, 3000, 3))
    ref = loop_recurrence(a, b)
    for method in ("sequential", "logspace"):
        out = wl.linear_recurrence(a.astype(np.float32), b.astype(np.float32), method=method)
        assert np.abs(out.numpy() - ref).max() < 1e-3 * np.abs(ref).max(), method


@pytest.mark.parametrize("reverse", [False, True])
def test_linear_recurrence_gradients(reverse, rng):
    a = rng.uniform(-1, 1, (2, 4, 2))
    b = rng.standard_normal((2, 4, 2))
    h0 = rng.standard_normal((2, 2))
    check_primitive(lambda a, b, h0: wl.linear_recurrence(a, b, h0, reverse=reverse), a, b, h0)
    check_primitive(lambda a, b: wl.linear_recurrence(a, b, reverse=reverse), a[:1, :, :1], b)


def test_linear_recurrence_gradients_through_parallel_method(rng):
    a = rng.uniform(-1, 1, (1, 5, 2))
    b = rng.standard_normal((1, 5, 2))
    wl.testing.check_grads(lambda a, b: wl.linear_recurrence(a, b, method="parallel"), (a, b),
                           order=2)


def test_linear_recurrence_vmap_equals_a_loop(rng):
    a = rng.uniform(-1, 1, (4, 6, 3))
    b = rng.standard_normal((4, 6, 3))
    h0 = rng.standard_normal((4, 3))
    f = lambda a, b, h0: wl.linear_recurrence(a, b, h0, axis=0)  # noqa: E731
    got = wl.vmap(f)(wl.tensor(a), wl.tensor(b), wl.tensor(h0)).numpy()
    want = np.stack([f(a[i], b[i], h0[i]).numpy() for i in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-12)
    shared = wl.vmap(f, in_axes=(None, 0, None))(wl.tensor(a[0]), wl.tensor(b), wl.tensor(h0[0]))
    np.testing.assert_allclose(shared.numpy(), np.stack([f(a[0], b[i], h0[0]).numpy()
                                                         for i in range(4)]), atol=1e-12)
    # per-example gradients through vmap
    g = wl.vmap(wl.grad(lambda a, b: f(a, b, h0[0]).sum()))(wl.tensor(a), wl.tensor(b)).numpy()
    for i in range(4):
        gi = wl.grad(lambda a: f(a, b[i], h0[0]).sum())(wl.tensor(a[i])).numpy()
        np.testing.assert_allclose(g[i], gi, atol=1e-12)


def test_linear_recurrence_errors():
    with pytest.raises(ValueError, match="linear_recurrence: a of shape"):
        wl.linear_recurrence(np.ones((2, 3, 4)), np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match=r"linear_recurrence: h0 has shape \(3,\), expected \(2, 4\)"):
        wl.linear_recurrence(np.ones((2, 3, 4)), np.ones((2, 3, 4)), h0=np.ones(3))
    with pytest.raises(ValueError, match="unknown method"):
        wl.linear_recurrence(np.ones((2, 3)), np.ones((2, 3)), method="magic")


def test_compiled_kernel_matches_its_python_form(rng):
    from wonderland.ops.scan_ops import _recurrence_kernel
    a = rng.uniform(-1, 1, (2, 5, 3))
    b = rng.standard_normal((2, 5, 3))
    h0 = rng.standard_normal((2, 3))
    outs = []
    for fn in (_recurrence_kernel, _recurrence_kernel.py_func):
        out = np.empty_like(b)
        fn(a, b, h0, out, False, 0, 2)
        outs.append(out)
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-14)
    np.testing.assert_allclose(outs[0], loop_recurrence(a, b, h0), atol=1e-14)
    assert _compiled.available() or _recurrence_kernel.compiled() is _recurrence_kernel.py_func


# ----------------------------------------------------------------------------- complex recurrence
def test_complex_recurrence_matches_complex_numbers(rng):
    ar, ai = rng.uniform(-0.7, 0.7, (2, 2, 9, 3))
    br, bi = rng.standard_normal((2, 2, 9, 3))
    hr, hi = rng.standard_normal((2, 2, 3))
    for reverse in (False, True):
        for method in METHODS:
            out = wl.complex_linear_recurrence((ar, ai), (br, bi), (hr, hi), reverse=reverse,
                                               method=method)
            want = loop_recurrence(ar + 1j * ai, br + 1j * bi, hr + 1j * hi, reverse)
            np.testing.assert_allclose(out[0].numpy(), want.real, atol=1e-12)
            np.testing.assert_allclose(out[1].numpy(), want.imag, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_complex_recurrence_gradients(reverse, rng):
    ar, ai = rng.uniform(-0.7, 0.7, (2, 1, 4, 2))
    br, bi = rng.standard_normal((2, 1, 4, 2))
    hr, hi = rng.standard_normal((2, 1, 2))

    def f(ar, ai, br, bi, hr, hi):
        return wl.concatenate(wl.complex_linear_recurrence((ar, ai), (br, bi), (hr, hi),
                                                           reverse=reverse), axis=0)

    check_primitive(f, ar, ai, br, bi, hr, hi)


def test_complex_recurrence_vmap(rng):
    ar, ai = rng.uniform(-0.7, 0.7, (2, 3, 5, 2))
    br, bi = rng.standard_normal((2, 3, 5, 2))
    f = lambda ar, ai, br, bi: wl.complex_linear_recurrence((ar, ai), (br, bi), axis=0)  # noqa: E731
    got = wl.vmap(f, in_axes=(None, None, 0, 0))(*(wl.tensor(v) for v in (ar[0], ai[0], br, bi)))
    for i in range(3):
        want = f(ar[0], ai[0], br[i], bi[i])
        np.testing.assert_allclose(got[0].numpy()[i], want[0].numpy(), atol=1e-12)
        np.testing.assert_allclose(got[1].numpy()[i], want[1].numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- causal convolution
def test_causal_convolution_matches_the_sum_and_the_recurrence(rng):
    x = rng.standard_normal((2, 20, 3))
    for lk in (20, 7):
        k = rng.standard_normal((lk, 3))
        want = np.zeros_like(x)
        for t in range(20):
            for s in range(min(t + 1, lk)):
                want[:, t] += k[s] * x[:, t - s]
        np.testing.assert_allclose(wl.causal_convolution(x, k).numpy(), want, atol=1e-12)
    # a time-invariant recurrence is a convolution with the kernel a^s
    a = rng.uniform(-0.9, 0.9, 3)
    kernel = a[None, :] ** np.arange(20)[:, None]
    np.testing.assert_allclose(wl.causal_convolution(x, kernel).numpy(),
                               loop_recurrence(a, x), atol=1e-12)


def test_causal_convolution_gradients_and_vmap(rng):
    x = rng.standard_normal((2, 6, 2))
    check_primitive(wl.causal_convolution, x, rng.standard_normal((6, 2)))
    check_primitive(wl.causal_convolution, x, rng.standard_normal((3, 2)))
    k = rng.standard_normal((4, 6, 2))
    got = wl.vmap(wl.causal_convolution, in_axes=(None, 0))(wl.tensor(x), wl.tensor(k)).numpy()
    for i in range(4):
        np.testing.assert_allclose(got[i], wl.causal_convolution(x, k[i]).numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- fused RNN layers
def _layer_inputs(kind, rng, n=3, t=5, h=4):
    g = {"rnn_tanh": 1, "rnn_relu": 1, "gru": 3, "lstm": 4}[kind]
    return (rng.standard_normal((n, t, g * h)), rng.standard_normal((h, g * h)) * 0.5,
            rng.standard_normal(g * h), rng.standard_normal((n, h)), rng.standard_normal((n, h)))


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_layer_matches_reference(kind, reverse, rng):
    arrays = _layer_inputs(kind, rng)
    mask = wl.tensor(np.arange(5)[None] < np.array([5, 3, 1])[:, None])
    ins = [wl.tensor(a, requires_grad=True) for a in arrays]
    fast = recurrent_layer(kind, *ins, mask, reverse)
    slow = reference(kind, *ins, mask, reverse)
    cts = [wl.tensor(rng.standard_normal(o.shape)) for o in fast]
    g_fast = wl.autograd.grad(fast, ins, cts, allow_unused=True)
    g_slow = wl.autograd.grad(slow, ins, cts, allow_unused=True)
    for o, r in zip(fast, slow):
        np.testing.assert_allclose(o.numpy(), r.numpy(), atol=1e-12)
    for gf, gs in zip(g_fast, g_slow):
        gf = 0 if gf is None else gf.numpy()
        gs = 0 if gs is None else gs.numpy()
        np.testing.assert_allclose(gf, gs, atol=1e-12)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_fused_layer_gradients(kind, rng):
    arrays = _layer_inputs(kind, rng, n=2, t=3, h=2)
    mask = wl.tensor(np.array([[True, True, True], [True, True, False]]))
    wl.testing.check_grads(lambda *a: recurrent_layer(kind, *a, mask), arrays, order=2)


def test_fused_layer_vmap_equals_a_loop(rng):
    xw, w, b, h0, c0 = _layer_inputs("lstm", rng)
    xs = rng.standard_normal((2,) + xw.shape)
    mask = wl.ones((3, 5), dtype=wl.bool_)
    f = lambda x: recurrent_layer("lstm", x, w, b, h0, c0, mask)[0]  # noqa: E731
    got = wl.vmap(f)(wl.tensor(xs)).numpy()
    np.testing.assert_allclose(got, np.stack([f(wl.tensor(x)).numpy() for x in xs]), atol=1e-12)
    # batched weights take the looping rule
    ws = rng.standard_normal((2,) + w.shape)
    g = lambda w: recurrent_layer("gru", xw[..., :12], w[:, :12], b[:12], h0, c0, mask)[1]  # noqa: E731
    got = wl.vmap(g)(wl.tensor(ws)).numpy()
    np.testing.assert_allclose(got, np.stack([g(wl.tensor(v)).numpy() for v in ws]), atol=1e-12)


def test_layer_is_one_graph_node(rng):
    lstm = wl.nn.LSTM(3, 4)
    out, _ = lstm(wl.tensor(rng.standard_normal((2, 50, 3)).astype(np.float32)))
    assert out._node.name == "recurrent_layer"


# ----------------------------------------------------------------------------- selective scan
def _ssm_inputs(rng, b=2, t=7, d=3, n=4):
    return (rng.standard_normal((b, t, d)), rng.uniform(0.05, 1, (b, t, d)),
            -rng.uniform(0.5, 2, (d, n)), rng.standard_normal((b, t, n)),
            rng.standard_normal((b, t, n)), rng.standard_normal((b, d, n)))


def _loop_selective(x, delta, A, Bm, C, h0):
    h = h0.copy()
    y = np.zeros(x.shape)
    for t in range(x.shape[1]):
        h = np.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * Bm[:, t, None]
        y[:, t] = (h * C[:, t, None]).sum(-1)
    return y, h


@pytest.mark.parametrize("t", [7, 150])
def test_selective_scan_matches_loop_and_reference(t, rng):
    arrays = _ssm_inputs(rng, t=t)
    ins = [wl.tensor(a, requires_grad=True) for a in arrays]
    fast = selective_scan(*ins)
    slow = selective_scan(*ins, reference=True)
    y, hT = _loop_selective(*arrays)
    np.testing.assert_allclose(fast[0].numpy(), y, atol=1e-11)
    np.testing.assert_allclose(fast[1].numpy(), hT, atol=1e-11)
    cts = [wl.tensor(rng.standard_normal(o.shape)) for o in fast]
    for gf, gs in zip(wl.autograd.grad(fast, ins, cts), wl.autograd.grad(slow, ins, cts)):
        np.testing.assert_allclose(gf.numpy(), gs.numpy(), atol=1e-10)


@pytest.mark.parametrize("t", [5, 150])
def test_selective_scan_float32_decays_match_float64(t, rng):
    """float32 computes exp(Δ A) through the vectorised exponential: the same values and
    gradients as the float64 kernel (the C library's exp) to float32 rounding."""
    arrays = _ssm_inputs(rng, t=t)
    wide = [wl.tensor(a, requires_grad=True) for a in arrays]
    narrow = [wl.tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    outs = [selective_scan(*ins) for ins in (wide, narrow)]
    cts = [rng.standard_normal(o.shape) for o in outs[0]]
    grads = [wl.autograd.grad(o, ins, [wl.tensor(c.astype(o[0].dtype)) for c in cts])
             for o, ins in zip(outs, (wide, narrow))]
    for a, b in zip(list(outs[0]) + list(grads[0]), list(outs[1]) + list(grads[1])):
        assert b.dtype == np.float32
        scale = np.abs(a.numpy()).max()
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=3e-6 * scale, rtol=1e-4)


def test_selective_scan_gradients_and_vmap(rng):
    arrays = _ssm_inputs(rng, b=1, t=3, d=2, n=2)
    wl.testing.check_grads(lambda *a: selective_scan(*a), arrays, order=2)
    arrays = _ssm_inputs(rng)
    x, delta, A, Bm, C, h0 = arrays
    f = lambda x, d: selective_scan(x, d, A, Bm, C, h0)[0]  # noqa: E731
    xs, ds = rng.standard_normal((3,) + x.shape), rng.uniform(0.1, 1, (3,) + x.shape)
    got = wl.vmap(f)(wl.tensor(xs), wl.tensor(ds)).numpy()
    np.testing.assert_allclose(got, np.stack([f(xs[i], ds[i]).numpy() for i in range(3)]),
                               atol=1e-12)


def test_selective_scan_errors():
    with pytest.raises(ValueError, match=r"selective_scan: A must be \(d, n\)"):
        selective_scan(np.ones((1, 2, 3)), np.ones((1, 2, 3)), np.ones((4, 2)),
                       np.ones((1, 2, 2)), np.ones((1, 2, 2)))


# ----------------------------------------------------------------------------- WKV
def _loop_wkv(w, u, k, v):
    y = np.zeros(k.shape)
    for t in range(k.shape[1]):
        num = np.exp(u + k[:, t]) * v[:, t]
        den = np.exp(u + k[:, t])
        for i in range(t):
            e = np.exp(-(t - 1 - i) * w + k[:, i])
            num = num + e * v[:, i]
            den = den + e
        y[:, t] = num / den
    return y


def test_wkv_matches_the_definition_and_reference(rng):
    w, u = rng.uniform(0.1, 1, 3), rng.standard_normal(3)
    k, v = rng.standard_normal((2, 9, 3)), rng.standard_normal((2, 9, 3))
    np.testing.assert_allclose(wkv(w, u, k, v).numpy(), _loop_wkv(w, u, k, v), atol=1e-12)
    ins = [wl.tensor(a, requires_grad=True) for a in (w, u, k, v)]
    ct = wl.tensor(rng.standard_normal(k.shape))
    fast = wl.autograd.grad([wkv(*ins)], ins, [ct])
    slow = wl.autograd.grad([wkv(*ins, reference=True)], ins, [ct])
    for gf, gs in zip(fast, slow):
        np.testing.assert_allclose(gf.numpy(), gs.numpy(), atol=1e-11)


@pytest.mark.parametrize("scale", [1.0, 12.0])
def test_wkv_float32_exponentials_match_float64(scale, rng):
    """float32 computes each step's exponentials through the vectorised exp: values and
    gradients as the float64 kernel's (the C library's exp) to float32 rounding, large
    keys included."""
    w, u = rng.uniform(0.1, 1, 5), rng.standard_normal(5)
    k, v = scale * rng.standard_normal((3, 40, 5)), rng.standard_normal((3, 40, 5))
    ct = rng.standard_normal(k.shape)
    results = []
    for dt in (np.float64, np.float32):
        ins = [wl.tensor(a.astype(dt), requires_grad=True) for a in (w, u, k, v)]
        y = wkv(*ins)
        results.append([y] + list(wl.autograd.grad([y], ins, [wl.tensor(ct.astype(dt))])))
    for a, b in zip(*results):
        assert b.dtype == np.float32 and np.isfinite(b.numpy()).all()
        scale_ = np.abs(a.numpy()).max()
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5 * scale_, rtol=1e-3)


def test_wkv_is_stable_where_exponentials_overflow(rng):
    """Keys of ~800 overflow exp() even in float64; the running maximum keeps the
    outputs and gradients finite and equal to the (max-subtracted) softmax form."""
    w, u = rng.uniform(0.1, 1, 2), rng.standard_normal(2)
    k = 800 + 5 * rng.standard_normal((1, 12, 2))
    v = rng.standard_normal((1, 12, 2))
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(k)).all()
    ins = [wl.tensor(a, requires_grad=True) for a in (w, u, k, v)]
    y = wkv(*ins)
    assert np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(y.numpy(), wkv(*ins, reference=True).numpy(), atol=1e-12)
    ct = wl.tensor(rng.standard_normal(k.shape))
    fast = wl.autograd.grad([wkv(*ins)], ins, [ct])
    slow = wl.autograd.grad([wkv(*ins, reference=True)], ins, [ct])
    for gf, gs in zip(fast, slow):
        assert np.isfinite(gf.numpy()).all()
        np.testing.assert_allclose(gf.numpy(), gs.numpy(), atol=1e-9)
    y32 = wkv(*(a.astype(np.float32) for a in (w, u, k / 8, v)))      # keys ~100 in float32
    assert np.isfinite(y32.numpy()).all()


def test_wkv_gradients_and_vmap(rng):
    w, u = rng.uniform(0.1, 1, 2), rng.standard_normal(2)
    k, v = rng.standard_normal((1, 4, 2)), rng.standard_normal((1, 4, 2))
    wl.testing.check_grads(lambda *a: wkv(*a), (w, u, k, v), order=2)
    ks, vs = rng.standard_normal((3, 2, 5, 2)), rng.standard_normal((3, 2, 5, 2))
    got = wl.vmap(lambda k, v: wkv(w, u, k, v))(wl.tensor(ks), wl.tensor(vs)).numpy()
    np.testing.assert_allclose(got, np.stack([wkv(w, u, ks[i], vs[i]).numpy() for i in range(3)]),
                               atol=1e-12)


# ----------------------------------------------------------------------------- wl.scan closures
def test_scan_closing_over_parameters_reaches_grad(rng):
    w = wl.nn.Parameter(rng.standard_normal((3, 3)) * 0.5)
    u = wl.nn.Parameter(rng.standard_normal(3))
    xs = wl.tensor(rng.standard_normal((6, 2, 3)))

    def step(h, x):
        h = wl.tanh(h @ w + x * u)
        return h, h

    def loss_of(w_, u_):
        def body(h, x):
            h = wl.tanh(h @ w_ + x * u_)
            return h, h
        _, hs = wl.scan(body, wl.zeros((2, 3), dtype=wl.float64), xs)
        return (hs ** 2).sum()

    _, hs = wl.scan(step, wl.zeros((2, 3), dtype=wl.float64), xs)
    loss = (hs ** 2).sum()
    loss.backward()
    # the same loss unrolled by hand, with the gradient taken by wl.grad
    gw, gu = wl.grad(loss_of, argnums=(0, 1))(w.detach(), u.detach())
    np.testing.assert_allclose(w.grad.numpy(), gw.numpy(), atol=1e-12)
    np.testing.assert_allclose(u.grad.numpy(), gu.numpy(), atol=1e-12)
    # and by finite differences through the closure
    eps = 1e-6
    e = np.zeros((3, 3))
    e[0, 1] = eps
    fd = (loss_of(wl.tensor(w.numpy() + e), u.detach()).item()
          - loss_of(wl.tensor(w.numpy() - e), u.detach()).item()) / (2 * eps)
    assert abs(fd - w.grad.numpy()[0, 1]) < 1e-6
    # wl.grad differentiating a function whose scan closes over a tensor it is given
    gu2 = wl.grad(lambda u_: loss_of(w.detach(), u_))(u.detach())
    np.testing.assert_allclose(gu2.numpy(), u.grad.numpy(), atol=1e-12)


def test_truncated_bptt_cuts_the_graph_and_keeps_the_values(rng):
    lstm = wl.nn.LSTM(2, 3, dtype=np.float64)
    x = wl.tensor(rng.standard_normal((1, 10, 2)), requires_grad=True)
    full, _ = lstm(x)
    state, outs = None, []
    for chunk in wl.nn.truncated_chunks(x, 4):
        out, state = lstm(chunk, state)
        outs.append(out)
        state = wl.nn.detach_state(state)
    np.testing.assert_allclose(wl.concatenate(outs, 1).numpy(), full.numpy(), atol=1e-14)
    outs[-1].sum().backward()
    assert np.all(x.grad.numpy()[0, :8] == 0) and np.any(x.grad.numpy()[0, 8:] != 0)


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
@pytest.mark.parametrize("reverse", [False, True])
def test_float32_layers_take_the_vectorised_gates_and_agree_with_float64(kind, reverse, rng):
    """float32 layers compute their sigmoids and tanh through the vectorised exp
    (tanh(x) = 2σ(2x) − 1); float64 layers through the C library's. They agree to float32
    rounding, forward and backward."""
    arrays = _layer_inputs(kind, rng, n=4, t=7, h=9)
    mask = wl.tensor(np.arange(7)[None] < np.array([7, 5, 1, 7])[:, None])
    results = []
    for dt in (np.float64, np.float32):
        ins = [wl.tensor(a.astype(dt), requires_grad=True) for a in arrays]
        outs = recurrent_layer(kind, *ins, mask, reverse)
        g = np.random.default_rng(1)
        cts = [wl.tensor(g.standard_normal(o.shape).astype(dt)) for o in outs]
        grads = wl.autograd.grad(outs, ins, cts, allow_unused=True)
        results.append([o.numpy() for o in outs] + [g.numpy() for g in grads if g is not None])
    assert all(a.dtype == np.float32 for a in results[1])
    for a64, a32 in zip(*results):
        np.testing.assert_allclose(a32, a64, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cls", [wl.nn.RNN, wl.nn.GRU, wl.nn.LSTM])
def test_layers_refuse_inputs_and_states_of_another_dtype(cls, rng):
    name = cls.__name__
    layer = cls(3, 4)                                       # float32 weights
    for dt in (np.float64, np.float16, np.int64):
        x = wl.tensor(np.ones((2, 5, 3), dtype=dt))
        with pytest.raises(TypeError, match=f"{name}: input dtype {np.dtype(dt)} does not "
                                            f"match the weights' float32"):
            layer(x)
    x32 = wl.tensor(rng.standard_normal((2, 5, 3)).astype(np.float32))
    h64 = wl.tensor(np.zeros((1, 2, 4)))
    h32 = wl.tensor(np.zeros((1, 2, 4), dtype=np.float32))
    hx = (h64, h32) if name == "LSTM" else h64
    with pytest.raises(TypeError, match=f"{name}: h_0 dtype float64 does not match the "
                                        f"weights' float32"):
        layer(x32, hx)
    if name == "LSTM":
        with pytest.raises(TypeError, match="LSTM: c_0 dtype float64 does not match"):
            layer(x32, (h32, h64))
    # a float64 model on float64 input works, and gives the float32 model's numbers
    ref = layer(x32)[0].numpy()
    double = cls(3, 4)
    double.load_state_dict(layer.state_dict())
    double.double()
    out = double(x32.astype(np.float64), hx if name != "LSTM" else (h64, h64))[0]
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    half = cls(3, 4).to(np.float16)                          # no float16 kernels
    with pytest.raises(TypeError, match=f"{name}: the recurrence runs in float32 or float64, "
                                        f"but the weights are float16"):
        half(wl.tensor(np.ones((2, 5, 3), dtype=np.float16)))


def test_warm_up_compiles_only_the_data_types_asked_for(monkeypatch):
    """``wl.ops.warm_up(dtypes=...)`` runs each module's kernels on those types only (a
    fresh cache then compiles a third as much); without ``dtypes``, every type served."""
    from wonderland.ops import recurrence, scan_ops, wkv

    seen = []
    for module, data in ((recurrence, 0), (wkv, -1)):        # the argument holding the data
        real = module._forward
        monkeypatch.setattr(module, "_forward", lambda *a, real=real, data=data, **k: seen.append(
            np.asarray(a[data]).dtype) or real(*a, **k))
    real_scan = scan_ops._recurrence_kernel
    monkeypatch.setattr(scan_ops, "_recurrence_kernel",
                        lambda a, *rest: seen.append(a.dtype) or real_scan(a, *rest))
    wl.ops.warm_up(dtypes=(np.float32, np.complex64))
    assert set(seen) == {np.dtype(np.float32), np.dtype(np.complex64)}
    seen.clear()
    wl.ops.warm_up()
    assert set(seen) == {np.dtype(t) for t in (np.float32, np.float64, np.complex64,
                                               np.complex128)}
