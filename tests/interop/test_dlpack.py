"""DLPack: ``wl.from_dlpack`` and ``Tensor.__dlpack__`` share memory with NumPy and torch
(and JAX/CuPy where installed) both ways; read-only memory stays read-only, the export
copying it (``copy=False`` refuses)."""

import numpy as np
import pytest

import wonderland as wl


def shares(a, b):
    return np.shares_memory(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- NumPy
def test_numpy_to_wonderland_shares_memory():
    a = np.arange(6.0).reshape(2, 3)
    t = wl.from_dlpack(a)
    assert t.shape == (2, 3) and t.dtype == np.float64
    a[0, 0] = 42.0
    assert t.numpy()[0, 0] == 42.0


def test_wonderland_to_numpy_shares_memory():
    t = wl.tensor(np.arange(4, dtype=np.float32))
    assert t.__dlpack_device__() == (1, 0)
    n = np.from_dlpack(t)
    assert n.flags.writeable
    n[1] = -1.0
    np.testing.assert_array_equal(t.numpy(), [0, -1, 2, 3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.bool_,
                                   np.uint8])
def test_dtypes_survive_the_round_trip(dtype):
    a = (np.arange(5) % 2).astype(dtype)
    back = np.from_dlpack(wl.from_dlpack(a))
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, a)


def test_strided_views_cross_without_copies():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    base = wl.tensor(np.arange(12.0, dtype=np.float32).reshape(3, 4))
    view = base.T
    out = torch.from_dlpack(view)
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out.numpy(), base.numpy().T)


def test_copy_true_copies():
    a = np.arange(3.0)
    t = wl.from_dlpack(a, copy=True)
    a[0] = 9.0
    assert t.numpy()[0] == 0.0
    n = np.from_dlpack(wl.from_dlpack(a), copy=True)
    n[1] = 7.0
    assert a[1] == 1.0


# ----------------------------------------------------------------------------- read-only
def test_read_only_memory_stays_read_only():
    a = np.arange(3.0)
    a.flags.writeable = False
    t = wl.from_dlpack(a)                    # a read-only source: a read-only tensor
    assert shares(t, a) and not t.numpy().flags.writeable
    n = np.from_dlpack(t)                    # exported as a copy
    assert not shares(n, a)
    n[0] = 5.0
    assert a[0] == 0.0 and t.numpy()[0] == 0.0
    with pytest.raises(BufferError, match="read-only.*copy=False"):
        t.__dlpack__(copy=False)


def test_read_only_tensor_to_torch_is_a_copy():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    a = np.arange(3.0)
    a.flags.writeable = False
    t = wl.Tensor(a)
    out = torch.from_dlpack(t)
    out[0] = 100.0                           # torch ignores read-only flags: we copied
    assert a[0] == 0.0 and t.numpy()[0] == 0.0


# ----------------------------------------------------------------------------- torch
def test_torch_both_ways():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    src = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    t = wl.from_dlpack(src)
    src[1, 2] = -5.0                         # torch writes, wonderland sees
    assert t.numpy()[1, 2] == -5.0
    w = wl.tensor(np.zeros((2, 2), np.float32))
    view = torch.from_dlpack(w)
    view += 3.0                              # torch writes into wonderland's memory
    np.testing.assert_array_equal(w.numpy(), np.full((2, 2), 3.0))
    assert view.dtype == torch.float32 and tuple(view.shape) == (2, 2)
    y = (wl.from_dlpack(src) * 2).sum()       # ordinary tensors: operations work
    assert float(y) == float(src.sum() * 2)


def test_torch_tensor_that_requires_grad_is_refused_with_a_hint():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    with pytest.raises(BufferError, match=r"torch\.Tensor refused.*x\.detach\(\)"):
        wl.from_dlpack(torch.ones(2, requires_grad=True))


def test_objects_without_dlpack_are_refused():
    with pytest.raises(TypeError, match="from_dlpack: expected an array with __dlpack__.*list"):
        wl.from_dlpack([1.0, 2.0])
    with pytest.raises(TypeError, match="complex128"):
        wl.from_dlpack(np.ones(2, np.complex128))


def test_a_tensor_is_returned_as_is():
    t = wl.tensor([1.0, 2.0])
    assert wl.from_dlpack(t) is t
    assert not shares(wl.from_dlpack(t, copy=True), t)


# ----------------------------------------------------------------------------- others
def test_jax_both_ways():
    jnp = pytest.importorskip("jax.numpy", reason="JAX is not installed")
    j = jnp.arange(4.0)
    t = wl.from_dlpack(j)
    np.testing.assert_array_equal(t.numpy(), np.arange(4.0))
    back = jnp.from_dlpack(wl.tensor(np.arange(3, dtype=np.float32)))
    np.testing.assert_array_equal(np.asarray(back), np.arange(3))


def test_cupy_both_ways():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        c = cupy.arange(4.0)
    except Exception as exc:  # no usable GPU
        pytest.skip(f"CuPy cannot reach a GPU: {exc}")
    t = wl.from_dlpack(c)
    assert t.device == "cuda"
    c[0] = 7.0
    assert float(t[0]) == 7.0
    back = cupy.from_dlpack(t)
    back[1] = 9.0
    assert float(c[1]) == 9.0
