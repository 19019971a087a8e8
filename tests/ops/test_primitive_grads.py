"""Every primitive: reverse and forward mode against central finite differences in
float64, JVP against VJP, second order for smooth ops; broadcasting, size-1 and size-0
axes, negative axes and non-contiguous inputs."""

import numpy as np
import pytest

import wonderland as wl
from conftest import check_primitive, f64

R = np.random.default_rng(7)


def rand(*shape, low=-1.5, high=1.5):
    return f64(R.uniform(low, high, shape))


def pos(*shape):
    return f64(R.uniform(0.5, 2.0, shape))


def noncontig(*shape):
    """A float64 tensor whose data is a strided, non-contiguous view."""
    base = R.uniform(-1.5, 1.5, tuple(2 * s for s in shape))
    view = base[tuple(slice(None, None, 2) for _ in shape)]
    assert not view.flags.c_contiguous
    return wl.tensor(view)


def away_from(*shape, kinks=(0.0,), gap=0.2):
    a = R.uniform(-1.5, 1.5, shape)
    for k in kinks:
        close = np.abs(a - k) < gap
        a[close] = k + gap * np.sign(a[close] - k + 1e-12) * 2
    return f64(a)


UNARY = [
    ("negative", wl.negative, rand(3, 4)),
    ("exp", wl.exp, rand(3, 4)),
    ("log", wl.log, pos(3, 4)),
    ("log1p", wl.log1p, pos(3, 4)),
    ("expm1", wl.expm1, rand(3, 4)),
    ("sqrt", wl.sqrt, pos(3, 4)),
    ("abs", wl.abs, away_from(3, 4)),
    ("sin", wl.sin, rand(3, 4)),
    ("cos", wl.cos, rand(3, 4)),
    ("tan", wl.tan, rand(3, 4, low=-1.0, high=1.0)),
    ("tanh", wl.tanh, rand(3, 4)),
    ("sigmoid", wl.sigmoid, rand(3, 4)),
    ("erf", wl.erf, rand(3, 4)),
    ("relu", wl.relu, away_from(3, 4)),
    ("square", wl.square, rand(3, 4)),
    ("exp_noncontig", wl.exp, noncontig(3, 4)),
    ("tanh_size0", wl.tanh, rand(0, 3)),
    ("log_size1", wl.log, pos(1, 1)),
]


@pytest.mark.parametrize("name,fn,x", UNARY, ids=[u[0] for u in UNARY])
def test_unary(name, fn, x):
    order = 1 if name.startswith(("abs", "relu")) else 2
    check_primitive(fn, x, order=order)


BINARY = [
    ("add", wl.add, rand(3, 4), rand(3, 4)),
    ("add_broadcast", wl.add, rand(3, 1), rand(4)),
    ("subtract_broadcast", wl.subtract, rand(2, 1, 3), rand(4, 1)),
    ("multiply", wl.multiply, rand(3, 4), rand(3, 4)),
    ("multiply_broadcast", wl.multiply, rand(1, 4), rand(3, 1)),
    ("multiply_scalar_tensor", wl.multiply, rand(), rand(2, 3)),
    ("divide", wl.divide, rand(3, 4), pos(3, 4)),
    ("divide_broadcast", wl.divide, rand(2, 3), pos(3)),
    ("power", wl.power, pos(3, 4), rand(3, 4)),
    ("power_broadcast", wl.power, pos(2, 3), rand(3)),
    ("maximum", wl.maximum, rand(3, 4), rand(3, 4)),
    ("minimum_broadcast", wl.minimum, rand(3, 4), rand(4)),
    ("add_noncontig", wl.add, noncontig(3, 4), noncontig(3, 4)),
    ("multiply_size0", wl.multiply, rand(0, 4), rand(4)),
]


@pytest.mark.parametrize("name,fn,x,y", BINARY, ids=[b[0] for b in BINARY])
def test_binary(name, fn, x, y):
    order = 1 if name.startswith(("maximum", "minimum")) else 2
    check_primitive(fn, x, y, order=order)


def test_remainder_gradients_away_from_jumps():
    x = f64([[0.3, 1.7, -1.3], [2.6, -0.8, 0.45]])
    y = f64([[0.7, 0.4, 0.5], [-1.1, 0.7, -0.2]])
    check_primitive(wl.remainder, x, y)


def test_remainder_divisor_gradient_uses_the_forward_quotient():
    # 0.25 / 0.001 rounds to 250.0, yet 0.001 is stored slightly above 1e-3, so the
    # floor-division quotient is 249 and 0.25 % 0.001 is close to 0.001, not 0
    x = f64([0.25, 1.0, 0.7, -0.3])
    y = f64([0.001, 0.1, 0.1, 0.1])
    q = np.floor_divide(x.numpy(), y.numpy())
    np.testing.assert_allclose(wl.remainder(x, y).numpy(), x.numpy() - q * y.numpy(), atol=1e-12)
    gx, gy = wl.grad(lambda a, b: wl.remainder(a, b).sum(), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx.numpy(), np.ones(4))
    np.testing.assert_array_equal(gy.numpy(), -q)
    assert gy.numpy()[0] == -249.0
    _, t = wl.jvp(lambda b: wl.remainder(x, b), (y,), (f64(np.ones(4)),))
    np.testing.assert_array_equal(t.numpy(), -q)


@pytest.mark.parametrize("p", [2, 3, 0.5, -1.5, 1, 0])
def test_pow_scalar(p):
    check_primitive(lambda x: x ** p, pos(2, 3))


def test_power_exponent_at_zero_base_has_finite_gradient():
    x = f64([0.0, 1.0, 2.0])
    y = f64([2.0, 2.0, 2.0])
    gx, gy = wl.grad(lambda a, b: (a ** b).sum(), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx.numpy(), [0.0, 2.0, 4.0])
    np.testing.assert_allclose(gy.numpy(), [0.0, 0.0, 4 * np.log(2.0)])


def test_clip_and_where():
    x = away_from(3, 4, kinks=(-0.5, 0.7))
    check_primitive(lambda a: wl.clip(a, -0.5, 0.7), x, order=1)
    check_primitive(lambda a: wl.clip(a, min=-0.5), x, order=1)
    cond = wl.tensor(R.uniform(size=(3, 4)) > 0.5)
    check_primitive(lambda a, b: wl.where(cond, a, b), rand(3, 4), rand(4))
    check_primitive(lambda a: wl.where(cond, a * a, 2.0), rand(3, 4))


def test_where_does_not_leak_nan_from_unchosen_branch():
    x = f64([-1.0, 4.0])
    g = wl.grad(lambda a: wl.where(a > 0, wl.sqrt(wl.where(a > 0, a, 1.0)), 0.0).sum())(x)
    np.testing.assert_allclose(g.numpy(), [0.0, 0.25])


AXES = [None, 0, 1, -1, (0, 2), (-1, -3)]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_sum_mean(axis, keepdims):
    x = rand(2, 3, 4)
    check_primitive(lambda a: wl.sum(a, axis=axis, keepdims=keepdims), x)
    check_primitive(lambda a: wl.mean(a, axis=axis, keepdims=keepdims), x)


@pytest.mark.parametrize("axis", [None, 1, -1, (0, 1)])
def test_prod(axis):
    check_primitive(lambda a: wl.prod(a, axis=axis), rand(3, 4))


def test_prod_with_zeros_is_exact():
    x = f64([[0.0, 2.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]])
    g = wl.grad(lambda a: wl.prod(a, axis=1).sum())(x)
    np.testing.assert_allclose(g.numpy(), [[6, 0, 0], [0, 0, 0], [8, 4, 2]])
    check_primitive(lambda a: wl.prod(a, axis=1), x, order=1)


@pytest.mark.parametrize("fn", [wl.max, wl.min])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
def test_max_min(fn, axis):
    x = f64(R.permutation(24).reshape(2, 3, 4) * 0.1)   # distinct values: no ties
    check_primitive(lambda a: fn(a, axis=axis), x)


def test_max_ties_split_gradient_equally():
    x = f64([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0]])
    g = wl.grad(lambda a: wl.max(a, axis=1).sum())(x)
    np.testing.assert_allclose(g.numpy(), [[0, 0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0]])
    g = wl.grad(lambda a: wl.maximum(a, 3.0).sum())(f64([1.0, 3.0, 4.0]))
    np.testing.assert_allclose(g.numpy(), [0.0, 0.5, 1.0])
    _, t = wl.jvp(lambda a: wl.max(a), (f64([2.0, 2.0]),), (f64([1.0, 3.0]),))
    assert t.item() == pytest.approx(2.0)


@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("ddof", [0, 1])
def test_var_std(axis, ddof):
    x = rand(3, 4)
    check_primitive(lambda a: wl.var(a, axis=axis, ddof=ddof), x)
    check_primitive(lambda a: wl.std(a, axis=axis, ddof=ddof, keepdims=True), x)
    np.testing.assert_allclose(wl.var(x, axis=axis, ddof=ddof).numpy(),
                               np.var(x.numpy(), axis=axis, ddof=ddof))


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
def test_logsumexp(axis):
    check_primitive(lambda a: wl.logsumexp(a, axis=axis), rand(3, 4))
    check_primitive(lambda a: wl.logsumexp(a, axis=axis, keepdims=True), rand(2, 3))


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_log_softmax(axis):
    check_primitive(lambda a: wl.softmax(a, axis=axis), rand(3, 4))
    check_primitive(lambda a: wl.log_softmax(a, axis=axis), rand(3, 4))


@pytest.mark.parametrize("axis", [-1, 0, (0, 1)])
def test_logsumexp_over_an_empty_axis_is_minus_infinity(axis):
    x = rand(3, 0)
    out = wl.logsumexp(x, axis=axis)
    want = np.full(np.sum(np.ones((3, 0)), axis=axis).shape, -np.inf)
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(wl.logsumexp(x, axis=axis, keepdims=True).numpy(),
                                  np.full(np.sum(np.ones((3, 0)), axis=axis, keepdims=True).shape, -np.inf))
    # the value is -inf (finite differences of it are NaN): check exp(logsumexp) = sum(exp)
    check_primitive(lambda a: wl.exp(wl.logsumexp(a, axis=axis)), x)
    check_primitive(lambda a: wl.exp(wl.logsumexp(a, axis=axis, keepdims=True)), x)
    _, t = wl.jvp(lambda a: wl.logsumexp(a, axis=axis), (x,), (rand(3, 0),))
    np.testing.assert_array_equal(t.numpy(), np.zeros(want.shape))
    (g,) = wl.vjp(lambda a: wl.logsumexp(a, axis=axis), x)[1](wl.ones(want.shape, dtype=wl.float64))
    assert g.shape == (3, 0)


@pytest.mark.parametrize("fn", [wl.softmax, wl.log_softmax])
def test_softmax_family_over_an_empty_axis_is_empty(fn):
    for shape, axis in [((3, 0), -1), ((0, 4), 0), ((2, 0, 3), 1), ((0,), 0)]:
        x = rand(*shape)
        assert fn(x, axis=axis).shape == shape
        check_primitive(lambda a: fn(a, axis=axis), x)


@pytest.mark.parametrize("fn,value", [(wl.softmax, 1.0), (wl.log_softmax, 0.0)])
@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_family_of_a_0d_tensor(fn, value, axis):
    x = f64(0.7)
    assert fn(x, axis=axis).shape == ()
    assert fn(x, axis=axis).item() == value
    check_primitive(lambda a: fn(a, axis=axis), x)
    for bad in (1, -2):
        with pytest.raises(ValueError, match=f"{fn.__name__}: axis {bad} is out of range"):
            fn(x, axis=bad)


def test_softmax_family_is_stable_for_large_inputs():
    x = f64([[1000.0, 1001.0, 999.0], [-1000.0, -1e4, -999.0]])
    s = wl.softmax(x).numpy()
    ls = wl.log_softmax(x).numpy()
    lse = wl.logsumexp(x, axis=1).numpy()
    assert np.isfinite(s).all() and np.isfinite(ls).all() and np.isfinite(lse).all()
    np.testing.assert_allclose(s.sum(1), 1.0)
    np.testing.assert_allclose(lse[0], 1001 + np.log(1 + np.exp(-1) + np.exp(-2)))
    assert wl.logsumexp(f64([-np.inf, -np.inf])).item() == -np.inf


@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_cumsum(axis):
    check_primitive(lambda a: wl.cumsum(a, axis=axis), rand(3, 4))


MATMUL = [
    ("mat_mat", (3, 4), (4, 2)),
    ("vec_vec", (4,), (4,)),
    ("vec_mat", (4,), (4, 2)),
    ("mat_vec", (3, 4), (4,)),
    ("batched", (2, 3, 4), (2, 4, 2)),
    ("broadcast_batch", (2, 1, 3, 4), (3, 4, 2)),
    ("batch_times_matrix", (2, 3, 4), (4, 2)),
    ("vec_batched", (4,), (2, 4, 3)),
    ("batched_vec", (2, 3, 4), (4,)),
    ("size0", (0, 4), (4, 2)),
    ("size1", (1, 1), (1, 3)),
    ("size0_inner_batched", (5, 5, 0), (0, 5)),
    ("size0_inner_batched_both", (2, 3, 0), (2, 0, 4)),
    ("size0_batch_times_matrix", (0, 3, 4), (4, 2)),
]


@pytest.mark.parametrize("name,sa,sb", MATMUL, ids=[m[0] for m in MATMUL])
def test_matmul(name, sa, sb):
    a, b = rand(*sa), rand(*sb)
    check_primitive(wl.matmul, a, b)
    np.testing.assert_allclose((a @ b).numpy(), a.numpy() @ b.numpy())


def test_linear_with_size0_axes():
    from wonderland.nn import functional as F
    for sx, sw in [((5, 5, 0), (0, 5)), ((2, 0, 3), (3, 4)), ((4, 0), (0, 3))]:
        x, w, b = rand(*sx), rand(*sw), rand(sw[1])
        np.testing.assert_allclose(F.linear(x, w, b).numpy(), x.numpy() @ w.numpy() + b.numpy())
        check_primitive(F.linear, x, w, b)


def test_matmul_noncontiguous():
    check_primitive(wl.matmul, noncontig(3, 4), noncontig(4, 2))
    a = rand(4, 3)
    check_primitive(lambda x, y: x.T @ y, a, rand(4, 2))


EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 2)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
    ("ij->", [(3, 4)]),
    ("ii->", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ijk->kji", [(2, 3, 4)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("ij,j", [(3, 4), (4,)]),
    ("ijj->ij", [(2, 3, 3)]),
    ("ij->j", [(3, 4)]),
    ("bi,i->b", [(3, 4), (4,)]),
    ("ik,k->", [(2, 3), (3,)]),
]


@pytest.mark.parametrize("spec,shapes", EINSUM, ids=[e[0] for e in EINSUM])
def test_einsum(spec, shapes):
    ops = [rand(*s) for s in shapes]
    check_primitive(lambda *xs: wl.einsum(spec, *xs), *ops)
    np.testing.assert_allclose(wl.einsum(spec, *ops).numpy(),
                               np.einsum(spec, *[o.numpy() for o in ops]), atol=1e-12)


@pytest.mark.parametrize("axes", [2, 1, 0, ([1, 0], [0, 1]), ([2], [0])])
def test_tensordot(axes):
    a = rand(3, 4, 2)
    b = rand(4, 3, 2) if axes == ([1, 0], [0, 1]) else (rand(2, 5) if axes == ([2], [0]) else
                                                         rand(*{2: (4, 2, 3), 1: (2, 3), 0: (2,)}[axes]))
    check_primitive(lambda x, y: wl.tensordot(x, y, axes), a, b, order=1)
    np.testing.assert_allclose(wl.tensordot(a, b, axes).numpy(),
                               np.tensordot(a.numpy(), b.numpy(), axes), atol=1e-12)


SHAPE_OPS = [
    ("reshape", lambda a: a.reshape(4, -1), (2, 3, 2)),
    ("transpose", lambda a: a.transpose(2, 0, 1), (2, 3, 4)),
    ("transpose_default", lambda a: a.T, (2, 3)),
    ("moveaxis", lambda a: wl.moveaxis(a, 0, -1), (2, 3, 4)),
    ("swapaxes", lambda a: wl.swapaxes(a, -1, 0), (2, 3, 4)),
    ("expand_dims", lambda a: wl.expand_dims(a, (0, -1)), (2, 3)),
    ("squeeze", lambda a: wl.squeeze(a, 1), (2, 1, 3)),
    ("squeeze_all", lambda a: wl.squeeze(a), (1, 3, 1)),
    ("broadcast_to", lambda a: wl.broadcast_to(a, (2, 3, 4)), (3, 1)),
    ("flip", lambda a: wl.flip(a, -1), (2, 3)),
    ("flip_all", lambda a: wl.flip(a), (2, 3)),
    ("pad", lambda a: wl.pad(a, ((1, 2), (0, 1)), constant_values=0.5), (2, 3)),
    ("pad_int", lambda a: wl.pad(a, 1), (2, 3)),
    ("repeat", lambda a: wl.repeat(a, 2, axis=1), (2, 3)),
    ("repeat_array", lambda a: wl.repeat(a, [1, 0, 3], axis=0), (3, 2)),
    ("repeat_flat", lambda a: wl.repeat(a, 2), (2, 2)),
    ("tile", lambda a: wl.tile(a, (2, 1, 3)), (2, 3)),
    ("flatten", lambda a: wl.flatten(a, 1), (2, 3, 2)),
    ("reshape_size0", lambda a: a.reshape(3, 0), (0, 3)),
    ("flatten_size0_batch", lambda a: wl.flatten(a, 1), (0, 2, 3)),
    ("flatten_size0_middle", lambda a: wl.flatten(a, 1, 2), (2, 0, 3)),
]


@pytest.mark.parametrize("name,fn,shape", SHAPE_OPS, ids=[s[0] for s in SHAPE_OPS])
def test_shape_ops(name, fn, shape):
    check_primitive(fn, rand(*shape))


def test_shape_ops_match_numpy():
    a = rand(2, 3, 4)
    n = a.numpy()
    np.testing.assert_array_equal(wl.moveaxis(a, [0, 1], [-1, 0]).numpy(), np.moveaxis(n, [0, 1], [-1, 0]))
    np.testing.assert_array_equal(wl.tile(a, 2).numpy(), np.tile(n, 2))
    np.testing.assert_array_equal(wl.tile(a, (2, 1, 1, 2)).numpy(), np.tile(n, (2, 1, 1, 2)))
    np.testing.assert_array_equal(wl.repeat(a, [1, 2, 0], axis=1).numpy(), np.repeat(n, [1, 2, 0], axis=1))
    np.testing.assert_array_equal(wl.pad(a, ((0, 1), (2, 0), (1, 1))).numpy(),
                                  np.pad(n, ((0, 1), (2, 0), (1, 1))))
    for got, want in zip(wl.split(a, [1, 3], axis=-1), np.split(n, [1, 3], axis=-1)):
        np.testing.assert_array_equal(got.numpy(), want)


def test_concatenate_stack_split():
    a, b, c = rand(2, 3), rand(2, 1), rand(2, 2)
    check_primitive(lambda x, y, z: wl.concatenate([x, y, z], axis=-1), a, b, c)
    check_primitive(lambda x, y: wl.stack([x, y], axis=1), rand(2, 3), rand(2, 3))
    check_primitive(lambda x: wl.split(x, 3, axis=1)[1], rand(2, 6))
    check_primitive(lambda x: wl.split(x, [1, 4])[2] * 2, rand(6, 2))
    check_primitive(lambda x, y: wl.concatenate([x, y]), rand(0, 2), rand(3, 2))


INDEXING = [
    ("basic_slice", lambda a: a[1:, ::2], (3, 4)),
    ("int_and_slice", lambda a: a[-1, 1:3], (3, 4)),
    ("ellipsis_newaxis", lambda a: a[..., None, 0], (2, 3, 4)),
    ("int_array_repeats", lambda a: a[wl.tensor([0, 2, 0, 0])], (3, 4)),
    ("two_int_arrays", lambda a: a[wl.tensor([0, 1, 1]), wl.tensor([3, 0, 3])], (3, 4)),
    ("bool_mask", lambda a: a[wl.tensor(np.array([[True, False, True, True]] * 3))], (3, 4)),
    ("bool_rows", lambda a: a[wl.tensor([True, False, True])], (3, 4)),
    ("list_index", lambda a: a[:, [1, 1, 3]], (3, 4)),
    ("take", lambda a: wl.take(a, wl.tensor([2, 0, 2]), axis=1), (2, 3)),
    ("take_flat", lambda a: wl.take(a, wl.tensor([[5, 0], [5, 1]])), (2, 3)),
    ("take_along_axis", lambda a: wl.take_along_axis(a, wl.tensor([[0, 2, 2], [1, 1, 0]]), axis=1), (2, 3)),
    ("take_along_axis_0", lambda a: wl.take_along_axis(a, wl.tensor([[1, 0, 1]]), axis=0), (2, 3)),
]


@pytest.mark.parametrize("name,fn,shape", INDEXING, ids=[i[0] for i in INDEXING])
def test_indexing(name, fn, shape):
    check_primitive(fn, rand(*shape))


def test_repeated_indices_accumulate():
    x = f64([1.0, 2.0, 3.0])
    g = wl.grad(lambda a: a[wl.tensor([0, 0, 2, 0])].sum())(x)
    np.testing.assert_array_equal(g.numpy(), [3.0, 0.0, 1.0])


def test_scatter_add_and_index_add():
    idx = wl.tensor([0, 2, 0, 1])
    check_primitive(lambda x, v: wl.index_add(x, idx, v, axis=0), rand(3, 2), rand(4, 2))
    check_primitive(lambda x, v: wl.index_add(x, idx, v, axis=1), rand(2, 3), rand(2, 4))
    sidx = wl.tensor([[0, 2, 0], [1, 1, 1]])
    check_primitive(lambda x, v: wl.scatter_add(x, sidx, v, axis=1), rand(2, 4), rand(2, 3))
    out = wl.index_add(wl.zeros(3), wl.tensor([0, 0, 2]), wl.tensor([1.0, 2.0, 5.0]))
    np.testing.assert_array_equal(out.numpy(), [3.0, 0.0, 5.0])
    check_primitive(lambda x, v: wl.add_at(x, (slice(None), wl.tensor([1, 1])), v),
                    rand(2, 3), rand(2, 2))


def test_one_hot_and_comparisons_have_no_gradient():
    oh = wl.one_hot(wl.tensor([0, 2, 1]), 3)
    np.testing.assert_array_equal(oh.numpy(), np.eye(3)[[0, 2, 1]])
    assert oh.dtype == wl.float32 and not oh.requires_grad
    x = wl.tensor([1.0, -2.0, 3.0], requires_grad=True)
    for t in (x > 0, x == 1.0, x <= 0, wl.argmax(x), wl.argmin(x), wl.sign(x), wl.isfinite(x)):
        assert not t.requires_grad
    assert wl.argmax(x).item() == 2 and wl.argmin(x).item() == 1
    assert wl.argmax(wl.tensor([[1, 5], [7, 0]]), axis=1).tolist() == [1, 0]
    g = wl.grad(lambda a: (a * wl.sign(a)).sum())(x.detach())
    np.testing.assert_array_equal(g.numpy(), [1.0, -1.0, 1.0])


def test_astype_passes_gradient_between_floats():
    x = rand(3)
    g = wl.grad(lambda a: (a.astype(wl.float32) ** 2).sum())(x)
    assert g.dtype == wl.float64
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy(), rtol=1e-6)
    _, t = wl.jvp(lambda a: a.astype(wl.float32), (x,), (f64([1.0, 2.0, 3.0]),))
    assert t.dtype == wl.float32 and t.tolist() == [1.0, 2.0, 3.0]


def test_float32_gradients_match_float64():
    x64 = rand(4, 5)
    x32 = x64.astype(wl.float32)
    f = lambda a: (wl.tanh(a @ a.T) * wl.softmax(a, axis=0).sum(1)).sum()  # noqa: E731
    g64 = wl.grad(f)(x64)
    g32 = wl.grad(f)(x32)
    assert g32.dtype == wl.float32
    np.testing.assert_allclose(g32.numpy(), g64.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_pad_modes_match_numpy_and_differentiate(mode):
    x = rand(3, 4)
    np.testing.assert_array_equal(wl.pad(x, ((1, 2), (3, 1)), mode=mode).numpy(),
                                  np.pad(x.numpy(), ((1, 2), (3, 1)), mode=mode))
    check_primitive(lambda a: wl.pad(a, ((1, 2), (3, 1)), mode=mode), x)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_fused_gelu_equals_its_composite_and_differentiates(approximate):
    import math

    x = rand(3, 4)
    if approximate == "none":
        ref = x * (wl.erf(x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5
    else:
        ref = x * (wl.tanh((x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)) + 1.0) * 0.5
    # x³ multiplied in another order; 1 + tanh cancels for x < 0 (×300 at x = −3): ≲ 1e-13
    got = wl.nn.functional.gelu(x, approximate=approximate)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-12)
    check_primitive(lambda v: wl.nn.functional.gelu(v, approximate=approximate), x)


def test_fused_silu_and_masked_scale():
    x = rand(3, 4)
    # x · expit(x) either way: sigmoid's forward is expit, the same two operations
    np.testing.assert_allclose(wl.nn.functional.silu(x).numpy(), (x * wl.sigmoid(x)).numpy(),
                               rtol=1e-12)
    check_primitive(wl.nn.functional.silu, x)
    mask = wl.tensor(R.uniform(size=(3, 4)) < 0.6)
    from wonderland.ops.nn import masked_scale
    np.testing.assert_allclose(masked_scale(x, mask, 2.5).numpy(),
                               (x * mask.astype(wl.float64) * 2.5).numpy())
    check_primitive(lambda v: masked_scale(v, mask, 2.5), x)
