"""Sparse primitives of graph layers: gather_rows, segment_sum/mean/max/softmax and the
sparse × dense product. Values against dense references written here with NumPy;
gradients in float64 against finite differences in both modes, second order; vmap
against a loop over examples; the compiled kernel against its NumPy reference."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.core import vmap
from wonderland.ops import segment as seg_mod
from conftest import check_primitive, f64

R = np.random.default_rng(11)
S = 5
IDS = np.array([3, 0, 3, 1, 0, 3, 1, 4])        # unsorted; segment 2 is empty


def onehot(ids, n):
    m = np.zeros((len(ids), n))
    m[np.arange(len(ids)), ids] = 1.0
    return m


def dense_sum(data, ids, n):
    return np.tensordot(onehot(ids, n).T, data, axes=1)


def dense_mean(data, ids, n):
    cnt = np.maximum(onehot(ids, n).sum(0), 1)
    return dense_sum(data, ids, n) / cnt.reshape((-1,) + (1,) * (data.ndim - 1))


def dense_max(data, ids, n):
    out = np.zeros((n,) + data.shape[1:])
    for s in range(n):
        rows = data[ids == s]
        if len(rows):
            out[s] = rows.max(0)
    return out


def dense_softmax(data, ids):
    out = np.empty_like(data)
    for s in np.unique(ids):
        rows = data[ids == s]
        e = np.exp(rows - rows.max(0))
        out[ids == s] = e / e.sum(0)
    return out


SHAPES = [(8,), (8, 3), (8, 2, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_segment_values_match_dense_references(shape):
    d = R.standard_normal(shape)
    np.testing.assert_allclose(wl.segment_sum(d, IDS, S).numpy(), dense_sum(d, IDS, S), atol=1e-12)
    np.testing.assert_allclose(wl.segment_mean(d, IDS, S).numpy(), dense_mean(d, IDS, S), atol=1e-12)
    np.testing.assert_allclose(wl.segment_max(d, IDS, S).numpy(), dense_max(d, IDS, S))
    np.testing.assert_allclose(wl.segment_softmax(d, IDS, S).numpy(), dense_softmax(d, IDS),
                               atol=1e-12)
    np.testing.assert_allclose(wl.gather_rows(d, IDS[:5] % 8).numpy(), d[IDS[:5] % 8])


def test_empty_segments_give_zero_not_nan():
    d = f64(R.standard_normal((8, 3)))
    d.requires_grad = True
    for fn in (wl.segment_sum, wl.segment_mean, wl.segment_max):
        out = fn(d, IDS, S)
        assert np.all(out.numpy()[2] == 0), fn.__name__
        out.sum().backward()
        assert np.isfinite(d.grad.numpy()).all()
        d.grad = None
    assert np.all(wl.segment_max(-1e30 * np.ones((2, 2)), [0, 0], 3).numpy()[1:] == 0)


def test_segment_max_ties_split_like_max():
    d = f64([[1.0, 2.0], [3.0, 2.0], [3.0, 0.5], [7.0, 7.0]])
    ids = np.array([0, 0, 0, 1])
    g_seg = wl.grad(lambda a: (wl.segment_max(a, ids, 2) * f64([[1.0, 2.0], [3.0, 4.0]])).sum())(d)
    g_max = wl.grad(lambda a: (wl.max(a[:3], axis=0) * f64([1.0, 2.0])).sum()
                    + (wl.max(a[3:], axis=0) * f64([3.0, 4.0])).sum())(d)
    np.testing.assert_allclose(g_seg.numpy(), g_max.numpy())
    np.testing.assert_allclose(g_seg.numpy()[:, 0], [0.0, 0.5, 0.5, 3.0])


def test_ids_as_tensor_and_int32():
    d = R.standard_normal((8, 2))
    want = dense_sum(d, IDS, S)
    np.testing.assert_allclose(wl.segment_sum(d, wl.tensor(IDS), S).numpy(), want)
    np.testing.assert_allclose(wl.segment_sum(d, IDS.astype(np.int32), S).numpy(), want)
    np.testing.assert_allclose(wl.segment_sum(d, IDS).numpy(), want)      # inferred: max + 1


def distinct(*shape):
    """Values far from each other, so the maximum is unique and stays put under finite
    differences."""
    n = int(np.prod(shape))
    return f64((R.permutation(n) * 0.37 + R.uniform(0, 0.05, n)).reshape(shape))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_segment_gradients(shape):
    d = f64(R.standard_normal(shape))
    check_primitive(lambda a: wl.segment_sum(a, IDS, S), d)
    check_primitive(lambda a: wl.segment_mean(a, IDS, S), d)
    check_primitive(lambda a: wl.segment_softmax(a, IDS, S), d)
    check_primitive(lambda a: wl.segment_max(a, IDS, S), distinct(*shape))
    check_primitive(lambda a: wl.gather_rows(a, IDS), d)


def test_segment_gradients_composed_second_order():
    """A GAT-like composition: attention scores through segment softmax, weighted
    gather, segment sum; second order in both modes."""
    src = np.array([0, 1, 2, 3, 1, 2, 0])
    dst = np.array([1, 2, 3, 0, 0, 0, 2])

    def f(h, a):
        score = wl.tanh(wl.gather_rows(h @ a, src) + wl.gather_rows(h @ a, dst))
        alpha = wl.segment_softmax(score, dst, 4)
        return wl.segment_sum(alpha.reshape(-1, 1) * wl.gather_rows(h, src), dst, 4)

    check_primitive(f, f64(R.standard_normal((4, 3))), f64(R.standard_normal(3)), order=2)


def loop(fn, *args, in_axes):
    size = next(a.shape[ax] for a, ax in zip(args, in_axes) if ax is not None)
    outs = []
    for b in range(size):
        sliced = [a if ax is None else np.take(a, b, axis=ax) for a, ax in zip(args, in_axes)]
        outs.append(fn(*sliced).numpy())
    return np.stack(outs)


VMAP_CASES = [
    ("data", (0, None)),
    ("data_axis1", (1, None)),
    ("ids", (None, 0)),
    ("both", (0, 0)),
]


@pytest.mark.parametrize("name,in_axes", VMAP_CASES, ids=[c[0] for c in VMAP_CASES])
@pytest.mark.parametrize("op", ["segment_sum", "segment_mean", "segment_max", "segment_softmax",
                                "gather_rows"])
def test_vmap_equals_loop(op, name, in_axes):
    batch = 3
    data = R.standard_normal((8, 2))
    ids = IDS
    if in_axes[0] is not None:
        data = np.stack([R.standard_normal((8, 2)) for _ in range(batch)], axis=in_axes[0])
    if in_axes[1] is not None:
        ids = np.stack([R.permutation(IDS) for _ in range(batch)])
    if op == "gather_rows":
        fn = lambda d, i: wl.gather_rows(wl.tensor(d) if not isinstance(d, wl.Tensor) else d,
                                         wl.tensor(i) if not isinstance(i, wl.Tensor) else i)
    else:
        f = getattr(wl, op)
        fn = lambda d, i: f(wl.tensor(d) if not isinstance(d, wl.Tensor) else d,
                            wl.tensor(i) if not isinstance(i, wl.Tensor) else i, S)
    got = vmap(fn, in_axes=in_axes)(wl.tensor(data), wl.tensor(ids))
    want = loop(fn, data, ids, in_axes=in_axes)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_jacobians_through_vmap_of_gradients():
    """Per-example gradients of a segment model (vmap of grad) equal a loop."""
    xs = R.standard_normal((4, 8, 2))

    def loss(d):
        return (wl.segment_softmax(d, IDS, S) * wl.segment_max(d, IDS, S)[IDS]).sum()

    got = vmap(wl.grad(loss))(wl.tensor(xs)).numpy()
    want = np.stack([wl.grad(loss)(wl.tensor(x)).numpy() for x in xs])
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_segment_max_matches_numpy_reference(dtype):
    data = R.standard_normal((500, 7)).astype(dtype)
    data[3, 2] = -np.inf
    data[10, 1] = np.nan
    ids = R.integers(0, 120, 500)
    ids[ids == 17] = 18                                       # an empty segment
    want = seg_mod.segment_max_reference(data, ids, 121)
    got = wl.segment_max(data, ids, 121).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.nan_to_num(got), np.nan_to_num(want))
    try:
        seg_mod.USE_COMPILED = False
        ref = wl.segment_max(data, ids, 121).numpy()
    finally:
        seg_mod.USE_COMPILED = True
    np.testing.assert_array_equal(np.nan_to_num(ref), np.nan_to_num(want))


def test_large_scatter_agrees_with_add_at():
    data = R.standard_normal((3000, 16)).astype(np.float32)
    ids = R.integers(0, 700, 3000)
    want = np.zeros((700, 16), np.float32)
    np.add.at(want, ids, data)
    np.testing.assert_allclose(wl.segment_sum(data, ids, 700).numpy(), want, rtol=1e-5, atol=1e-5)
    assert wl.segment_sum(data, ids, 700).dtype == np.float32


def test_segment_errors_name_the_op():
    d = R.standard_normal((4, 2))
    with pytest.raises(ValueError, match=r"segment_sum: 3 segment ids for 4 rows"):
        wl.segment_sum(d, [0, 1, 2], 3)
    with pytest.raises(IndexError, match=r"segment_max: segment id 5 is out of range for num_segments=3"):
        wl.segment_max(d, [0, 1, 5, 0], 3)
    with pytest.raises(TypeError, match=r"segment_mean: segment ids must be integers, got float64"):
        wl.segment_mean(d, np.array([0.0, 1, 2, 0]), 3)
    with pytest.raises(ValueError, match=r"segment_softmax: num_segments must be a non-negative int"):
        wl.segment_softmax(d, [0, 1, 2, 0], -1)
    with pytest.raises(IndexError, match=r"gather_rows: index 4 is out of range for 4 rows"):
        wl.gather_rows(d, [0, 4])
    with pytest.raises(ValueError, match=r"segment ids must be 1-D, got shape \(2, 2\)"):
        wl.segment_sum(d, [[0, 1], [1, 0]], 2)


@pytest.mark.torch
def test_segment_ops_match_torch_scatter_reduce():
    torch = pytest.importorskip("torch")
    d = R.standard_normal((40, 3))
    ids = R.integers(0, 9, 40)
    t = torch.tensor(d, requires_grad=True)
    index = torch.tensor(ids).view(-1, 1).expand(-1, 3)
    amax = torch.zeros(9, 3, dtype=torch.float64).scatter_reduce(0, index, t, "amax",
                                                                include_self=False)
    mean = torch.zeros(9, 3, dtype=torch.float64).scatter_reduce(0, index, t, "mean",
                                                                include_self=False)
    np.testing.assert_allclose(wl.segment_max(d, ids, 9).numpy(), amax.detach().numpy())
    np.testing.assert_allclose(wl.segment_mean(d, ids, 9).numpy(), mean.detach().numpy())
    w = R.standard_normal((9, 3))
    (amax * torch.tensor(w)).sum().backward()
    x = wl.tensor(d)
    g = wl.grad(lambda a: (wl.segment_max(a, ids, 9) * wl.tensor(w)).sum())(x)
    np.testing.assert_allclose(g.numpy(), t.grad.numpy())


# ----------------------------------------------------------------------------- sparse
def random_coo(m, n, nnz, seed=0):
    r = np.random.default_rng(seed)
    return r.integers(0, m, nnz), r.integers(0, n, nnz), r.standard_normal(nnz)


def dense_of(rows, cols, vals, shape):
    d = np.zeros(shape)
    np.add.at(d, (rows, cols), vals)
    return d


@pytest.mark.parametrize("xshape", [(5,), (5, 3), (5, 2, 2)], ids=str)
def test_sparse_matmul_matches_dense(xshape):
    rows, cols, vals = random_coo(4, 5, 9)
    a = wl.sparse.from_coo(rows, cols, f64(vals), (4, 5))
    x = R.standard_normal(xshape)
    want = np.tensordot(dense_of(rows, cols, vals, (4, 5)), x, axes=1)
    np.testing.assert_allclose((a @ x).numpy(), want, atol=1e-12)
    np.testing.assert_allclose((a.T @ R.standard_normal((4,))).shape, (5,))
    np.testing.assert_allclose(a.to_dense().numpy(), dense_of(rows, cols, vals, (4, 5)))
    np.testing.assert_allclose(a.T.to_dense().numpy(), dense_of(rows, cols, vals, (4, 5)).T)


@pytest.mark.parametrize("xshape", [(5,), (5, 3)], ids=str)
def test_sparse_matmul_gradients_in_values_and_dense(xshape):
    rows, cols, vals = random_coo(4, 5, 9, seed=3)
    pattern = wl.sparse.from_coo(rows, cols, f64(vals), (4, 5))

    def f(v, x):
        return pattern.with_values(v) @ x

    check_primitive(f, pattern.values, f64(R.standard_normal(xshape)), order=2)
    # through the transpose and the unsorted-COO permutation too
    check_primitive(lambda v, x: wl.sparse.from_coo(rows, cols, v, (4, 5)).T @ x,
                    f64(vals), f64(R.standard_normal((4, 2))), order=2)


@pytest.mark.parametrize("in_axes", [(None, 0), (0, None), (0, 0), (None, 1)], ids=str)
def test_sparse_matmul_vmap_equals_loop(in_axes):
    rows, cols, vals = random_coo(4, 5, 9, seed=5)
    pattern = wl.sparse.from_coo(rows, cols, f64(vals), (4, 5))
    v = R.standard_normal((3, 9)) if in_axes[0] == 0 else vals
    x = R.standard_normal((5, 2))
    if in_axes[1] == 0:
        x = R.standard_normal((3, 5, 2))
    elif in_axes[1] == 1:
        x = R.standard_normal((5, 3, 2))

    def fn(vv, xx):
        return pattern.with_values(vv if isinstance(vv, wl.Tensor) else wl.tensor(vv)) @ xx

    got = vmap(fn, in_axes=in_axes)(wl.tensor(v), wl.tensor(x)).numpy()
    want = loop(lambda a, b: fn(a, wl.tensor(b)), v, x, in_axes=in_axes)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_sparse_from_scipy_and_dense_round_trip():
    import scipy.sparse as sp
    m = sp.random(6, 4, density=0.4, random_state=1, format="coo")
    a = wl.sparse.from_scipy(m)
    np.testing.assert_allclose(a.to_dense().numpy(), m.toarray(), rtol=1e-6)
    np.testing.assert_allclose(a.to_scipy().toarray(), m.toarray(), rtol=1e-6)
    b = wl.sparse.from_dense(wl.tensor(m.toarray()))
    assert b.nnz == m.nnz
    np.testing.assert_allclose(b.to_dense().numpy(), m.toarray())


def test_sparse_errors_name_the_op():
    a = wl.sparse.from_coo([0, 1], [1, 2], None, (2, 3))
    with pytest.raises(ValueError, match=r"sparse.matmul: inner dimensions differ: sparse \(2, 3\) @ dense \(4, 2\)"):
        a @ wl.zeros((4, 2))
    with pytest.raises(IndexError, match=r"from_coo: row indices must lie in \[0, 2\)"):
        wl.sparse.from_coo([0, 2], [1, 2], None, (2, 3))
    with pytest.raises(ValueError, match=r"SparseMatrix.with_values: expected shape \(2,\)"):
        a.with_values(wl.zeros(3))


# ----------------------------------------------------------------------------- multi-head products
def test_multihead_sparse_matmul_matches_per_head_dense():
    rows, cols, _ = random_coo(4, 5, 11, seed=8)
    vals = R.standard_normal((11, 3))
    a = wl.sparse.from_coo(rows, cols, f64(vals), (4, 5))
    x = R.standard_normal((5, 3, 2))
    got = (a @ x).numpy()
    for h in range(3):
        np.testing.assert_allclose(got[:, h], dense_of(rows, cols, vals[:, h], (4, 5)) @ x[:, h],
                                   atol=1e-12)
    np.testing.assert_allclose((a.T @ R.standard_normal((4, 3))).shape, (5, 3))
    assert a.to_dense().shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"sparse.matmul: 3 heads of values need a dense operand of shape \(5, 3, ...\)"):
        a @ wl.zeros((5, 2))


def test_multihead_sparse_matmul_gradients():
    rows, cols, _ = random_coo(4, 5, 10, seed=9)
    pattern = wl.sparse.from_coo(rows, cols, None, (4, 5))
    check_primitive(lambda v, x: pattern.with_values(v) @ x, f64(R.standard_normal((10, 2))),
                    f64(R.standard_normal((5, 2, 3))), order=2)
    check_primitive(lambda v, x: wl.sparse.from_coo(rows, cols, v, (4, 5)).T @ x,
                    f64(R.standard_normal((10, 2))), f64(R.standard_normal((4, 2))), order=2)


@pytest.mark.parametrize("in_axes", [(None, 0), (0, None), (0, 0), (None, 2)], ids=str)
def test_multihead_sparse_matmul_vmap_equals_loop(in_axes):
    rows, cols, _ = random_coo(4, 5, 9, seed=10)
    pattern = wl.sparse.from_coo(rows, cols, None, (4, 5))
    v = R.standard_normal((3, 9, 2)) if in_axes[0] == 0 else R.standard_normal((9, 2))
    x = {None: (5, 2, 4), 0: (3, 5, 2, 4), 2: (5, 2, 3, 4)}[in_axes[1]]
    x = R.standard_normal(x)

    def fn(vv, xx):
        return pattern.with_values(vv if isinstance(vv, wl.Tensor) else wl.tensor(vv)) @ xx

    got = vmap(fn, in_axes=in_axes)(wl.tensor(v), wl.tensor(x)).numpy()
    want = loop(lambda a, b: fn(a, wl.tensor(b)), v, x, in_axes=in_axes)
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_sparse_kernels_match_references(dtype):
    from wonderland.ops import sparse as sp_mod
    r = np.random.default_rng(3)
    rows, cols = r.integers(0, 60, 700), r.integers(0, 50, 700)
    order, indptr = sp_mod.csr_order(rows, 60)
    ref_order, ref_indptr = sp_mod.counting_order_reference(rows, 60)
    np.testing.assert_array_equal(order, ref_order)
    np.testing.assert_array_equal(indptr, ref_indptr)
    a = wl.sparse.from_coo(rows, cols, r.standard_normal((700, 4)).astype(dtype), (60, 50))
    ip, ind, vals = a.indptr.numpy(), a.indices.numpy(), a.values.numpy()
    for transpose, xrows in ((False, 50), (True, 60)):
        x = r.standard_normal((xrows, 4, 3)).astype(dtype)
        want = sp_mod.csr_heads_reference(ip, ind, vals, x, (60, 50), transpose)
        got = (a.T @ x if transpose else a @ x).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    g = r.standard_normal((60, 4, 3)).astype(dtype)
    x = r.standard_normal((50, 4, 3)).astype(dtype)
    got = sp_mod._sampled_dot_forward(g, x, ip, ind, a.row.numpy(), shape=(60, 50),
                                      transpose=False, heads=True)
    want = sp_mod.sampled_dot_reference(a.row.numpy(), ind, g, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    try:                                        # the references run where Numba is missing
        seg_mod.USE_COMPILED = False
        np.testing.assert_array_equal(sp_mod.csr_order(rows, 60)[0], ref_order)
        np.testing.assert_allclose((a @ x).numpy(), sp_mod.csr_heads_reference(
            ip, ind, vals, x, (60, 50), False), rtol=1e-5, atol=1e-5)
    finally:
        seg_mod.USE_COMPILED = True


@pytest.mark.parametrize("heads", [False, True])
def test_sampled_dot_values_gradients_and_vmap(heads):
    rows, cols, _ = random_coo(4, 5, 10, seed=12)
    pattern = wl.sparse.from_coo(rows, cols, None, (4, 5))
    r, c = pattern.row.numpy(), pattern.indices.numpy()
    shape_a, shape_b = ((4, 2, 3), (5, 2, 3)) if heads else ((4, 3), (5, 3))
    a, b = R.standard_normal(shape_a), R.standard_normal(shape_b)
    got = wl.sparse.sampled_dot(pattern, a, b, heads=heads).numpy()
    np.testing.assert_allclose(got, (a[r] * b[c]).sum(-1), atol=1e-12)
    check_primitive(lambda x, y: wl.sparse.sampled_dot(pattern, x, y, heads=heads),
                    f64(a), f64(b), order=2)
    batch_a = R.standard_normal((3,) + shape_a)
    fn = lambda x, y: wl.sparse.sampled_dot(pattern, x, y, heads=heads)   # noqa: E731
    got = vmap(fn, in_axes=(0, None))(wl.tensor(batch_a), wl.tensor(b)).numpy()
    want = np.stack([fn(wl.tensor(x), wl.tensor(b)).numpy() for x in batch_a])
    np.testing.assert_allclose(got, want, atol=1e-12)
    with pytest.raises(ValueError, match=r"sparse.sampled_dot: operands \(4, 3\) and \(4, 3\) do not fit a \(4, 5\) pattern"):
        wl.sparse.sampled_dot(pattern, np.zeros((4, 3)), np.zeros((4, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_sum_and_one_head_product_match_references(dtype):
    from wonderland.ops import sparse as sp_mod
    r = np.random.default_rng(4)
    data = r.standard_normal((900, 5)).astype(dtype)
    ids = r.integers(0, 200, 900)
    got = wl.segment_sum(data, ids, 210).numpy()
    np.testing.assert_allclose(got, seg_mod.segment_sum_reference(data, ids, 210), rtol=1e-5, atol=1e-5)
    assert got.dtype == dtype
    a = wl.sparse.from_coo(r.integers(0, 40, 300), r.integers(0, 30, 300),
                           r.standard_normal(300).astype(dtype), (40, 30))
    ip, ind, vals = a.indptr.numpy(), a.indices.numpy(), a.values.numpy()
    for transpose, n in ((False, 30), (True, 40)):
        x = r.standard_normal((n, 3, 2)).astype(dtype)
        got = (a.T @ x if transpose else a @ x).numpy()
        want = sp_mod.csr_reference(ip, ind, vals, x, (40, 30), transpose)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_without_compiled_kernels_everything_still_holds():
    """The NumPy/SciPy references (what runs without Numba): values, gradients, vmap."""
    rows, cols, _ = random_coo(4, 5, 10, seed=13)
    pattern = wl.sparse.from_coo(rows, cols, None, (4, 5))
    try:
        seg_mod.USE_COMPILED = False
        check_primitive(lambda v, x: pattern.with_values(v) @ x, f64(R.standard_normal((10, 2))),
                        f64(R.standard_normal((5, 2, 3))), order=2)
        check_primitive(lambda a: wl.segment_max(a, IDS, S), distinct(8, 2))
        check_primitive(lambda a: wl.segment_softmax(a, IDS, S), f64(R.standard_normal((8, 2))))
        x = R.standard_normal((3, 5, 2, 4))
        v = R.standard_normal((10, 2))
        fn = lambda xx: pattern.with_values(wl.tensor(v)) @ xx          # noqa: E731
        got = vmap(fn)(wl.tensor(x)).numpy()
        np.testing.assert_allclose(got, np.stack([fn(wl.tensor(b)).numpy() for b in x]), atol=1e-12)
    finally:
        seg_mod.USE_COMPILED = True
