"""Conventions shared with JAX and PyTorch that user code relies on: derivatives at
kinks, dtype promotion, pytree ordering, closures in checkpoints, custom rules on
pytrees, keyword arguments, grad-mode switches."""

from collections import OrderedDict

import numpy as np
import pytest

import wonderland as wl
from wonderland.nn import functional as F
from conftest import f64


def test_checkpoint_differentiates_closed_over_tensors():
    w = wl.tensor([2.0, 3.0], requires_grad=True)
    x = wl.tensor([1.0, 1.0], requires_grad=True)
    wl.checkpoint(lambda a: wl.sin(a * w))(x).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), np.cos([2.0, 3.0]), rtol=1e-6)
    lin = wl.nn.Linear(2, 2)
    inp = wl.tensor([[1.0, 2.0]])
    wl.checkpoint(lambda a: lin(a))(inp).sum().backward()
    np.testing.assert_allclose(lin.weight.grad.numpy(), [[1.0, 1.0], [2.0, 2.0]])
    g = wl.grad(lambda ww: wl.checkpoint(lambda a: wl.sin(a * ww))(x.detach()).sum())(w.detach())
    np.testing.assert_allclose(g.numpy(), np.cos([2.0, 3.0]), rtol=1e-6)
    _, t = wl.jvp(lambda ww: wl.checkpoint(lambda a: a * ww)(x.detach()), (w.detach(),), (wl.ones(2),))
    np.testing.assert_allclose(t.numpy(), [1.0, 1.0])
    out = wl.checkpoint(lambda a, scale=1.0: a * scale, static_argnums=())(x, scale=3.0)
    np.testing.assert_allclose(out.numpy(), [3.0, 3.0])


def test_derivatives_at_kinks_follow_pytorch():
    zero = f64([0.0])
    assert wl.grad(lambda v: F.softplus(v).sum())(zero).item() == pytest.approx(0.5)
    assert wl.grad(lambda v: F.log_sigmoid(v).sum())(zero).item() == pytest.approx(0.5)
    g = wl.grad(lambda v: F.binary_cross_entropy_with_logits(v, f64([1.0, 0.0])))(f64([0.0, 0.0]))
    np.testing.assert_allclose(g.numpy(), [-0.25, 0.25])
    assert wl.grad(lambda v: F.elu(v, 0.7).sum())(zero).item() == pytest.approx(0.7)
    assert wl.grad(lambda v: wl.distributions.Bernoulli(probs=v).log_prob(1.0).sum())(f64([0.5])).item() \
        == pytest.approx(2.0)
    g = wl.grad(lambda a, b: (a ** b).sum(), argnums=(0, 1))(f64([0.0, 2.0]), f64([0.0, 3.0]))
    np.testing.assert_allclose(g[0].numpy(), [0.0, 12.0])
    np.testing.assert_allclose(wl.grad(lambda v: (v % 3.0).sum())(f64([4.0, 5.5])).numpy(), [1.0, 1.0])


def test_embedding_padding_row_keeps_its_value_but_gets_no_gradient():
    w = wl.nn.Parameter(np.arange(6.0).reshape(3, 2))
    out = F.embedding(wl.tensor([0, 1, 0]), w, padding_idx=0)
    np.testing.assert_array_equal(out.numpy(), [[0, 1], [2, 3], [0, 1]])
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[0, 0], [1, 1], [0, 0]])


def test_dtype_promotion_keeps_float32():
    f32 = wl.tensor([1.0, 2.0])
    assert (wl.tensor([1, 2]) * f32).dtype == wl.float32
    assert (f32 * wl.tensor(2)).dtype == wl.float32
    assert (f32 + wl.tensor(np.float64(1.0))).dtype == wl.float32          # 0-d does not widen
    assert (f32 + wl.tensor(np.ones(2))).dtype == wl.float64               # dimensioned does
    assert wl.stack([wl.tensor([1, 2]), f32]).dtype == wl.float32
    assert wl.where(wl.tensor([True, False]), wl.tensor([1, 2]), f32).dtype == wl.float32


def test_take_along_axis_with_broadcast_input_accumulates():
    g = wl.grad(lambda v: wl.take_along_axis(v, wl.tensor([[0], [0], [0]]), axis=1).sum())(f64([[1.0, 2, 3, 4]]))
    np.testing.assert_array_equal(g.numpy(), [[3.0, 0, 0, 0]])


def test_var_with_too_large_ddof_is_nan():
    assert np.isnan(wl.var(wl.tensor([1.0]), ddof=1).item())


def test_dict_pytrees_are_ordered_by_key():
    x = f64([1.0, 2.0])
    _, pullback = wl.vjp(lambda p: {"a": p * 2, "b": p * 3}, x)
    (g,) = pullback({"b": wl.ones(2, dtype=wl.float64), "a": wl.ones(2, dtype=wl.float64)})
    np.testing.assert_allclose(g.numpy(), [5.0, 5.0])
    od = wl.grad(lambda p: (p["z"] * p["a"]).sum())(OrderedDict(z=x, a=x))
    assert isinstance(od, OrderedDict) and list(od) == ["z", "a"]


def test_custom_rules_accept_pytrees_and_nondiff_arguments():
    @wl.custom_vjp
    def k(p):
        return p["a"] * p["b"]

    k.defvjp(lambda p: (k(p), None), lambda res, g: ({"a": g * 100, "b": (g * 100).sum()},))
    got = wl.grad(lambda p: k(p).sum())({"a": f64([1.0, 2.0]), "b": f64(3.0)})
    np.testing.assert_allclose(got["a"].numpy(), [100.0, 100.0])
    assert got["b"].item() == 200.0

    scale_vjp = wl.custom_vjp(lambda n, x: x * n, nondiff_argnums=(0,))
    scale_vjp.defvjp(lambda n, x: (x * n, None), lambda n, res, g: (g * n * 10,))
    np.testing.assert_allclose(wl.grad(lambda x: scale_vjp(2.0, x).sum())(f64([1.0])).numpy(), [20.0])

    cj = wl.custom_jvp(lambda n, x: x * n, nondiff_argnums=(0,))
    cj.defjvp(lambda n, primals, tangents: (primals[0] * n, tangents[0] * n * 10))
    assert wl.jvp(lambda x: cj(3.0, x), (f64(1.0),), (f64(1.0),))[1].item() == 30.0
    assert wl.grad(lambda x: cj(3.0, x))(f64(1.0)).item() == 30.0


def test_transforms_pass_keyword_arguments_through():
    f = lambda x, scale=1.0: (x * scale).sum()  # noqa: E731
    np.testing.assert_allclose(wl.grad(f)(f64([1.0, 2.0]), scale=3.0).numpy(), [3.0, 3.0])
    assert wl.value_and_grad(f)(f64([1.0]), scale=2.0)[0].item() == 2.0
    np.testing.assert_allclose(wl.jacfwd(lambda x, s: x * s)(f64([1.0, 2.0]), s=2.0).numpy(), 2 * np.eye(2))


def test_grad_mode_switches():
    x = wl.tensor([1.0], requires_grad=True)
    wl.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    wl.set_grad_enabled(True)
    assert (x * 2).requires_grad
    with wl.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert wl.is_grad_enabled()

    @wl.no_grad
    def f(t):
        return t * 2

    assert not f(x).requires_grad


def test_categorical_zero_probability_matches_pytorch_clamp():
    c = wl.distributions.Categorical(probs=f64([0.1, 0.0, 0.9]))
    assert c.log_prob(wl.tensor(1)).item() == pytest.approx(np.log(np.finfo(np.float64).eps))
    p = wl.distributions.Categorical(probs=f64([0.5, 0.5, 0.0]))
    assert np.isinf(wl.distributions.kl_divergence(p, c).item())


def test_mvn_broadcasts_and_has_event_shape():
    D = wl.distributions
    d = D.MultivariateNormal(wl.zeros((3, 2), dtype=wl.float64), wl.eye(2, dtype=wl.float64))
    assert d.batch_shape == (3,) and d.event_shape == (2,)
    assert d.variance.shape == (3, 2) and d.entropy().shape == (3,)
    assert d.covariance_matrix.shape == (3, 2, 2)
    assert D.Normal(0.0, 1.0).event_shape == ()


def test_clip_differentiates_tensor_bounds():
    x = f64([0.0, 1.0, 3.0])
    g = wl.grad(lambda lo: wl.clip(x, lo, 2.0).sum())(f64(0.5))
    assert g.item() == 1.0


def test_tensor_copies_numpy_input():
    arr = np.ones(3, dtype=np.float32)
    p = wl.tensor(arr, requires_grad=True)
    p.grad = wl.ones(3)
    wl.optim.SGD([p], lr=0.5).step()
    np.testing.assert_array_equal(arr, 1.0)
    assert np.shares_memory(wl.as_tensor(arr).data, arr)
