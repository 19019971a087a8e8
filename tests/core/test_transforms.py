"""The JAX-style transforms and their composition."""

import math

import numpy as np
import pytest

import wonderland as wl
from conftest import f64


def test_known_derivatives():
    assert wl.grad(lambda x: x ** 3)(f64(2.0)).item() == pytest.approx(12.0)
    assert wl.grad(wl.grad(lambda x: x ** 3))(f64(2.0)).item() == pytest.approx(12.0)
    assert wl.grad(wl.grad(wl.grad(lambda x: x ** 3)))(f64(2.0)).item() == pytest.approx(6.0)
    d2 = wl.grad(wl.grad(wl.sin))(f64(0.7)).item()
    assert d2 == pytest.approx(-math.sin(0.7))
    d3 = wl.grad(wl.grad(wl.grad(wl.tanh)))(f64(0.3)).item()
    t = math.tanh(0.3)
    assert d3 == pytest.approx(-2 * (1 - t * t) * (1 - 3 * t * t))
    _, t = wl.jvp(wl.grad(lambda x: wl.exp(2 * x)), (f64(0.5),), (f64(1.0),))
    assert t.item() == pytest.approx(4 * math.exp(1.0))


def test_nested_perturbations_are_not_confused():
    f = lambda x: x * wl.grad(lambda y: x + y)(f64(1.0))  # noqa: E731
    assert wl.grad(f)(f64(2.0)).item() == 1.0
    g = lambda x: x * wl.jvp(lambda y: x + y, (f64(1.0),), (f64(1.0),))[1]  # noqa: E731
    assert wl.jvp(g, (f64(2.0),), (f64(1.0),))[1].item() == 1.0
    assert wl.grad(g)(f64(2.0)).item() == 1.0
    # d/dx [x * d/dy (x * y)] = d/dx x^2 = 2x
    h = lambda x: x * wl.grad(lambda y: x * y)(f64(3.0))  # noqa: E731
    assert wl.grad(h)(f64(2.0)).item() == 4.0
    assert wl.jvp(h, (f64(2.0),), (f64(1.0),))[1].item() == 4.0


def test_hessian_of_quadratic_form(rng):
    A = f64(rng.standard_normal((4, 4)))
    x = f64(rng.standard_normal(4))
    H = wl.hessian(lambda v: v @ A @ v)(x)
    np.testing.assert_allclose(H.numpy(), (A + A.T).numpy(), atol=1e-12)


def test_all_four_second_order_compositions_agree(rng):
    A = f64(rng.standard_normal((3, 3)))
    f = lambda v: (wl.tanh(A @ v) * v.sin()).sum() * (v ** 2).sum()  # noqa: E731
    x = f64(rng.standard_normal(3))
    Hs = [wl.hessian(f)(x), wl.jacrev(wl.jacrev(f))(x), wl.jacfwd(wl.jacfwd(f))(x),
          wl.jacrev(wl.jacfwd(f))(x)]
    for H in Hs[1:]:
        np.testing.assert_allclose(H.numpy(), Hs[0].numpy(), atol=1e-10)
    np.testing.assert_allclose(Hs[0].numpy(), Hs[0].numpy().T, atol=1e-10)


def test_jacfwd_equals_jacrev(rng):
    W = f64(rng.standard_normal((3, 4)))
    f = lambda x, b: wl.softmax(W @ x + b) * x[:3]  # noqa: E731
    x, b = f64(rng.standard_normal(4)), f64(rng.standard_normal(3))
    jr = wl.jacrev(f, argnums=(0, 1))(x, b)
    jf = wl.jacfwd(f, argnums=(0, 1))(x, b)
    assert jr[0].shape == (3, 4) and jr[1].shape == (3, 3)
    for a, c in zip(jr, jf):
        np.testing.assert_allclose(a.numpy(), c.numpy(), atol=1e-12)


def test_pytrees_argnums_and_aux():
    params = {"w": f64([[1.0, 2.0], [3.0, 4.0]]), "b": [f64([0.5, -0.5])]}
    x = f64([1.0, -1.0])

    def loss(p, inp):
        out = inp @ p["w"] + p["b"][0]
        return (out ** 2).sum(), {"out": out}

    g, aux = wl.grad(loss, has_aux=True)(params, x)
    assert set(g) == {"w", "b"} and isinstance(g["b"], list)
    out = aux["out"].numpy()
    np.testing.assert_allclose(g["w"].numpy(), np.outer(x.numpy(), 2 * out))
    np.testing.assert_allclose(g["b"][0].numpy(), 2 * out)
    (value, aux2), (gp, gx) = wl.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
    assert value.item() == pytest.approx((out ** 2).sum())
    np.testing.assert_allclose(gx.numpy(), params["w"].numpy() @ (2 * out))
    assert not value.requires_grad and not gp["w"].requires_grad


def test_grad_accepts_numbers_and_rejects_bad_outputs():
    assert wl.grad(lambda x: x * x)(3.0).item() == pytest.approx(6.0)
    with pytest.raises(TypeError, match=r"scalar \(shape \(\)\), got shape \(2,\)"):
        wl.grad(lambda x: x * 2)(f64([1.0, 2.0]))
    with pytest.raises(TypeError, match="floating-point inputs"):
        wl.grad(lambda x: (x * 2.0).sum())(wl.tensor([1, 2]))
    with pytest.raises(ValueError, match="argnums"):
        wl.grad(lambda x: x, argnums=3)(f64(1.0))


def test_vjp_and_jvp_with_multiple_outputs():
    def f(x, y):
        return x * y, (x + y).sum()

    x, y = f64([1.0, 2.0]), f64([3.0, 4.0])
    (a, s), pullback = wl.vjp(f, x, y)
    gx, gy = pullback((f64([1.0, 1.0]), f64(2.0)))
    np.testing.assert_allclose(gx.numpy(), [5.0, 6.0])
    np.testing.assert_allclose(gy.numpy(), [3.0, 4.0])
    gx2, _ = pullback((f64([0.0, 1.0]), f64(0.0)))            # callable again
    np.testing.assert_allclose(gx2.numpy(), [0.0, 4.0])
    (a, s), (ta, ts) = wl.jvp(f, (x, y), (f64([1.0, 0.0]), f64([0.0, 1.0])))
    np.testing.assert_allclose(ta.numpy(), [3.0, 2.0])
    assert ts.item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="tangent of shape"):
        wl.jvp(f, (x, y), (f64([1.0]), y))


def test_jvp_of_function_ignoring_input_gives_zero_tangent():
    c = f64([1.0, 2.0])
    out, t = wl.jvp(lambda x: c * 2, (f64(1.0),), (f64(1.0),))
    np.testing.assert_array_equal(t.numpy(), [0.0, 0.0])
    g = wl.grad(lambda x: (c * 2).sum() + 0 * x)(f64(1.0))
    assert g.item() == 0.0
    assert wl.grad(lambda x, y: (x * 2).sum(), argnums=1)(f64([1.0]), f64([5.0])).tolist() == [0.0]


def test_checkpoint_same_gradients_fewer_saved_bytes(rng):
    w = [f64(rng.standard_normal((32, 32)) / 6) for _ in range(6)]

    def block(h, w1, w2):
        return wl.tanh(wl.tanh(h @ w1) @ w2)

    def net(x, ws, ckpt):
        h = x
        blk = wl.checkpoint(block) if ckpt else block
        for i in range(0, len(ws), 2):
            h = blk(h, ws[i], ws[i + 1])
        return (h ** 2).sum()

    x = f64(rng.standard_normal((64, 32)))
    g_plain = wl.grad(net, argnums=1)(x, w, False)
    g_ckpt = wl.grad(net, argnums=1)(x, w, True)
    for a, b in zip(g_plain, g_ckpt):
        # the checkpoint recomputes the block's operations in the same order: identical
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)
    ws = [t.detach().requires_grad_() for t in w]
    plain_bytes = wl.autograd.saved_bytes(net(x, ws, False))
    ckpt_bytes = wl.autograd.saved_bytes(net(x, ws, True))
    assert ckpt_bytes < 0.6 * plain_bytes
    # second order and forward mode through a checkpoint
    f = lambda v: net(v, w, True)  # noqa: E731
    v = x[:2]
    hv = wl.jvp(wl.grad(f), (v,), (wl.ones_like(v),))[1]
    hv_ref = wl.jvp(wl.grad(lambda u: net(u, w, False)), (v,), (wl.ones_like(v),))[1]
    # second order through a recomputed block, summed in another order: a few ulps
    np.testing.assert_allclose(hv.numpy(), hv_ref.numpy(), rtol=1e-10)
    gg = wl.grad(lambda u: (wl.grad(f)(u) ** 2).sum())(v)
    gg_ref = wl.grad(lambda u: (wl.grad(lambda z: net(z, w, False))(u) ** 2).sum())(v)
    np.testing.assert_allclose(gg.numpy(), gg_ref.numpy(), rtol=1e-10)


def test_checkpoint_replays_random_numbers():
    def noisy(x):
        return x * wl.random.bernoulli(0.5, x.shape, dtype=wl.float64)

    x = wl.ones(200, dtype=wl.float64, requires_grad=True)
    y = wl.checkpoint(noisy)(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())


def _make_clipped_exp():
    @wl.custom_vjp
    def f(x):
        return wl.exp(x)

    def fwd(x):
        y = wl.exp(x)
        return y, (y,)

    def bwd(res, g):
        (y,) = res
        return (g * y,)

    f.defvjp(fwd, bwd)
    return f


def test_custom_vjp_first_and_higher_order():
    f = _make_clipped_exp()
    x = f64([0.3, -0.2])
    np.testing.assert_allclose(f(x).numpy(), np.exp(x.numpy()))
    g = wl.grad(lambda v: f(v).sum())(x)
    np.testing.assert_allclose(g.numpy(), np.exp(x.numpy()))
    gg = wl.grad(lambda v: wl.grad(lambda u: f(u).sum())(v).sum())(x)
    np.testing.assert_allclose(gg.numpy(), np.exp(x.numpy()))
    h = wl.hessian(lambda v: (f(v) * v).sum(), )
    with pytest.raises(TypeError, match="forward-mode"):
        h(x)
    H = wl.jacrev(wl.jacrev(lambda v: (f(v) * v).sum()))(x)
    np.testing.assert_allclose(np.diag(H.numpy()), np.exp(x.numpy()) * (x.numpy() + 2))
    t = wl.tensor([1.0, 2.0], requires_grad=True)
    f(t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), np.exp([1.0, 2.0]), rtol=1e-6)


def test_custom_vjp_replaces_the_gradient():
    @wl.custom_vjp
    def clip_gradient(x):
        return x

    clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (wl.clip(g, -1.0, 1.0),))
    g = wl.grad(lambda x: (clip_gradient(x) * 10).sum())(f64([1.0, 2.0]))
    np.testing.assert_array_equal(g.numpy(), [1.0, 1.0])


def test_custom_vjp_validates_bwd():
    @wl.custom_vjp
    def f(x, y):
        return x * y

    f.defvjp(lambda x, y: (x * y, (x, y)), lambda res, g: (g,))
    with pytest.raises(TypeError, match="one cotangent per differentiable argument"):
        wl.grad(lambda x: f(x, f64(2.0)))(f64(1.0))


def test_custom_jvp_forward_reverse_and_second_order():
    @wl.custom_jvp
    def softplus(x):
        return wl.log1p(wl.exp(x))

    @softplus.defjvp
    def softplus_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), t * wl.sigmoid(x)

    x = f64([-1.0, 0.5, 2.0])
    s = 1 / (1 + np.exp(-x.numpy()))
    _, t = wl.jvp(softplus, (x,), (wl.ones_like(x),))
    np.testing.assert_allclose(t.numpy(), s)
    g = wl.grad(lambda v: softplus(v).sum())(x)
    np.testing.assert_allclose(g.numpy(), s)
    H = wl.hessian(lambda v: softplus(v).sum())(x)
    np.testing.assert_allclose(np.diag(H.numpy()), s * (1 - s))
    gg = wl.grad(lambda v: wl.grad(lambda u: softplus(u).sum())(v).sum())(x)
    np.testing.assert_allclose(gg.numpy(), s * (1 - s))
    wl.testing.check_grads(lambda v: softplus(v) * v, (x,), order=2)


def test_check_grads_detects_a_wrong_rule():
    @wl.custom_vjp
    def bad(x):
        return x * x

    bad.defvjp(lambda x: (x * x, x), lambda x, g: (g * x,))   # should be 2 g x
    with pytest.raises(AssertionError, match="rev"):
        wl.testing.check_grads(lambda v: bad(v), (f64([1.0, 2.0]),), modes="rev", order=1)

    @wl.custom_jvp
    def bad2(x):
        return wl.sin(x)

    bad2.defjvp(lambda p, t: (wl.sin(p[0]), t[0] * wl.sin(p[0])))
    with pytest.raises(AssertionError, match="fwd"):
        wl.testing.check_grads(bad2, (f64([0.4]),), modes="fwd", order=1)
    wl.testing.check_grads(lambda v: (v ** 3).sum(), (f64([1.0, 2.0]),), order=3)
