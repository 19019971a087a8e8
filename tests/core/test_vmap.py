"""vmap: every batching rule equals a Python loop over the examples, and vmap composes
with grad, jvp and itself."""

import numpy as np
import pytest

import wonderland as wl
import wonderland.nn.functional as F

rng = np.random.default_rng(7)


def t(*shape):
    return wl.tensor(rng.standard_normal(shape))


def looped(f, in_axes, args, out_axis=0):
    """``f`` applied example by example, results stacked (the reference)."""
    size = next(a.shape[ax] for a, ax in zip(args, in_axes) if ax is not None)
    outs = []
    for i in range(size):
        ex = [a if ax is None else wl.take(a, wl.tensor([i]), axis=ax).squeeze(ax)
              for a, ax in zip(args, in_axes)]
        outs.append(f(*ex))
    return wl.stack(outs, axis=out_axis)


CASES = [
    ("add", lambda a, b: a + b, (t(4, 3), t(3)), (0, None)),
    ("add both", lambda a, b: a + b, (t(4, 3), t(3, 4)), (0, 1)),
    ("multiply broadcast", lambda a, b: a * b, (t(5, 2, 3), t(5, 3)), (0, 0)),
    ("divide", lambda a, b: a / (b * b + 1.0), (t(3, 4), t(4, 3)), (1, 0)),
    ("power", lambda a, b: wl.abs(a) ** b, (t(4, 3), t(4, 3)), (0, 0)),
    ("maximum", lambda a, b: wl.maximum(a, b), (t(4, 3), t(3)), (0, None)),
    ("unary", lambda a: wl.tanh(a).exp().sin() + wl.sigmoid(a) * wl.erf(a), (t(4, 3, 2),), (1,)),
    ("relu softplus", lambda a: wl.relu(a) + wl.softplus(a), (t(3, 5),), (0,)),
    ("where", lambda a, b: wl.where(a > 0, a, b), (t(4, 3), t(3)), (0, None)),
    ("clip", lambda a: wl.clip(a, -0.5, 0.5), (t(4, 3),), (1,)),
    ("sum axes", lambda a: a.sum(axis=(0, 2)) + a.mean(1).sum(-1, keepdims=True), (t(4, 2, 3, 5),), (0,)),
    ("max min prod", lambda a: a.max(0) + a.min(-1).sum() + a.prod(1).sum(), (t(2, 3, 4),), (0,)),
    ("softmax family", lambda a: a.softmax(-1) + a.log_softmax(0) + a.logsumexp(1, keepdims=True),
     (t(4, 3, 5),), (1,)),
    ("var std cumsum", lambda a: a.var(0) + a.std(-1).sum() + a.cumsum(1)[-1], (t(3, 4, 5),), (2,)),
    ("reshape transpose", lambda a: a.reshape(2, -1).T.reshape(-1, 2).swapaxes(0, 1), (t(5, 2, 6),), (0,)),
    ("broadcast_to expand", lambda a: a.broadcast_to((3, 2, 4)).expand_dims(0).squeeze(0), (t(4, 2, 4),), (0,)),
    ("concatenate stack", lambda a, b: wl.concatenate([a, b, a], axis=-1) + wl.stack([a, b], 0).sum(0).sum(-1, keepdims=True),
     (t(4, 2, 3), t(2, 3)), (0, None)),
    ("pad flip", lambda a: wl.pad(a, ((1, 2), (0, 1))).flip(0), (t(4, 3, 2),), (0,)),
    ("getitem basic", lambda a: a[1:, ::2] * a[0, None, ::2], (t(4, 3, 5),), (0,)),
    ("getitem advanced", lambda a: a[wl.tensor([2, 0, 2])] + a[:, wl.tensor([1, 1, 0])].T, (t(3, 3, 3),), (2,)),
    ("take along axis", lambda a: wl.take_along_axis(a, wl.tensor([[0, 2], [1, 1]]), 1), (t(4, 2, 3),), (0,)),
    ("add_at", lambda a, v: wl.add_at(a, wl.tensor([0, 2, 0]), v), (t(4, 3, 2), t(3, 2)), (0, None)),
    ("add_at values", lambda a, v: wl.add_at(a, wl.tensor([0, 2, 0]), v), (t(3, 2), t(4, 3, 2)), (None, 0)),
    ("matmul mm", lambda a, b: a @ b, (t(4, 3, 5), t(5, 2)), (0, None)),
    ("matmul right", lambda a, b: a @ b, (t(3, 5), t(5, 4, 2)), (None, 1)),
    ("matmul vec", lambda a, b: a @ b, (t(4, 5), t(5, 4)), (0, 1)),
    ("matmul both batched", lambda a, b: a @ b, (t(4, 2, 3, 5), t(4, 5, 2)), (0, 0)),
    ("matmul vec-mat", lambda a, b: a @ b, (t(5,), t(4, 5, 3)), (None, 0)),
    ("einsum", lambda a, b: wl.einsum("ij,jk->ik", a, b) + wl.einsum("ii->i", a[:, :2][:2]).sum(),
     (t(4, 2, 3), t(3, 2)), (0, None)),
    ("linear", lambda x, w, b: F.linear(x, w, b), (t(4, 6, 3), t(3, 2), t(2)), (0, None, None)),
    ("linear batched weight", lambda x, w, b: F.linear(x, w, b), (t(6, 3), t(4, 3, 2), t(2)), (None, 0, None)),
    ("cross entropy", lambda z, q: wl.softmax_cross_entropy(z, q), (t(4, 5, 3), wl.softmax(t(4, 5, 3))), (0, 0)),
    ("layer norm", lambda x: F.layer_norm(x, (3,)) + F.rms_norm(x, (3,)), (t(4, 2, 3),), (0,)),
    ("norm", lambda x: wl.linalg.norm(x, axis=-1), (t(4, 2, 3),), (1,)),
    ("conv", lambda x, w: F.conv2d(x, w, padding=1), (t(3, 2, 5, 5, 2), t(3, 3, 2, 4)), (0, None)),
    ("solve (looping rule)", lambda a, b: wl.linalg.solve(a @ a.T + 3.0 * wl.eye(3, dtype=wl.float64), b),
     (t(4, 3, 3), t(3, 2)), (0, None)),
]


@pytest.mark.parametrize("name,f,args,in_axes", CASES, ids=[c[0] for c in CASES])
def test_vmap_equals_a_loop(name, f, args, in_axes):
    got = wl.vmap(f, in_axes=in_axes)(*args)
    want = looped(f, in_axes, args)
    # batched kernels against one call per example: small operands, ~1e-15 relative (the solve:
    # matrices of condition < 10)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)


def test_out_axes_and_unbatched_outputs():
    x = t(4, 3)
    out = wl.vmap(lambda v: v * 2, out_axes=1)(x)
    np.testing.assert_allclose(out.numpy(), (x.numpy() * 2).T)
    const = wl.vmap(lambda v: wl.ones(2, dtype=wl.float64))(x)
    assert const.shape == (4, 2)


def test_nested_vmap_is_an_outer_product():
    a, b = t(3), t(4)
    out = wl.vmap(lambda u: wl.vmap(lambda v: u * v)(b))(a)
    np.testing.assert_allclose(out.numpy(), np.outer(a.numpy(), b.numpy()))


def test_per_example_gradients():
    w = t(3, 2)
    xs, ys = t(5, 3), t(5, 2)

    def loss(w, x, y):
        return ((wl.tanh(x @ w) - y) ** 2).sum()

    per_example = wl.vmap(wl.grad(loss), in_axes=(None, 0, 0))(w, xs, ys)
    want = wl.stack([wl.grad(loss)(w, xs[i], ys[i]) for i in range(5)])
    # batched and single products of 3 terms: ~1e-16 absolute; atol for entries near zero
    np.testing.assert_allclose(per_example.numpy(), want.numpy(), rtol=1e-12, atol=1e-13)


def test_grad_of_a_vmapped_function():
    w = t(3, 2)
    xs = t(5, 3)
    f = lambda w: wl.vmap(lambda x: wl.tanh(x @ w).sum())(xs).sum()  # noqa: E731
    g = wl.grad(f)(w)
    want = wl.grad(lambda w: wl.tanh(xs @ w).sum())(w)
    # 5 examples' contributions summed in another order: ~5e-16 absolute; atol near zero
    np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-12, atol=1e-13)
    wv = w.detach().requires_grad_()
    f(wv).backward()
    np.testing.assert_allclose(wv.grad.numpy(), want.numpy(), rtol=1e-12, atol=1e-13)


def test_jvp_and_vmap_commute():
    x, v = t(4, 3), t(4, 3)
    f = lambda u: wl.sin(u) * u.sum()  # noqa: E731
    a = wl.vmap(lambda p, q: wl.jvp(f, (p,), (q,))[1])(x, v)
    b = wl.jvp(wl.vmap(f), (x,), (v,))[1]
    # sin, cos and a sum of 3 per row, batched or not: a few ulps; atol near zero
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-13)


def test_jacobians_match_finite_differences_and_each_other():
    x = t(6)
    w = t(4, 6)
    f = lambda v: wl.tanh(w @ v) * v[:4]  # noqa: E731
    jr, jf = wl.jacrev(f)(x), wl.jacfwd(f)(x)
    eps = 1e-6
    fd = np.stack([(f(x + eps * wl.tensor(e)).numpy() - f(x - eps * wl.tensor(e)).numpy()) / (2 * eps)
                   for e in np.eye(6)], axis=1)
    np.testing.assert_allclose(jr.numpy(), fd, rtol=1e-6, atol=1e-8)
    # columns by JVPs, rows by VJPs, through 4×6 products: ~1e-16 absolute; atol near zero
    np.testing.assert_allclose(jf.numpy(), jr.numpy(), rtol=1e-12, atol=1e-13)
    h = wl.hessian(lambda v: (wl.tanh(w @ v) ** 2).sum())(x)
    # H and Hᵀ come from different passes: ~1e-15 relative
    np.testing.assert_allclose(h.numpy(), h.numpy().T, rtol=1e-10)


def test_forward_over_reverse_on_batched_primals_is_refused_and_alternatives_work():
    xs, v = t(3, 2), t(2)
    cube = wl.grad(lambda u: (u ** 3).sum())
    with pytest.raises(NotImplementedError, match="reverse mode inside jvp inside vmap"):
        wl.vmap(lambda x: wl.jvp(cube, (x,), (v,))[1])(xs)
    vs = wl.stack([v] * 3)
    hv = wl.jvp(wl.vmap(cube), (xs,), (vs,))[1]                  # jvp outside the vmap
    # products only (3u²·2·v against 6·x·v): a few ulps relative, no cancellation
    np.testing.assert_allclose(hv.numpy(), 6 * xs.numpy() * v.numpy(), rtol=1e-12)
    rr = wl.vmap(lambda x: wl.grad(lambda u: (cube(u) * v).sum())(x))(xs)   # reverse over reverse
    np.testing.assert_allclose(rr.numpy(), 6 * xs.numpy() * v.numpy(), rtol=1e-12)


def test_values_cannot_be_read_inside_vmap():
    with pytest.raises(TypeError, match="vmap: this operation reads the values"):
        wl.vmap(lambda v: v * float(v.sum()))(t(3, 2))


def test_vmap_argument_errors():
    with pytest.raises(ValueError, match="different sizes"):
        wl.vmap(lambda a, b: a + b)(t(3, 2), t(4, 2))
    with pytest.raises(ValueError, match="no argument is batched"):
        wl.vmap(lambda a: a, in_axes=None)(t(3))
    with pytest.raises(ValueError, match="out of range"):
        wl.vmap(lambda a: a, in_axes=2)(t(3, 2))
