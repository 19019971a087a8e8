"""The compiled step kernels of the fused RNN/GRU/LSTM layers: float32 (vectorised
gates) and float64 (the C library's functions) against the composite reference, masks
and both directions, one thread against several, and the path with the kernels off."""

import re

import numpy as np
import pytest

import wonderland as wl
from wonderland.backend import compiled, threads
from wonderland.ops import recurrence as R
from wonderland.ops.kernels import recurrent as K

KINDS = list(R.KINDS)


def _case(kind, dtype, B=5, T=9, H=12, seed=0):
    rng = np.random.default_rng(seed)
    G = R.GATES[kind] * H
    arrays = [rng.standard_normal((B, T, G)), rng.standard_normal((H, G)) * 0.3,
              rng.standard_normal(G) * 0.1, rng.standard_normal((B, H)),
              rng.standard_normal((B, H))]
    mask = np.ones((B, T), bool)
    mask[1, T // 2:] = False                   # sequences of different lengths
    mask[B - 1, 2:] = False
    gs = [rng.standard_normal((B, T, H)), rng.standard_normal((B, H)), rng.standard_normal((B, H))]
    return [a.astype(dtype) for a in arrays], mask, [g.astype(dtype) for g in gs]


def _value_and_grads(fn, kind, arrays, mask, gs, reverse):
    ts = [wl.tensor(a, requires_grad=True) for a in arrays]
    outs = fn(kind, *ts, wl.tensor(mask), reverse=reverse)
    if kind != "lstm":
        gs = gs[:2]
        outs = outs[:2]
    total = sum((o * wl.tensor(g)).sum() for o, g in zip(outs, gs))
    total.backward()
    return [o.numpy() for o in outs] + [t.grad.numpy() if t.grad is not None else None for t in ts]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_float32_kernels_equal_the_float64_reference(kind, reverse):
    arrays, mask, gs = _case(kind, np.float32)
    fast = _value_and_grads(R.recurrent_layer, kind, arrays, mask, gs, reverse)
    ref = _value_and_grads(R.reference, kind, [a.astype(np.float64) for a in arrays], mask,
                           [g.astype(np.float64) for g in gs], reverse)
    for a, b in zip(fast, ref):
        if a is None or b is None:                # c0 of the layers without a cell state
            continue
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_float64_kernels_equal_the_reference_to_rounding(kind, reverse):
    arrays, mask, gs = _case(kind, np.float64, seed=1)
    fast = _value_and_grads(R.recurrent_layer, kind, arrays, mask, gs, reverse)
    ref = _value_and_grads(R.reference, kind, arrays, mask, gs, reverse)
    for a, b in zip(fast, ref):
        if a is not None and b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
def test_float64_gradients_by_finite_differences(kind):
    arrays, mask, _ = _case(kind, np.float64, B=2, T=3, H=3, seed=2)

    def f(xw, w, b, h0, c0):
        hs, hT, cT = R.recurrent_layer(kind, xw, w, b, h0, c0, mask)
        return hs.sum() + (hT * hT).sum() + (cT * cT).sum()
    wl.testing.check_grads(f, tuple(wl.tensor(a) for a in arrays), order=1)


@pytest.mark.parametrize("kind", KINDS)
def test_kernels_switched_off_give_the_same_numbers(kind, monkeypatch):
    arrays, mask, gs = _case(kind, np.float32, B=3, T=4, H=8, seed=3)
    on = _value_and_grads(R.recurrent_layer, kind, arrays, mask, gs, False)
    monkeypatch.setattr(compiled, "ENABLED", False)
    off = _value_and_grads(R.recurrent_layer, kind, arrays, mask, gs, False)
    for a, b in zip(on, off):
        if a is not None and b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not compiled.ENABLED, reason="numba is not installed")
@pytest.mark.parametrize("kind", KINDS)
def test_float32_batches_split_over_threads_equal_one_thread(kind):
    rng = np.random.default_rng(6)
    B, H = 8, 128
    G = R.GATES[kind] * H
    T = {"rnn_tanh": 300, "rnn_relu": 300, "gru": 96, "lstm": 64}[kind]
    assert T * G * H >= 1 << 22                   # large enough to take the split
    xw = rng.standard_normal((B, T, G)).astype(np.float32)
    w = (rng.standard_normal((H, G)) * 0.1).astype(np.float32)
    b = (rng.standard_normal(G) * 0.1).astype(np.float32)
    h0, c0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    mask = np.ones((B, T), bool)
    mask[3, 40:] = False
    gs = [rng.standard_normal(s).astype(np.float32) for s in ((B, T, H), (B, H), (B, H))]

    def run(n):
        before = threads.get_num_threads()
        threads.set_num_threads(n)
        try:
            outs, res = R._forward(xw, w, b, h0, c0, mask, kind=kind, reverse=False)
            grads = R._backward_arrays(gs, res, w, mask, kind, False)
        finally:
            threads.set_num_threads(before)
        return [a for a in list(outs) + list(grads) if a is not None]

    # whole sequences per thread: every row's steps are the same operations either way;
    # only the weight gradient's product is split differently
    for one, two in zip(run(1), run(2)):
        np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(one).max()))


@pytest.mark.skipif(not compiled.ENABLED, reason="numba is not installed")
@pytest.mark.parametrize("name", ["lstm_step", "gru_step", "lstm_back_step"])
def test_float32_gate_passes_are_vectorised(name):
    """The pass over the hidden units compiles to vector instructions (few enough arrays
    for LLVM's overlap checks, no call to the C library's exp or tanh on that path)."""
    kind = name.split("_")[0]
    arrays, mask, gs = _case(kind, np.float32, B=2, T=3, H=16)
    xw, w, b, h0, c0 = arrays
    outs, res = R._forward_arrays(xw, w, b, h0, c0, mask, kind=kind, reverse=False)
    G = xw.shape[-1]
    if name == "lstm_step":
        args = (xw, np.zeros((1, 2, G), np.float32), b, h0.copy(), c0.copy(), mask, 0, True,
                outs[0], res[0], res[1], res[2])
    elif name == "gru_step":
        args = (xw, np.zeros((1, 2, G), np.float32), b, h0.copy(), mask, 0, True, outs[0], res[0],
                res[1], res[2])
    else:
        args = (gs[0], h0.copy(), c0.copy(), res[1], res[2], mask, 0, True,
                np.zeros((2, G), np.float32), np.zeros_like(xw))
    ir = getattr(K, name)[True].llvm_ir(*args)
    # the divisions of the float32 sigmoid and tanh, eight (or four, sixteen) at a time
    assert re.search(r"fdiv [a-z ]*<\d+ x float>", ir)


@pytest.mark.parametrize("rows, alone, blocks", [(16, True, 8), (16, False, 1), (32, True, 1)])
def test_blocked_step_products_equal_one_product(rows, alone, blocks):
    """Blocks only for a few rows on a thread of their own; either way the product's
    values are NumPy's up to rounding (BLAS may pick other kernels for a narrow block)."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((256, 1024)).astype(np.float32)
    h = rng.standard_normal((rows, 256)).astype(np.float32)
    columns = R._ColumnBlocks(w, rows, alone=alone)
    assert len(columns.blocks) == blocks
    out = columns.buffer(np.float32)
    columns(h, out)
    got = np.concatenate([out[k, :, :b.shape[1]] for k, b in enumerate(columns.blocks)], axis=1)
    np.testing.assert_allclose(got, h @ w, rtol=1e-5, atol=1e-4)
    inner = R._InnerBlocks(w.T.copy(), rows, alone=alone)
    d = rng.standard_normal((rows, 1024)).astype(np.float32)
    res = np.empty((rows, 256), np.float32)
    np.testing.assert_allclose(inner(d, res), d @ w.T, rtol=1e-5, atol=1e-4)
