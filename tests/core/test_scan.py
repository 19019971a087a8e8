"""scan: one graph node for a whole loop, equal to the unrolled loop in values and in
every derivative, closing over parameters."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.core.engine import toposort

rng = np.random.default_rng(3)


def t(*shape, grad=False):
    return wl.tensor(rng.standard_normal(shape), requires_grad=grad)


def rnn_step(w, u):
    def step(h, x):
        h = wl.tanh(h @ w + x @ u)
        return h, (h * h).sum(-1)
    return step


def unrolled(step, init, xs, reverse=False):
    carry, ys = init, [None] * xs.shape[0]
    order = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    for i in order:
        carry, ys[i] = step(carry, xs[i])
    return carry, wl.stack(ys)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("every", [None, 1, 3])
def test_values_and_gradients_equal_the_unrolled_loop(reverse, every):
    w, u, h0, xs = t(4, 4, grad=True), t(3, 4, grad=True), t(2, 4, grad=True), t(7, 2, 3, grad=True)
    step = rnn_step(w, u)

    def loss(run):
        h, ys = run()
        return (h ** 2).sum() + (ys * wl.arange(7, dtype=wl.float64)[:, None]).sum()

    a = loss(lambda: wl.scan(step, h0, xs, reverse=reverse, checkpoint_every=every))
    a.backward()
    got = [p.grad.numpy().copy() for p in (w, u, h0, xs)]
    for p in (w, u, h0, xs):
        p.grad = None
    b = loss(lambda: unrolled(step, h0, xs, reverse))
    b.backward()
    # the same steps; 7 steps' gradient contributions summed in another order: ~1e-13 at |g| ~100
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    for g, p in zip(got, (w, u, h0, xs)):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_one_node_for_the_whole_loop():
    w, u, h0, xs = t(4, 4, grad=True), t(3, 4), t(2, 4), t(50, 2, 3)
    h, ys = wl.scan(rnn_step(w, u), h0, xs)
    assert len(toposort([h])) == 1
    assert len(toposort([unrolled(rnn_step(w, u), h0, xs)[0]])) > 50


def test_gradient_checks_both_modes_second_order():
    w, u = t(3, 3), t(2, 3)

    def f(w, h0, xs):
        h, ys = wl.scan(rnn_step(w, u), h0, xs)
        return h.sum() + ys.sum()

    wl.testing.check_grads(f, (w, t(3), t(4, 2)), order=2)


def test_transforms_through_scan_close_over_parameters():
    w, u, h0, xs = t(3, 3), t(2, 3), t(3), t(5, 2)

    def f(w):
        return wl.scan(rnn_step(w, u), h0, xs)[0].sum()

    def g(w):
        return unrolled(rnn_step(w, u), h0, xs)[0].sum()

    # 5 steps' contributions to w's gradient and tangent, summed in another order: a few ulps
    np.testing.assert_allclose(wl.grad(f)(w).numpy(), wl.grad(g)(w).numpy(), rtol=1e-10)
    np.testing.assert_allclose(wl.hessian(f)(w).numpy(), wl.hessian(g)(w).numpy(), rtol=1e-8)
    tw = t(3, 3)
    np.testing.assert_allclose(wl.jvp(f, (w,), (tw,))[1].numpy(), wl.jvp(g, (w,), (tw,))[1].numpy(),
                               rtol=1e-10)
    # a closed-over tensor computed from a parameter (not a leaf)
    p = t(3, 3, grad=True)
    wp = p * 2.0
    wl.scan(rnn_step(wp, u), h0, xs)[0].sum().backward()
    got = p.grad.numpy().copy()
    p.grad = None
    unrolled(rnn_step(p * 2.0, u), h0, xs)[0].sum().backward()
    np.testing.assert_allclose(got, p.grad.numpy(), rtol=1e-10)


def test_vmap_of_scan_equals_per_example_scans():
    w, u = t(3, 3), t(2, 3)
    h0s, xss = t(4, 3), t(4, 5, 2)
    batched = wl.vmap(lambda h0, xs: wl.scan(rnn_step(w, u), h0, xs)[1])(h0s, xss)
    for i in range(4):
        one = wl.scan(rnn_step(w, u), h0s[i], xss[i])[1]
        # batched and single products of 3 terms over 5 steps: ~1e-15; atol for outputs near zero
        np.testing.assert_allclose(batched[i].numpy(), one.numpy(), rtol=1e-12, atol=1e-13)


def test_pytree_carry_length_and_none_outputs():
    def step(c, _):
        a, b = c["a"], c["b"]
        return {"a": a + b, "b": a}, None

    out, ys = wl.scan(step, {"a": wl.tensor(1.0), "b": wl.tensor(0.0)}, None, length=10)
    assert ys is None
    assert out["a"].item() == 89.0                      # Fibonacci


def test_scan_errors():
    with pytest.raises(ValueError, match="length"):
        wl.scan(lambda c, x: (c, x), wl.tensor(0.0))
    with pytest.raises(TypeError, match="scan: f changed the carry"):
        wl.scan(lambda c, x: (c.reshape(1), x), wl.tensor(0.0, requires_grad=True), wl.ones(3))
    with pytest.raises(TypeError, match="pair"):
        wl.scan(lambda c, x: c, wl.tensor(0.0), wl.ones(3))
    with pytest.raises(ValueError, match="different leading lengths"):
        wl.scan(lambda c, x: (c, None), wl.tensor(0.0), (wl.ones(3), wl.ones(4)))


def test_integer_and_bool_inputs_at_second_order():
    w = t(3, 3)
    mask = wl.tensor(np.array([True, False, True, True]))

    def f(w, h0, xs):
        def step(h, inp):
            x, m = inp
            h_new = wl.tanh(h @ w + x)
            return wl.where(m, h_new, h), h
        return wl.scan(step, h0, (xs, mask))[0].sum()

    wl.testing.check_grads(f, (w, t(3), t(4, 3)), order=2)


def test_zero_steps_give_empty_stacks_shaped_like_one_step():
    """As lax.scan: no steps, the carry unchanged and each y stacked to (0, ...)."""
    w, u = t(3, 3, grad=True), t(2, 3)
    h0 = t(5, 3, grad=True)
    step = rnn_step(w, u)
    for grad_on in (True, False):
        with wl.set_grad_enabled(grad_on):
            h, ys = wl.scan(step, h0, wl.zeros((0, 5, 2), dtype=wl.float64))
        assert ys.shape == (0, 5) and ys.dtype == np.float64
        np.testing.assert_array_equal(h.numpy(), h0.numpy())
    assert w.grad is None

    def tree_step(c, x):
        return c + x["a"], {"h": c * 2.0, "n": (c * x["b"]).sum().astype(wl.float32), "none": None}

    xs = {"a": wl.zeros((0, 4), dtype=wl.float64), "b": wl.zeros((0, 4), dtype=wl.float64)}
    c, ys = wl.scan(tree_step, t(4), xs, reverse=True)
    assert set(ys) == {"h", "n", "none"} and ys["none"] is None
    assert ys["h"].shape == (0, 4) and ys["n"].shape == (0,) and ys["n"].dtype == np.float32
    _, ys = wl.scan(lambda c, _: (c + 1.0, c * 1.0), wl.zeros(2), None, length=0)
    assert ys.shape == (0, 2)
    _, ys = wl.scan(lambda c, x: (c, None), wl.zeros(2), wl.zeros((0, 2)))
    assert ys is None
    # the gradient of the (unchanged) carry still reaches init
    g = wl.grad(lambda h: wl.scan(step, h, wl.zeros((0, 5, 2), dtype=wl.float64))[0].sum())(h0)
    np.testing.assert_array_equal(g.numpy(), np.ones((5, 3)))
    # the placeholder step's values are never looked at, even where they are not finite
    with wl.detect_anomaly():
        _, ys = wl.scan(lambda c, x: (c, wl.log(x) / x), wl.zeros(3), wl.zeros((0, 3)))
    assert ys.shape == (0, 3)
    # under vmap and jvp the stack is shaped like one step too
    no_xs = wl.zeros((0, 5, 2), dtype=wl.float64)
    out = wl.vmap(lambda h, xs: wl.scan(step, h, xs)[1])(t(4, 5, 3), wl.stack([no_xs] * 4))
    assert out.shape == (4, 0, 5)
    _, tan = wl.jvp(lambda h: wl.scan(step, h, no_xs)[1], (h0,), (h0,))
    assert tan.shape == (0, 5)
