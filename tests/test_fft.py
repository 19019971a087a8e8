"""Fourier transforms on real/imaginary pairs: values against NumPy, the DFT primitive's
Jacobians in both modes and at second order, vmap against a loop."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.core import vmap

from conftest import check_primitive


def _c(pair):
    return pair[0].numpy() + 1j * pair[1].numpy()


def test_values_match_numpy(rng):
    x = rng.standard_normal((3, 8))
    y = rng.standard_normal((3, 8))
    np.testing.assert_allclose(_c(wl.fft.fft(x, y)), np.fft.fft(x + 1j * y), atol=1e-12)
    np.testing.assert_allclose(_c(wl.fft.ifft(x, y, axis=0)), np.fft.ifft(x + 1j * y, axis=0), atol=1e-12)
    np.testing.assert_allclose(_c(wl.fft.fft2(x)), np.fft.fft2(x), atol=1e-12)
    np.testing.assert_allclose(_c(wl.fft.fft(x, norm="ortho")), np.fft.fft(x, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(_c(wl.fft.rfft(x)), np.fft.rfft(x), atol=1e-12)
    for n in (8, 7):
        X = np.fft.rfft(rng.standard_normal((2, n)))
        np.testing.assert_allclose(wl.fft.irfft(X.real, X.imag, n=n).numpy(), np.fft.irfft(X, n), atol=1e-12)
    z = rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(_c(wl.fft.fftn(z, axes=(0, 2))), np.fft.fftn(z, axes=(0, 2)), atol=1e-12)


@pytest.mark.parametrize("fn", [
    lambda a, b: wl.fft.fft(a, b),
    lambda a, b: wl.fft.ifft(a, b, axis=0, norm="ortho"),
    lambda a, b: wl.fft.fft2(a, b, norm="forward"),
])
def test_dft_gradients(rng, fn):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    check_primitive(lambda a, b: wl.stack(list(fn(a, b))), a, b)


def test_real_transform_gradients(rng):
    x = rng.standard_normal((2, 6))
    check_primitive(lambda x: wl.stack(list(wl.fft.rfft(x))), x)
    X = np.fft.rfft(rng.standard_normal((2, 7)))
    check_primitive(lambda r, i: wl.fft.irfft(r, i, n=7), X.real, X.imag)


def test_vmap_equals_loop(rng):
    x = wl.tensor(rng.standard_normal((4, 3, 5)))
    f = lambda v: wl.fft.fft2(v)[1]  # noqa: E731
    np.testing.assert_allclose(vmap(f)(x).numpy(), np.stack([f(x[i]).numpy() for i in range(4)]),
                               atol=1e-12)
    g = vmap(wl.grad(lambda v: (wl.fft.rfft(v)[0] ** 2).sum()))(x)
    loop = np.stack([wl.grad(lambda v: (wl.fft.rfft(v)[0] ** 2).sum())(x[i]).numpy() for i in range(4)])
    np.testing.assert_allclose(g.numpy(), loop, atol=1e-10)


def test_errors():
    with pytest.raises(ValueError, match="fftn: real part"):
        wl.fft.fft(wl.zeros((3,)), wl.zeros((4,)))
    with pytest.raises(ValueError, match="norm must be"):
        wl.fft.fft(wl.zeros((3,)), norm="bad")


def test_fused_tanh_gelu_under_vmap_equals_a_loop(rng):
    from wonderland.nn.functional import gelu

    x = wl.tensor(rng.standard_normal((3, 4)) * 2)
    looped = wl.stack([gelu(x[i], approximate="tanh") for i in range(3)])
    got = vmap(lambda v: gelu(v, approximate="tanh"))(x)
    np.testing.assert_allclose(got.numpy(), looped.numpy(), atol=1e-14)

