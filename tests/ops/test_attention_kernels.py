"""The compiled attention loops (``ops/kernels/attention.py``) against the NumPy block
kernels they replace on the CPU and against the composite reference: forward, all
cotangents and the bias's, float32 and float64, causal offsets that leave rows with
nothing to see, broadcast biases with -inf entries, block sizes that split the keys
(the online softmax's rescaling) and NaN propagation."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.backend import compiled
from wonderland.ops import attention as A

pytestmark = pytest.mark.skipif(not compiled.ENABLED, reason="compiled kernels are off")

CASES = [  # causal, bias shape, block
    (None, None, None),
    (0, None, None),
    (-5, None, None),            # the first five queries see no key
    (3, None, (7, 9)),           # several key blocks per row: the running maximum rescales
    (None, (3, 1, 41), (8, 16)),
    (2, (2, 1, 37, 41), (8, 16)),
    (None, (2, 3, 37, 1), None),
]


def _inputs(rng, dtype, bias_shape):
    q = rng.standard_normal((2, 3, 37, 8)).astype(dtype)
    k = rng.standard_normal((2, 3, 41, 8)).astype(dtype) * 2
    v = rng.standard_normal((2, 3, 41, 5)).astype(dtype)
    bias = None
    if bias_shape is not None:
        bias = rng.standard_normal(bias_shape).astype(dtype)
        bias[bias > 1.2] = -np.inf
        bias[(0,) * (bias.ndim - 1)] = -np.inf          # one row of the bias sees nothing
    return q, k, v, bias


def _run(q, k, v, bias, causal, impl, block, compiled_loops, bias_grad=False):
    """Output and cotangents through ``attention`` with or without the compiled loops."""
    saved = A._compiled_applies
    if not compiled_loops:
        A._compiled_applies = lambda *arrays: False
    try:
        Q, K, V = (wl.tensor(x, requires_grad=True) for x in (q, k, v))
        Bt = None if bias is None else wl.tensor(bias, requires_grad=bias_grad)
        out = A.attention(Q, K, V, Bt, causal, 0.7, impl, block)
        g = np.cos(np.arange(out.size)).reshape(out.shape).astype(q.dtype)
        out.backward(wl.tensor(g))
        grads = [Q.grad.numpy(), K.grad.numpy(), V.grad.numpy()]
        if bias_grad:
            grads.append(Bt.grad.numpy())
        return [out.numpy()] + grads
    finally:
        A._compiled_applies = saved


@pytest.mark.parametrize("dtype,tol", [(np.float32, 3e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("impl", ["flash", "plain"])
@pytest.mark.parametrize("causal,bias_shape,block", CASES)
def test_compiled_loops_equal_the_numpy_blocks(rng, dtype, tol, impl, causal, bias_shape, block):
    q, k, v, bias = _inputs(rng, dtype, bias_shape)
    fast = _run(q, k, v, bias, causal, impl, block, True)
    slow = _run(q, k, v, bias, causal, impl, block, False)
    for a, b in zip(fast, slow):
        assert a.dtype == dtype and np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    if causal == -5:                                 # rows that see nothing: zeros
        assert (fast[0][..., :5, :] == 0).all() and (fast[1][..., :5, :] == 0).all()


@pytest.mark.parametrize("dtype,tol", [(np.float32, 3e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("causal", [None, 1])
def test_compiled_plain_kernel_gives_the_bias_gradient(rng, dtype, tol, causal):
    q, k, v, bias = _inputs(rng, dtype, (2, 3, 37, 41))
    fast = _run(q, k, v, bias, causal, "plain", None, True, bias_grad=True)
    slow = _run(q, k, v, bias, causal, "plain", None, False, bias_grad=True)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("impl", ["flash", "plain"])
def test_compiled_loops_equal_the_composite_reference_in_float32(rng, impl):
    q, k, v, _ = _inputs(rng, np.float32, None)
    fast = _run(q, k, v, None, 0, impl, None, True)
    Q, K, V = (wl.tensor(x.astype(np.float64), requires_grad=True) for x in (q, k, v))
    ref = A.attention_reference(Q, K, V, None, 0, 0.7)
    g = np.cos(np.arange(ref.size)).reshape(ref.shape)
    ref.backward(wl.tensor(g))
    for a, b in zip(fast, [ref.numpy(), Q.grad.numpy(), K.grad.numpy(), V.grad.numpy()]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_in_a_query_propagates_to_its_row_only(rng, dtype):
    q, k, v, _ = _inputs(rng, dtype, None)
    q[0, 1, 4, 2] = np.nan
    for block in (None, (8, 16)):
        out = _run(q, k, v, None, None, "flash", block, True)[0]
        assert np.isnan(out[0, 1, 4]).all()
        mask = np.ones(out.shape[:-1], bool)
        mask[0, 1, 4] = False
        assert np.isfinite(out[mask]).all()


def test_auto_takes_the_compiled_flash_loops_on_the_cpu(rng):
    q, k, v, _ = _inputs(rng, np.float32, None)
    out = A.attention(*(wl.tensor(x, requires_grad=True) for x in (q, k, v)), None, 0)
    node = out._node
    assert node is not None and node.params["impl"] == "flash"


def _through_layout(layout, rng, dtype):
    """q, k, v (as tensors requiring grad) and the arrays they are views of, laid out as a
    caller may hand them over."""
    b, H, L, S, E = 2, 3, 9, 11, 4
    if layout == "heads of a projection":           # (batch, length, heads, features).T
        bases = [rng.standard_normal((b, n, H, E)).astype(dtype) for n in (L, S, S)]
        views = lambda ts: [t.transpose(0, 2, 1, 3) for t in ts]       # noqa: E731
    elif layout == "keys shared by the heads":      # k and v broadcast over the heads
        bases = [rng.standard_normal((b, H, L, E)).astype(dtype)] + \
                [rng.standard_normal((b, 1, S, E)).astype(dtype) for _ in range(2)]
        views = lambda ts: ts                                           # noqa: E731
    elif layout == "reversed rows":                 # negative strides: copied first
        bases = [rng.standard_normal((b, H, n, E)).astype(dtype) for n in (L, S, S)]
        views = lambda ts: [t[:, :, ::-1] for t in ts]                  # noqa: E731
    elif layout == "two batch axes and heads":      # (b1, b2, length, heads, features).T
        bases = [rng.standard_normal((2, b, n, H, E)).astype(dtype) for n in (L, S, S)]
        views = lambda ts: [t.transpose(0, 1, 3, 2, 4) for t in ts]    # noqa: E731
    else:                                            # one head, no batch
        bases = [rng.standard_normal((n, E)).astype(dtype) for n in (L, S, S)]
        views = lambda ts: ts                                           # noqa: E731
    return bases, views


@pytest.mark.parametrize("dtype,tol", [(np.float32, 3e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("layout", ["heads of a projection", "keys shared by the heads",
                                    "reversed rows", "two batch axes and heads", "one head"])
def test_compiled_loops_read_any_layout_of_the_heads(rng, dtype, tol, layout):
    """The compiled loops read q, k, v where they lie (views of any strides whose rows are
    contiguous) and give what the NumPy blocks give on the same views."""
    bases, views = _through_layout(layout, rng, dtype)
    results = []
    for compiled_loops in (True, False):
        saved = A._compiled_applies
        if not compiled_loops:
            A._compiled_applies = lambda *arrays: False
        try:
            ts = [wl.tensor(x, requires_grad=True) for x in bases]
            out = A.attention(*views(ts), None, 1, 0.6)
            g = np.sin(np.arange(out.size)).reshape(out.shape).astype(dtype)
            out.backward(wl.tensor(g))
            results.append([out.numpy()] + [t.grad.numpy() for t in ts])
        finally:
            A._compiled_applies = saved
    for a, b in zip(*results):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_heads_come_back_ready_to_merge(rng):
    """For a multi-head layer's heads the output is laid out (batch, length, heads,
    features), so merging the heads is a view and not a copy; so are the gradients."""
    b, L, H, E = 2, 7, 3, 4
    ts = [wl.tensor(rng.standard_normal((b, L, H, E)).astype(np.float32), requires_grad=True)
          for _ in range(3)]
    out = A.attention(*[t.transpose(0, 2, 1, 3) for t in ts], None, 0)
    merged = out.data.transpose(0, 2, 1, 3)
    assert merged.flags.c_contiguous
    out.backward(wl.ones(out.shape))
    assert all(t.grad.data.flags.c_contiguous for t in ts)
