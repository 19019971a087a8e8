"""Tensor creation, dtypes, attributes, conversion, operators and randomness."""

import numpy as np
import pytest

import wonderland as wl


def test_dtypes_follow_the_rules():
    assert wl.tensor([1.0, 2.0]).dtype == wl.float32
    assert wl.tensor([1, 2]).dtype == wl.int64
    assert wl.tensor([True, False]).dtype == wl.bool
    assert wl.tensor(np.array([1.0, 2.0])).dtype == wl.float64        # keeps NumPy's float64
    assert wl.tensor(np.array([1, 2], dtype=np.int32)).dtype == wl.int32
    assert wl.tensor(2.5).shape == ()
    assert wl.tensor([1, 2], dtype=wl.float64).dtype == wl.float64
    assert wl.Tensor([[1.0]]).shape == (1, 1)
    assert wl.tensor([wl.zeros(2), wl.ones(2)]).tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_python_scalars_adopt_the_tensor_dtype():
    x = wl.tensor([1.0, 2.0])
    assert (x * 2.5).dtype == wl.float32
    assert (2 + x).dtype == wl.float32
    assert (x * np.float64(3.0)).dtype == wl.float32
    assert (wl.tensor([1, 2]) * 2).dtype == wl.int64
    assert (wl.tensor([1, 2]) * 0.5).dtype == wl.float32
    assert (wl.tensor([1, 2]) / wl.tensor([2, 4])).dtype == wl.float32
    assert (x + wl.tensor(np.array([1.0]))).dtype == wl.float64       # tensor-tensor promotes


def test_default_dtype_can_change():
    try:
        wl.set_default_dtype(wl.float64)
        assert wl.tensor([1.0]).dtype == wl.float64
        assert wl.zeros(2).dtype == wl.float64
    finally:
        wl.set_default_dtype(wl.float32)
    with pytest.raises(TypeError, match="floating"):
        wl.set_default_dtype(wl.int32)


def test_attributes_and_conversion():
    x = wl.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert x.device == "cpu" and x.requires_grad and x.grad is None and x.is_leaf
    arr = x.numpy()
    assert isinstance(arr, np.ndarray) and not arr.flags.writeable
    assert wl.tensor(3.5).item() == 3.5
    assert float(wl.tensor([2.0])) == 2.0
    assert x.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert np.asarray(x).shape == (2, 3)
    assert [r.tolist() for r in x] == x.tolist()
    y = x.detach()
    assert not y.requires_grad and y.is_leaf
    assert x.astype(wl.float64).dtype == wl.float64


def test_repr_is_useful():
    assert repr(wl.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "requires_grad=True" in repr(wl.tensor([1.0], requires_grad=True))
    assert "grad_fn=multiply" in repr(wl.tensor([1.0], requires_grad=True) * 2)
    assert "dtype=float64" in repr(wl.tensor(np.ones(2)))
    assert "shape=(0, 3)" in repr(wl.zeros((0, 3)))


def test_creation_functions():
    assert wl.zeros(2, 3).shape == (2, 3) and wl.zeros((2, 3)).tolist() == [[0.0] * 3] * 2
    assert wl.ones(3).dtype == wl.float32
    assert wl.full((2,), 7).dtype == wl.int64 and wl.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert wl.arange(5).tolist() == [0, 1, 2, 3, 4] and wl.arange(5).dtype == wl.int64
    assert wl.arange(0.0, 1.0, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75]
    assert wl.linspace(0, 1, 5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert wl.eye(3).numpy().trace() == 3 and wl.eye(2, 3, k=1).shape == (2, 3)
    x = wl.tensor([[1.0, 2.0]], dtype=wl.float64)
    assert wl.zeros_like(x).dtype == wl.float64 and wl.ones_like(x).shape == (1, 2)
    assert wl.full_like(x, 3).tolist() == [[3.0, 3.0]]
    assert wl.zeros(2, requires_grad=True).requires_grad


def test_operators_match_numpy(rng):
    a = rng.standard_normal((3, 4))
    b = rng.uniform(0.5, 2, (4,))
    x, y = wl.tensor(a), wl.tensor(b)
    np.testing.assert_allclose((x + y).numpy(), a + b)
    np.testing.assert_allclose((x - 1).numpy(), a - 1)
    np.testing.assert_allclose((1 - x).numpy(), 1 - a)
    np.testing.assert_allclose((2 / y).numpy(), 2 / b)
    np.testing.assert_allclose((x ** 2).numpy(), a ** 2)
    np.testing.assert_allclose((2 ** y).numpy(), 2 ** b)
    np.testing.assert_allclose((-x).numpy(), -a)
    np.testing.assert_allclose(abs(x).numpy(), np.abs(a))
    np.testing.assert_allclose((x @ y).numpy(), a @ b)
    np.testing.assert_allclose((a @ y).numpy(), a @ b)           # ndarray @ Tensor defers
    np.testing.assert_allclose((a * y).numpy(), a * b)
    assert isinstance(a * y, wl.Tensor)
    np.testing.assert_array_equal((x > 0).numpy(), a > 0)
    np.testing.assert_array_equal(((x > 0) & (x < 1)).numpy(), (a > 0) & (a < 1))
    np.testing.assert_array_equal((~(x > 0)).numpy(), ~(a > 0))
    np.testing.assert_array_equal((wl.tensor([7, 8]) // 3).numpy(), [2, 2])
    np.testing.assert_array_equal((wl.tensor([7, 8]) % 3).numpy(), [1, 2])
    np.testing.assert_allclose(x.T.numpy(), a.T)
    np.testing.assert_allclose(x[1:, ::2].numpy(), a[1:, ::2])


def test_reductions_match_numpy(rng):
    a = rng.standard_normal((3, 4, 5))
    x = wl.tensor(a)
    for name in ("sum", "mean", "prod", "max", "min", "var", "std"):
        for axis in (None, 0, -1, (0, 2)):
            # ≤ 60 N(0, 1) terms in another order: ≤ 60 × 1.1e-16 × 60 ≈ 4e-13 absolute at worst
            np.testing.assert_allclose(getattr(x, name)(axis=axis).numpy(),
                                       getattr(np, name)(a, axis=axis), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.sum(axis=1, keepdims=True).numpy(), a.sum(1, keepdims=True))
    np.testing.assert_allclose(x.cumsum(axis=2).numpy(), np.cumsum(a, 2))
    np.testing.assert_array_equal(x.argmax(axis=1).numpy(), a.argmax(1))
    assert wl.mean(wl.tensor([1, 2])).dtype == wl.float32


def test_tensors_are_immutable():
    x = wl.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="immutable"):
        x[0] = 3.0


def test_no_grad_and_detach():
    w = wl.tensor([1.0, 2.0], requires_grad=True)
    with wl.no_grad():
        y = w * 2
    assert not y.requires_grad
    assert wl.is_grad_enabled()

    @wl.no_grad()
    def f(t):
        return t * 3

    assert not f(w).requires_grad
    with wl.no_grad():
        with wl.enable_grad():
            assert (w * 2).requires_grad
    with wl.set_grad_enabled(False):
        assert not (w * 2).requires_grad


def test_requires_grad_only_for_floats():
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        wl.tensor([1, 2], requires_grad=True)
    x = wl.tensor([1.0]).requires_grad_()
    assert x.requires_grad


def test_random_is_reproducible():
    wl.random.seed(3)
    a = wl.random.normal((2, 3))
    u = wl.random.uniform((4,), low=-1, high=1)
    wl.random.seed(3)
    b = wl.random.normal((2, 3))
    v = wl.random.uniform((4,), low=-1, high=1)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(u.numpy(), v.numpy())
    assert a.dtype == wl.float32 and (u.numpy() >= -1).all() and (u.numpy() < 1).all()
    g1, g2 = wl.random.Generator(5), wl.random.Generator(5)
    np.testing.assert_array_equal(g1.randint(0, 10, (5,)).numpy(), g2.randint(0, 10, (5,)).numpy())
    np.testing.assert_array_equal(np.sort(g1.permutation(6).numpy()), np.arange(6))
    state = g1.get_state()
    first = g1.normal(3).numpy()
    g1.set_state(state)
    np.testing.assert_array_equal(g1.normal(3).numpy(), first)
    bern = wl.random.bernoulli(wl.full((2000,), 0.3), generator=g2)
    assert set(np.unique(bern.numpy())) <= {0.0, 1.0} and abs(bern.numpy().mean() - 0.3) < 0.05
    n = wl.random.normal((20000,), mean=2.0, std=0.5, dtype=wl.float64)
    assert abs(n.numpy().mean() - 2.0) < 0.02 and abs(n.numpy().std() - 0.5) < 0.02


def test_pytree_roundtrip():
    from wonderland.core.pytree import flatten, unflatten
    tree = {"a": [1, (2, 3)], "b": None, "c": {"d": 4}}
    leaves, td = flatten(tree)
    assert leaves == [1, 2, 3, 4]
    assert unflatten(td, [x * 10 for x in leaves]) == {"a": [10, (20, 30)], "b": None, "c": {"d": 40}}
    assert wl.tree_map(lambda x: x + 1, [1, {"k": 2}]) == [2, {"k": 3}]
