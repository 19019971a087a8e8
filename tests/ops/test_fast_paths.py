"""Fast paths against their plain references: the leading-axes sum as a matrix-vector
product, the one-pass ReLU backward, the compiled row scatter of add_at, the allocator
settings and the profiler."""

import os
import subprocess
import sys

import numpy as np
import pytest

import wonderland as wl
from wonderland.core import structural
from wonderland.backend.compiled import ENABLED as KERNELS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((64, 28, 28, 8), (0, 1, 2)), ((4096, 16), (0,)),
                                        ((32, 40, 30), (0, 1)), ((300, 200), (0,))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_leading_axes_sum_equals_numpy(shape, axis, keepdims, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    assert x.size >= structural._GEMV_MIN                       # the product path runs
    got = structural._sum_forward(x, axis=axis, keepdims=keepdims)
    ref = x.astype(np.float64).sum(axis=axis, keepdims=keepdims)
    assert got.shape == ref.shape and got.dtype == dtype
    # float64: up to 50,176 N(0, 1) terms in another order; rounding ~1.1e-16 × N/√2 ≈ 4e-12
    np.testing.assert_allclose(got, ref, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-3 if dtype == np.float32 else 1e-10)


def test_sum_other_cases_take_numpy():
    x = np.arange(4 * 300 * 100, dtype=np.float32).reshape(4, 300, 100)
    for axis in [(1,), (0, 2), (2,), (0, 1, 2)]:                 # not leading, or all axes
        np.testing.assert_array_equal(structural._sum_forward(x, axis=axis, keepdims=False),
                                      x.sum(axis=axis))
    xt = x.transpose(1, 0, 2)                                    # not contiguous
    np.testing.assert_array_equal(structural._sum_forward(xt, axis=(0,), keepdims=False),
                                  xt.sum(axis=0))
    xi = np.ones((300, 200), dtype=np.int64)                     # integers: exact NumPy sum
    assert structural._sum_forward(xi, axis=(0,), keepdims=False).dtype == np.int64


def test_bias_gradient_through_the_product_path():
    rng = np.random.default_rng(1)
    x = wl.tensor(rng.standard_normal((256, 300)).astype(np.float32))
    b = wl.tensor(np.zeros(300, np.float32), requires_grad=True)
    g = rng.standard_normal((256, 300)).astype(np.float32)
    ((x + b) * wl.tensor(g)).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), g.astype(np.float64).sum(0), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not KERNELS, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_one_pass_equals_tensor_rule(dtype):
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((64, 33)).astype(dtype)
    x0[0, :5] = 0.0                                              # the kink: derivative 0
    g0 = rng.standard_normal((64, 33)).astype(dtype)
    x = wl.tensor(x0, requires_grad=True)
    wl.relu(x).backward(wl.tensor(g0))                           # first order: fused kernel
    # a selection, no arithmetic: identical bits
    np.testing.assert_array_equal(x.grad.numpy(), np.where(x0 > 0, g0, 0))
    # second order goes through the tensor rule and still agrees
    x2 = wl.tensor(x0, requires_grad=True)
    (gx,) = wl.autograd.grad(wl.relu(x2), [x2], grad_outputs=wl.tensor(g0), create_graph=True)
    np.testing.assert_array_equal(gx.numpy(), np.where(x0 > 0, g0, 0))


def _page_faults_script():
    return (
        "import resource, numpy as np, wonderland\n"
        "def step():\n"
        "    arrays = [np.ones(3 << 20, np.float32) for _ in range(4)]\n"   # 4 x 12 MiB
        "    return sum(float(a[-1]) for a in arrays)\n"
        "step(); step()\n"
        "r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(5): step()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 5)\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")
def test_freed_memory_is_reused_without_page_faults():
    from wonderland.backend import memory

    if not memory.allocator_settings():
        pytest.skip("not the GNU C library")
    env = dict(os.environ)
    faults = {}
    for setting in ("1", "0"):
        env[memory.MALLOC_TUNING_ENV] = setting
        out = subprocess.run([sys.executable, "-c", _page_faults_script()], env=env,
                             capture_output=True, text=True, check=True).stdout
        faults[setting] = float(out.strip().splitlines()[-1])
    # four 12 MiB arrays: the default allocator maps them afresh every step (about 2,000
    # faults a step on the development machine; fewer where huge pages are on), with the
    # settings the freed heap is reused
    assert faults["1"] < 200, faults
    assert faults["1"] <= faults["0"], faults


def test_profile_times_primitives_forward_and_backward():
    x = wl.tensor(np.random.default_rng(3).standard_normal((50, 40)).astype(np.float32),
                  requires_grad=True)
    with wl.profile() as prof:
        wl.relu(x @ x.T).sum().backward()
    names = {(name, phase) for name, phase, _, _ in prof.rows()}
    assert ("matmul", "forward") in names and ("relu", "forward") in names
    assert ("relu", "backward") in names                        # the rule, timed per node
    assert any(n.startswith("matmul/") and p == "backward" for n, p in names)
    assert prof.wall > 0 and 0 < prof.primitive_seconds() <= prof.wall * 1.01
    assert "(outside primitives)" in prof.table()
    # leaving the block restores the untimed functions
    assert not hasattr(structural.SUM.forward, "__wrapped__")
    with pytest.raises(ValueError, match="per must be a positive integer"):
        prof.table(per=0)


def test_profile_times_the_steps_of_a_jit_program():
    x = wl.tensor(np.random.default_rng(4).standard_normal((30, 20)).astype(np.float32))
    f = wl.jit(lambda a: wl.relu(a @ a.T).sum())
    f(x)
    f(x)                                          # traced and checked: now replays only
    with wl.profile() as prof:
        for _ in range(3):
            f(x)
    rows = {(name, phase): calls for name, phase, calls, _ in prof.rows()}
    assert rows[("matmul", "jit")] == 3 and rows[("relu", "jit")] == 3
    assert not any(phase == "forward" for _, phase in rows)   # nothing ran eagerly
    from wonderland.core import tracing
    assert tracing.PROFILE[0] is None                          # switched off on leaving


@pytest.mark.skipif(not KERNELS, reason="compiled kernels are off")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,index_shape,trailing", [
    (80, (16, 128), (32,)),          # an embedding's gradient: ids (batch, time)
    (7, (50,), ()),                  # one value per index
    (5, (3, 4), (2, 3)),             # several trailing axes
])
def test_add_at_row_scatter_equals_numpy_add_at(rows, index_shape, trailing, dtype):
    from wonderland.ops import indexing

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows,) + trailing).astype(dtype)
    idx = rng.integers(-rows, rows, index_shape)            # repeats and negative indices
    v = rng.standard_normal(index_shape + trailing).astype(dtype)
    want = x.copy()
    np.add.at(want, idx, v)
    out = x.copy()
    # the same additions into each row, in the order of the indices, as np.add.at: identical
    assert indexing._add_rows(out, (idx,), v)                 # the compiled path ran
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    got = wl.add_at(wl.tensor(x), wl.tensor(idx), wl.tensor(v)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_add_at_row_scatter_leaves_other_cases_to_numpy():
    from wonderland.ops import indexing

    out = np.zeros((4, 3), np.float32)
    v = np.ones((2, 3), np.float32)
    assert not indexing._add_rows(out, (np.array([0, 4]),), v)          # out of range
    assert not indexing._add_rows(out, (np.array([0, 1]), slice(None)), v)   # two parts
    assert not indexing._add_rows(out, (np.array([0, 1]),), np.ones(3, np.float32))  # broadcast
    assert not indexing._add_rows(out, (np.array([0, 1]),), v.astype(np.float64))
    assert not out.any()
    with pytest.raises(IndexError, match="out of bounds|add_at"):
        wl.add_at(wl.zeros((4, 3)), wl.tensor([0, 4]), wl.ones((2, 3)))


def test_embedding_gradient_through_the_row_scatter_equals_one_hot_product():
    rng = np.random.default_rng(1)
    emb = wl.nn.Embedding(11, 6)
    ids = rng.integers(0, 11, (4, 9))
    g = rng.standard_normal((4, 9, 6)).astype(np.float32)
    (emb(wl.tensor(ids)) * wl.tensor(g)).sum().backward()
    want = np.eye(11, dtype=np.float64)[ids.reshape(-1)].T @ g.reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(emb.weight.grad.numpy(), want, rtol=1e-5, atol=1e-6)


_EXTREMES = [-1e4, -100.0, -88.0, -20.0, -0.0, 0.0, 20.0, 100.0, 1e4, np.nan, np.inf, -np.inf]


def _wide_inputs(dtype, n=20000):
    x = np.random.default_rng(5).standard_normal(n) * 30
    return np.concatenate([x, _EXTREMES]).astype(dtype)


def test_float32_sigmoid_composition_equals_scipy_expit():
    import scipy.special as sp
    from wonderland import backend

    x = _wide_inputs(np.float32)
    assert x.size >= backend._EXPIT_MIN                       # the composition runs
    with np.errstate(over="raise"):                           # nothing overflows
        got = wl.sigmoid(wl.tensor(x)).numpy()
    ref = sp.expit(x.astype(np.float64))
    assert got.dtype == np.float32
    normal = ref > np.finfo(np.float32).tiny
    np.testing.assert_allclose(got[normal], ref[normal], rtol=4e-7)
    np.testing.assert_allclose(got[~normal & ~np.isnan(ref)], ref[~normal & ~np.isnan(ref)],
                               atol=1e-44)
    assert np.isnan(got[np.isnan(x)]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_composition_equals_logaddexp(dtype):
    x = _wide_inputs(dtype)
    with np.errstate(over="raise"):
        got = wl.softplus(wl.tensor(x)).numpy()               # no threshold: the primitive
    with np.errstate(invalid="ignore"):                       # logaddexp(0, nan)
        ref = np.logaddexp(0, x.astype(np.float64))
    assert got.dtype == dtype
    finite = np.isfinite(ref) & (ref > np.finfo(dtype).tiny)
    # three roundings (exp, log1p, add) against logaddexp's, and libm's last bit differs between
    # machines (SIMD or scalar exp/log): float64 within 9 ulps (2e-15)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=4e-7 if dtype == np.float32 else 2e-15)
    np.testing.assert_array_equal(got[np.isinf(x)], np.where(x[np.isinf(x)] > 0, np.inf, 0.0))
    assert np.isnan(got[np.isnan(x)]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((16, 128, 4, 16, 16), 1), ((300, 256), 0),
                                        ((7, 40, 64), 0), ((5, 300, 70), 1)])
def test_cumsum_by_steps_is_numpy_cumsum_bit_for_bit(shape, axis, dtype):
    from wonderland.ops import reductions

    x = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    assert x.size // shape[axis] >= reductions._CUMSUM_SLAB          # the step path runs
    # the step path adds slab after slab along the axis, as np.cumsum does: the same sums
    np.testing.assert_array_equal(reductions._cumsum_forward(x, axis=axis),
                                  np.cumsum(x, axis=axis))
    flipped = np.flip(x, axis)                                        # a strided view
    np.testing.assert_array_equal(reductions._cumsum_forward(flipped, axis=axis),
                                  np.cumsum(flipped, axis=axis))
    got = wl.cumsum(wl.tensor(x), axis).numpy()
    np.testing.assert_array_equal(got, np.cumsum(x, axis=axis))
