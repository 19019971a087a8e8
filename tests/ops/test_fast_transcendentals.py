"""The float32 transcendental kernels (erf, GELU and its slope, sigmoid, SiLU, softplus)
against SciPy in float64 over the whole float32 range, their plain-Python forms, the
primitives that take them, and the paths taken with the kernels switched off."""

import re

import numpy as np
import pytest
from scipy import special as sp

import wonderland as wl
from wonderland.backend import compiled
from wonderland.ops.kernels import elementwise as one_pass
from wonderland.ops.kernels import special

TINY = np.finfo(np.float32).tiny
SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38],
                   dtype=np.float32)


def _sweep(step=1 << 10):
    """Every ``step``-th float32 bit pattern (all magnitudes, both signs), a dense grid
    over [-12, 12] and N(0, 9) draws: the activations of a network and everything else."""
    allf = np.arange(0, 1 << 32, step, dtype=np.uint64).astype(np.uint32).view(np.float32)
    rng = np.random.default_rng(1)
    return np.concatenate([allf[np.isfinite(allf)], np.linspace(-12, 12, 200001, dtype=np.float32),
                           (rng.standard_normal(200000) * 3).astype(np.float32)])


def _run(kern, *arrays):
    out = np.empty_like(arrays[-1])
    kern(*arrays, out)
    assert out.dtype == np.float32
    return out.astype(np.float64)


_C = np.sqrt(2.0 / np.pi)


def _tanh_arg(x):
    """``2u`` of GELU's tanh form ``½ x (1 + tanh u) = x σ(2u)``, float64."""
    return 2 * _C * (x + 0.044715 * x ** 3)


def _exact(name, x):
    """SciPy/NumPy in float64."""
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        s = sp.expit(x)
        return {"erf": lambda: sp.erf(x),
                "gelu": lambda: 0.5 * x * sp.erfc(-x / np.sqrt(2.0)),
                "gelu_grad": lambda: 0.5 * sp.erfc(-x / np.sqrt(2.0))
                + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi),
                "gelu_tanh": lambda: x * sp.expit(_tanh_arg(x)),
                "gelu_tanh_grad": lambda: sp.expit(_tanh_arg(x)) + 2 * x * sp.expit(_tanh_arg(x))
                * sp.expit(-_tanh_arg(x)) * _C * (1 + 3 * 0.044715 * x * x),
                "sigmoid": lambda: s,
                "silu": lambda: x * s,
                "silu_grad": lambda: s * (1.0 + x * sp.expit(-x)),
                "softplus": lambda: np.logaddexp(0.0, x)}[name]()


def _rel(got, want, where):
    return np.abs(got[where] - want[where]) / np.abs(want[where])


def _check_values(name, got, x):
    """The error bounds of the module's docstring (and of benchmarks/README.md)."""
    want = _exact(name, x)
    finite = np.isfinite(want)
    err = np.abs(got - want)
    normal = finite & (np.abs(want) >= TINY)
    if name == "erf":
        assert err[finite].max() < 5e-7
        assert _rel(got, want, normal).max() < 5e-7
    elif name in ("gelu", "gelu_tanh"):
        # 1 + erf cancels in the negative tail: absolute error, growing with |x| / 2
        assert (err[finite] / np.maximum(np.abs(x[finite]), 1.0)).max() < 3e-7
        pos = normal & (x > 0)
        assert _rel(got, want, pos).max() < 4e-7
    elif name in ("gelu_grad", "gelu_tanh_grad", "silu_grad"):
        assert err[finite].max() < 5e-7
    elif name in ("sigmoid", "softplus"):
        assert _rel(got, want, normal).max() < 4e-7
        assert err[finite & ~normal].max() <= 1.5e-45      # subnormal results
    elif name == "silu":
        # σ(x) itself subnormal below x ≈ -87: absolute error there
        keep = normal & (x > -80)
        assert _rel(got, want, keep).max() < 4e-7
        assert err[finite & ~keep].max() < 1e-37


UNARY = [("erf", "erf_kernel"), ("gelu", "gelu_kernel"), ("gelu_tanh", "gelu_tanh_kernel"),
         ("sigmoid", "sigmoid_kernel"), ("silu", "silu_kernel"), ("softplus", "softplus_kernel")]
WITH_G = [("gelu_grad", "gelu_grad_kernel"), ("gelu_tanh_grad", "gelu_tanh_grad_kernel"),
          ("silu_grad", "silu_grad_kernel"), ("sigmoid", "sigmoid_times_kernel")]
LIMITS = {  # at nan, +inf, -inf
    "erf": (np.nan, 1.0, -1.0), "gelu": (np.nan, np.inf, 0.0), "sigmoid": (np.nan, 1.0, 0.0),
    "silu": (np.nan, np.inf, 0.0), "softplus": (np.nan, np.inf, 0.0),
    "gelu_grad": (np.nan, 1.0, 0.0), "silu_grad": (np.nan, 1.0, 0.0),
    "gelu_tanh": (np.nan, np.inf, 0.0), "gelu_tanh_grad": (np.nan, 1.0, 0.0)}


def _kernel(attr, compiled_form):
    kern = getattr(special, attr)
    return kern.compiled() if compiled_form else kern.py_func


@pytest.mark.skipif(not compiled.ENABLED, reason="numba is not installed")
@pytest.mark.parametrize("name,attr", UNARY + WITH_G, ids=[a for _, a in UNARY + WITH_G])
def test_kernel_equals_scipy_over_the_float32_range(name, attr):
    x = _sweep()
    args = (np.ones_like(x), x) if (name, attr) in WITH_G else (x,)
    _check_values(name, _run(_kernel(attr, True), *args), x)
    got = _run(_kernel(attr, True), *((np.ones_like(SPECIAL), SPECIAL)
                                      if (name, attr) in WITH_G else (SPECIAL,)))
    np.testing.assert_array_equal(got[:3], LIMITS[name])
    if name in ("erf", "gelu", "gelu_tanh", "silu"):
        assert got[3] == 0.0 and got[4] == 0.0


@pytest.mark.parametrize("name,attr", UNARY + WITH_G, ids=[a for _, a in UNARY + WITH_G])
def test_plain_python_form_meets_the_same_bounds(name, attr):
    """What runs without numba (a sample: plain Python is slow)."""
    x = np.concatenate([_sweep(1 << 22), np.linspace(-12, 12, 601, dtype=np.float32)])
    args = (np.ones_like(x), x) if (name, attr) in WITH_G else (x,)
    with np.errstate(over="ignore", under="ignore"):
        got = _run(_kernel(attr, False), *args)
    _check_values(name, got, x)


@pytest.mark.skipif(not compiled.ENABLED, reason="numba is not installed")
@pytest.mark.parametrize("attr", ["erf_kernel", "gelu_kernel", "gelu_grad_kernel",
                                  "gelu_tanh_kernel", "gelu_tanh_grad_kernel",
                                  "sigmoid_kernel", "silu_grad_kernel", "softplus_kernel"])
def test_kernels_compile_to_vector_instructions(attr):
    """No library call stops the loop: LLVM vectorises it (``<8 x float>`` on AVX
    machines; any width counts here)."""
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    ir = getattr(special, attr).llvm_ir(*((x, x) if "grad" in attr else (x,)), np.empty_like(x))
    assert re.search(r"fmul (fast |contract |arcp |afn |nsz )*<\d+ x float>", ir)
    assert not re.search(r"call .*@(erff?|expf?|exp2f?)\(", ir)


# ----------------------------------------------------------------------------- primitives
FUNCS = {"gelu": wl.nn.functional.gelu,
         "gelu_tanh": lambda x: wl.nn.functional.gelu(x, approximate="tanh"),
         "silu": wl.nn.functional.silu,
         "softplus": wl.nn.functional.softplus, "sigmoid": wl.sigmoid, "tanh": wl.tanh,
         "erf": wl.erf}


def _value_and_grad(fn, x, g):
    t = wl.tensor(x, requires_grad=True)
    y = fn(t)
    y.backward(wl.tensor(g))
    return y.numpy(), t.grad.numpy()


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_float32_primitive_and_its_fast_backward_equal_the_float64_reference(name):
    """The float32 forward and first-order backward (kernels on, or off) against the same
    primitive in float64, which takes SciPy's and NumPy's functions and the composite
    rules."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((4, 33, 50)) * 3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    y, dx = _value_and_grad(FUNCS[name], x, g)
    y64, dx64 = _value_and_grad(FUNCS[name], x.astype(np.float64), g.astype(np.float64))
    assert y.dtype == dx.dtype == np.float32
    scale = np.maximum(np.abs(x), 1.0)
    assert (np.abs(y - y64) / scale).max() < 5e-7
    assert (np.abs(dx - dx64) / (np.abs(g) * scale + 1e-30)).max() < 1e-6


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_primitives_with_the_kernels_switched_off(name, monkeypatch):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((5, 40)) * 3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    fast = _value_and_grad(FUNCS[name], x, g)
    monkeypatch.setattr(compiled, "ENABLED", False)
    assert not special.applies(x) and not one_pass.applies(x, x)
    slow = _value_and_grad(FUNCS[name], x, g)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6 * np.abs(x).max())


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "silu", "softplus", "sigmoid", "tanh",
                                  "erf"])
def test_float64_gradients_by_finite_differences(name):
    """Float64 takes the exact functions; the one-pass backward of sigmoid and tanh serves
    float64 too (first order), the composite rules the second."""
    x = wl.tensor(np.random.default_rng(2).uniform(-3, 3, (3, 7)))
    wl.testing.check_grads(FUNCS[name], (x,), order=2)


@pytest.mark.skipif(not compiled.ENABLED, reason="numba is not installed")
def test_the_primitives_take_the_kernels(monkeypatch):
    calls = []
    for attr in ("gelu", "gelu_vjp", "silu", "silu_vjp", "softplus", "softplus_vjp", "sigmoid",
                 "erf"):
        fn = getattr(special, attr)
        monkeypatch.setattr(special, attr,
                            lambda *a, fn=fn, attr=attr: calls.append(attr) or fn(*a))
    for attr in ("sigmoid_backward", "tanh_backward"):
        fn = getattr(one_pass, attr)
        monkeypatch.setattr(one_pass, attr,
                            lambda *a, fn=fn, attr=attr: calls.append(attr) or fn(*a))
    x = wl.tensor(np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6), requires_grad=True)
    for fn in FUNCS.values():
        fn(x).sum().backward()
    assert sorted(calls) == sorted(["gelu", "gelu_vjp", "gelu", "gelu_vjp", "silu", "silu_vjp",
                                    "softplus",
                                    "softplus_vjp", "sigmoid", "sigmoid_backward",
                                    "tanh_backward", "erf"]), calls


def test_one_pass_backward_rules_equal_numpy_bit_for_bit():
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        g = rng.standard_normal((7, 300)).astype(dtype)
        out = rng.uniform(-1, 1, (7, 300)).astype(dtype)
        np.testing.assert_array_equal(one_pass.sigmoid_backward(g, out), g * (out * (1.0 - out)))
        np.testing.assert_array_equal(one_pass.tanh_backward(g, out), g * (1.0 - out * out))
        view = out[:, ::2]                                          # not contiguous
        np.testing.assert_array_equal(one_pass.tanh_backward(g[:, ::2], view),
                                      g[:, ::2] * (1.0 - view * view))


@pytest.mark.skipif(not compiled.ENABLED, reason="numba is not installed")
def test_large_arrays_split_over_threads_equal_one_call():
    x = (np.random.default_rng(9).standard_normal((3, 700, 1000)) * 3).astype(np.float32)
    whole = np.empty_like(x.reshape(-1))
    special.gelu_kernel(x.reshape(-1), whole)
    np.testing.assert_array_equal(special.gelu(x), whole.reshape(x.shape))
    np.testing.assert_array_equal(special.gelu(x[:, ::2]),
                                  special.gelu(np.ascontiguousarray(x[:, ::2])))


@pytest.mark.parametrize("compiled_form", [True, False])
def test_float32_tanh_of_the_recurrent_loops_equals_numpy(compiled_form):
    """The inlined tanh of the LSTM/GRU kernels (NumPy's float32 tanh serves the ``tanh``
    primitive): within 4e-7 absolutely, relative precision kept near 0."""
    if compiled_form and not compiled.ENABLED:
        pytest.skip("numba is not installed")
    fn = special.tanh_f32.compiled() if compiled_form else special.tanh_f32.py_func
    x = np.concatenate([np.linspace(-10, 10, 4001), np.geomspace(1e-30, 1e-2, 200),
                        -np.geomspace(1e-30, 1e-2, 200), [0.0, 40.0, -40.0]]).astype(np.float32)
    got = np.array([fn(v) for v in x], dtype=np.float64)
    want = np.tanh(x.astype(np.float64))
    assert np.abs(got - want).max() < 4e-7
    small = np.abs(x) < 1
    assert (np.abs(got - want)[small] / np.maximum(np.abs(want[small]), 1e-38)).max() < 4e-7
    assert np.isnan(fn(np.float32(np.nan)))
