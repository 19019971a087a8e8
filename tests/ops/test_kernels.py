"""Every compiled kernel equals its NumPy reference."""

import numpy as np
import pytest

from wonderland.backend import compiled, threads
from wonderland.ops import pool

pytestmark = pytest.mark.skipif(not compiled.ENABLED, reason="numba is not installed")


def _reference_gather(x, idx, kernel, stride, dilation):
    slices, _ = pool._offset_slices(x.shape, kernel, stride, dilation)
    out = np.zeros(idx.shape, dtype=x.dtype)
    for k, sl in enumerate(slices):
        out += x[sl] * (idx == k)
    return out


def _reference_scatter(g, idx, kernel, stride, dilation, in_shape):
    slices, _ = pool._offset_slices(in_shape, kernel, stride, dilation)
    out = np.zeros(in_shape, dtype=g.dtype)
    for k, sl in enumerate(slices):
        out[sl] += g * (idx == k)
    return out


CASES = [
    ((2, 9, 9, 3), (2, 2), (2, 2), (1, 1), ()),
    ((2, 10, 7, 4), (3, 3), (2, 1), (1, 2), ((1, 1), (1, 2))),
    ((3, 11, 2), (3,), (2,), (2,), ((1, 1),)),
    ((1, 5, 6, 7, 2), (2, 3, 2), (1, 2, 2), (2, 1, 1), ((0, 1), (1, 1), (0, 0))),
    ((2, 8, 6, 3), (2, 3), (2, 3), (1, 1), ()),            # windows tile the input exactly
    ((2, 7, 2), (2,), (2,), (1,), ()),                     # tile, one row left over
]


@pytest.mark.parametrize("split", [False, True], ids=["inline", "split-batch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride,dilation,pads", CASES)
def test_max_pool_kernels_equal_numpy(shape, kernel, stride, dilation, pads, dtype, split,
                                      monkeypatch):
    if split:                     # parts of the batch on the pool's threads, however small
        monkeypatch.setattr(pool, "_PARALLEL_MIN", 0)
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, shape).astype(dtype)          # many ties
    x.flat[::17] = np.nan                                  # and some NaN
    if pads:                                               # padding holds -inf, never chosen
        for d, (a, b) in enumerate(pads):
            lead = (slice(None),) * (1 + d)
            if a:
                x[lead + (slice(0, a),)] = -np.inf
            if b:
                x[lead + (slice(x.shape[1 + d] - b, None),)] = -np.inf
    ref_v, ref_i = pool.max_windows(x, kernel, stride, dilation, pads)
    got_v, got_i = pool._compiled_max(x, kernel, stride, dilation, pads)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_v, ref_v)             # NaN where NaN
    g = rng.standard_normal(ref_v.shape).astype(dtype)
    np.testing.assert_allclose(pool._compiled_scatter(g, got_i, kernel, stride, dilation, shape),
                               _reference_scatter(g, ref_i, kernel, stride, dilation, shape),
                               rtol=1e-6)
    y = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_allclose(pool._compiled_gather(y, got_i, kernel, stride, dilation),
                               _reference_gather(y, ref_i, kernel, stride, dilation), rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda ps: __import__("wonderland").optim.Adam(ps, lr=0.01, weight_decay=0.1),
    lambda ps: __import__("wonderland").optim.AdamW(ps, lr=0.01, weight_decay=0.1),
    lambda ps: __import__("wonderland").optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: __import__("wonderland").optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_optimiser_updates_equal_the_numpy_reference(make, dtype, monkeypatch):
    import wonderland as wl

    rng = np.random.default_rng(1)
    shapes = [(40, 30), (30,), (300_000,)]              # small (flat group) and large (sliced)
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]

    def run(fused):
        monkeypatch.setattr(compiled, "ENABLED", fused)
        ps = [wl.tensor(a.copy(), requires_grad=True) for a in start]
        opt = make(ps)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = wl.tensor(g)
            opt.step()
        return [p.numpy().copy() for p in ps]

    # four elementwise updates of a few operations, FMAs in the compiled loop: a few ulps
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(600, 300, 200), (6, 3000, 1000), (513, 257, 129)])
def test_threaded_gemm_equals_numpy(shape):
    from wonderland.backend import threads
    from wonderland.ops.linalg import _GEMM_SPLIT, gemm

    m, k, n = shape
    assert m * k * n >= _GEMM_SPLIT, "the shape must be large enough to take the split path"
    rng = np.random.default_rng(2)
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    before = threads.get_num_threads()
    threads.set_num_threads(2)
    try:
        # row or column blocks, each one BLAS call over the whole inner dimension (OpenBLAS's own
        # threads split the same way): each entry is the same dot product in the same order
        np.testing.assert_allclose(gemm(a, b), a @ b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gemm(a.T.copy().T, b[:, ::-1]), a @ b[:, ::-1], rtol=1e-12)
    finally:
        threads.set_num_threads(before)


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
def test_recurrent_layers_split_over_threads_equal_one_thread(kind):
    """Large enough batches run their sequences on several threads; the result must be
    that of one thread (float64: to rounding)."""
    from wonderland.backend import threads
    from wonderland.ops import recurrence as R

    rng = np.random.default_rng(6)
    B, H = 8, 128
    G = R.GATES[kind] * H
    T = {"rnn_tanh": 300, "gru": 96, "lstm": 64}[kind]      # enough work to take the split
    assert T * G * H >= 1 << 22, "the case must be large enough to run on several threads"
    xw = rng.standard_normal((B, T, G))
    w = rng.standard_normal((H, G)) * 0.1
    b = rng.standard_normal(G) * 0.1
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    mask = np.ones((B, T), bool)
    mask[3, 40:] = False                          # one shorter sequence
    gs = None

    def run(n):
        nonlocal gs
        before = threads.get_num_threads()
        threads.set_num_threads(n)
        try:
            outs, res = R._forward(xw, w, b, h0, c0, mask, kind=kind, reverse=False)
            if gs is None:
                gs = [rng.standard_normal(o.shape) for o in outs]
            grads = R._backward_arrays(gs, res, w, mask, kind, False)
        finally:
            threads.set_num_threads(before)
        return [a for a in list(outs) + list(grads) if a is not None]

    one = run(1)
    two = run(2)
    # threads take whole sequences: each one's steps are the same operations either way
    for a, c in zip(one, two):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)


COL2IM_CASES = [  # x shape (padded), kernel, stride, dilation, groups, c_out
    ((3, 9, 9, 4), (3, 3), (1, 1), (1, 1), 1, 6),
    ((2, 10, 7, 4), (3, 2), (2, 1), (1, 2), 1, 5),
    ((3, 11, 2), (3,), (2,), (2,), 1, 3),
    ((1, 5, 6, 7, 2), (2, 3, 2), (1, 2, 2), (2, 1, 1), 1, 4),
    ((2, 8, 8, 6), (3, 3), (2, 2), (1, 1), 3, 9),
]


@pytest.mark.parametrize("split", [False, True], ids=["inline", "split-batch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride,dilation,groups,cout", COL2IM_CASES)
def test_col2im_kernel_equals_numpy(shape, kernel, stride, dilation, groups, cout, dtype,
                                    split, monkeypatch):
    from wonderland.ops import conv

    if split:
        monkeypatch.setattr(threads, "MIN_PARALLEL_WORK", 0)
    rng = np.random.default_rng(1)
    nd = len(kernel)
    outs = [conv.out_size(n, k, s, d) for n, k, s, d in zip(shape[1:1 + nd], kernel, stride, dilation)]
    g = rng.standard_normal((shape[0], *outs, cout)).astype(dtype)
    w = rng.standard_normal((*kernel, shape[-1] // groups, cout)).astype(dtype)
    got = conv._col2im(g, w, stride, dilation, groups, shape, dtype)
    monkeypatch.setattr(compiled, "ENABLED", False)
    ref = conv._col2im(g, w, stride, dilation, groups, shape, dtype)
    assert got.shape == ref.shape == shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(ref).max() > 0


DIRECT_CASES = [  # x shape (padded), kernel, stride, dilation, c_out
    ((3, 10, 10, 1), (3, 3), (1, 1), (1, 1), 8),
    ((2, 11, 9, 3), (2, 2), (2, 1), (1, 2), 5),
    ((3, 12, 2), (5,), (2,), (1,), 4),
    ((2, 5, 6, 7, 1), (2, 2, 2), (1, 2, 1), (2, 1, 1), 3),
]


@pytest.mark.parametrize("split", [False, True], ids=["inline", "split-batch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride,dilation,cout", DIRECT_CASES)
def test_direct_convolution_kernels_equal_gemm_path(shape, kernel, stride, dilation, cout, dtype,
                                                    split, monkeypatch):
    from wonderland.ops import conv

    if split:
        monkeypatch.setattr(threads, "MIN_PARALLEL_WORK", 0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((*kernel, shape[-1], cout)).astype(dtype)
    bias = rng.standard_normal(cout).astype(dtype)
    assert conv._direct_applies(x, w, 1)                    # small windows take the loops
    p = {"stride": stride, "dilation": dilation, "groups": 1}
    got = conv._conv_forward(x, w, bias=bias, **p)
    g = rng.standard_normal(got.shape).astype(dtype)
    got_w = conv._conv_weight_forward(x, g, kernel=kernel, **p)
    monkeypatch.setattr(compiled, "ENABLED", False)          # im2col + GEMM
    assert not conv._direct_applies(x, w, 1)
    ref = conv._conv_forward(x, w, bias=bias, **p)
    ref_w = conv._conv_weight_forward(x, g, kernel=kernel, **p)
    # float64: ≤ 12 products per output, ≤ 192 per weight gradient, in another order: ≤ 192 ×
    # 1.1e-16 × sum|terms| (~120) ≈ 2.5e-12 at worst, within tol × (1 + |value|) and its 10×
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert got.dtype == ref.dtype == dtype and got_w.shape == ref_w.shape == w.shape
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_w, ref_w, rtol=tol, atol=tol * 10)
