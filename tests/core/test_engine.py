"""PyTorch-style reverse mode: backward, .grad accumulation, retain/create graph."""

import numpy as np
import pytest

import wonderland as wl


def test_backward_accumulates_into_leaves():
    x = wl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = wl.tensor([0.5, -1.0, 2.0], requires_grad=True)
    (x * w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.5, -1.0, 2.0])
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.5, 3.0, 8.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 3.0])


def test_shared_subexpressions_sum_their_cotangents():
    x = wl.tensor(2.0, requires_grad=True)
    y = x * x
    z = y * y + y            # x^4 + x^2
    z.backward()
    assert x.grad.item() == pytest.approx(4 * 8 + 2 * 2)


def test_backward_with_explicit_cotangent():
    x = wl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.backward(wl.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 30.0])


def test_non_scalar_backward_needs_grad():
    x = wl.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"one-element output; got shape \(2,\)"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="grad has shape"):
        (x * 2).backward(wl.tensor([1.0, 2.0, 3.0]))


def test_second_backward_through_freed_graph_is_an_error():
    x = wl.tensor(3.0, requires_grad=True)
    y = (x * x).exp() * 0 + x * x
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = wl.tensor(3.0, requires_grad=True)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == pytest.approx(12.0)


def test_backward_on_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        wl.tensor([1.0]).sum().backward()


def test_create_graph_gives_differentiable_gradients():
    x = wl.tensor(1.5, requires_grad=True)
    y = x ** 3
    y.backward(create_graph=True)
    g = x.grad                      # 3x^2, recorded
    assert g.requires_grad
    x.grad = None
    g.backward()
    assert x.grad.item() == pytest.approx(6 * 1.5)


def test_integer_tensors_take_no_gradient_but_mix_with_floats():
    idx = wl.tensor([0, 1])
    x = wl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * idx).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 1.0])


def test_saved_tensors_are_released_after_backward():
    import weakref

    x = wl.tensor(np.ones((100, 100)), requires_grad=True)
    h = x.exp()
    ref = weakref.ref(h.data)                   # the graph keeps exp's output array
    y = (h * 2).sum()
    del h
    assert ref() is not None and wl.autograd.saved_bytes(y) >= 80000  # held by the graph
    y.backward()
    assert ref() is None                                              # released by the sweep
    h = x.exp()
    ref = weakref.ref(h.data)
    y = (h * 2).sum()
    del h
    y.backward(retain_graph=True)
    assert ref() is not None


def test_autograd_grad():
    x = wl.tensor([1.0, 2.0], requires_grad=True)
    w = wl.tensor([3.0, 4.0], requires_grad=True)
    y = (x * x * w).sum()
    gx, = wl.autograd.grad(y, x, create_graph=True)
    np.testing.assert_allclose(gx.numpy(), [6.0, 16.0])
    assert x.grad is None
    ggw, = wl.autograd.grad(gx.sum(), w)          # d/dw sum(2 x w) = 2x
    np.testing.assert_allclose(ggw.numpy(), [2.0, 4.0])
    z = wl.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="not used"):
        wl.autograd.grad((x * 2).sum(), z)
    assert wl.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)[1] is None


def test_gradient_penalty_through_parameters():
    """A gradient of a function of parameters, itself differentiated w.r.t. them."""
    w = wl.tensor([[0.5, -1.0], [2.0, 0.3]], requires_grad=True, dtype=wl.float64)
    x = wl.tensor([1.0, -2.0], dtype=wl.float64)
    gx = wl.grad(lambda inp: wl.tanh(inp @ w).sum())(x)
    penalty = (gx ** 2).sum()
    penalty.backward()

    def penalty_of(wv):
        g = wl.grad(lambda inp: wl.tanh(inp @ wv).sum())(x)
        return (g ** 2).sum()

    expected = wl.grad(penalty_of)(w.detach())
    # the same rules through .backward and through wl.grad on 2×2 products: a few ulps at most
    np.testing.assert_allclose(w.grad.numpy(), expected.numpy(), rtol=1e-10)


def test_deep_graph_does_not_hit_the_recursion_limit():
    x = wl.tensor(1.0, dtype=wl.float64, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 5000)
