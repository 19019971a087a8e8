"""Devices: ``Tensor.to(device)``, ``Module.to(device)`` and the transfer primitive.

A tensor's device is the device of its data's backend (``tensor.device``: ``"cpu"`` or
``"cuda"``); there is no separate device field to keep in step. ``x.to("cuda")`` is an
operation like any other — a primitive whose VJP moves the cotangent back — so a loss
computed on the GPU from a CPU leaf still sends the gradient to the CPU leaf::

    x = wl.tensor(data, requires_grad=True)      # on the CPU
    y = (x.to("cuda") ** 2).sum()                # computed on the GPU
    y.backward()                                 # x.grad is on the CPU

``module.to("cuda")`` moves parameters and buffers in place (the same Parameter objects,
their data replaced), so build the optimiser after moving the model, as in PyTorch;
optimiser state is then made on the parameters' device. ``module.to(dtype)`` keeps its
meaning, and ``to`` accepts both (``to("cuda", wl.float64)``).

Operations need their inputs on one device: mixing raises ``wl.backend.
DeviceMismatchError`` naming both devices on backends that check (the stand-in device
of the tests) and a ``TypeError`` from CuPy otherwise.

This module installs ``Tensor.to`` and wraps ``Module.to`` when wonderland is imported
(the way ``ops/methods.py`` installs the tensor methods).
"""

from __future__ import annotations

from . import backend as B
from .core import dtypes
from .core.primitive import Primitive, apply
from .core.tensor import Tensor
from .nn.module import Module

__all__ = ["to", "device_of", "is_available", "synchronize"]


def _transfer_forward(x, *, device, source):
    return B.for_device(device).from_other(x)


def _transfer_vjp(g, out, x, *, device, source):
    return apply(_TRANSFER, (g,), {"device": source, "source": device})


def _transfer_batch(args, axes, **params):
    return apply(_TRANSFER, (args[0],), params), axes[0]


_TRANSFER = Primitive("to_device", _transfer_forward, vjp=_transfer_vjp, linear=True,
                      save=(), batch=_transfer_batch)


def device_of(x) -> str:
    """The device of a tensor or array (``"cpu"``, ``"cuda"``)."""
    if isinstance(x, Tensor):
        return x.device
    return B.backend_of(x).device


def _parse(args, kwargs, what):
    """``(device or None, dtype or None)`` from ``to``'s arguments, in any order; a string
    that names neither a device nor a dtype is an error listing the devices."""
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"{what}: unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, str) and a.partition(":")[0] in ("cpu", "cuda"):
            device = a
        elif isinstance(a, str):
            try:
                dtype = dtypes.as_dtype(a)
            except TypeError:
                raise ValueError(f"{what}: unknown device {a!r} (and not a dtype); the devices "
                                 f"are 'cpu', 'cuda' and 'cuda:N'") from None
        elif a is not None:
            dtype = a
    if device is not None:
        kind, index = B.parse_device(device)
        if kind == "cuda" and index is not None:
            current = B.for_device(device).device_index()
            if index != current:
                raise ValueError(f"{what}: {device!r} is not the current CUDA device "
                                 f"(cuda:{current}); wonderland puts arrays on the current "
                                 f"device: select it first with cupy.cuda.Device({index}).use()")
    return device, (dtypes.as_dtype(dtype) if dtype is not None else None)


def to(x: Tensor, *args, **kwargs) -> Tensor:
    """``x`` on another device and/or with another dtype: ``x.to("cuda")``,
    ``x.to("cpu")``, ``x.to(wl.float64)``, ``x.to("cuda", wl.float16)``, ``x.to(other)``
    (``other``'s device and dtype). Returns ``x`` itself when nothing changes;
    differentiable (the gradient goes back to ``x``'s device and dtype)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"to: expected a tensor, got {type(x).__name__}")
    device, dtype = _parse(args, dict(kwargs), "Tensor.to")
    out = x
    if dtype is not None and out.dtype != dtype:
        out = out.astype(dtype)
    if device is not None:
        target = B.for_device(device)
        here = B.backend_of(out.data if out._batch is None else _physical(out).data)
        if here is not target:
            out = apply(_TRANSFER, (out,), {"device": target.device, "source": here.device})
    return out


def _physical(t):
    while t._batch is not None:
        t = t._batch[1]
    return t


_module_to_dtype = Module.to


def _module_to(self, *args, **kwargs):
    """Move floating parameters and buffers to a device and/or dtype, in place; returns
    self: ``model.to("cuda")``, ``model.to(wl.float64)``, ``model.to("cuda",
    wl.float32)``. Build the optimiser after moving the model."""
    device, dtype = _parse(args, dict(kwargs), "Module.to")
    if dtype is not None:
        _module_to_dtype(self, dtype)
    if device is None:
        return self
    target = B.for_device(device)
    for m in self.modules():
        for store in (m._parameters, m._buffers):
            for t in store.values():
                if t is None or B.backend_of(t.data) is target:
                    continue
                t.data = target.from_other(t.data)      # a new array: saved values notice
                t.bump_version()
                if t.grad is not None:
                    t.grad = to(t.grad, device)
    return self


def _install():
    Tensor.to = to
    Module.to = _module_to


def is_available() -> bool:
    """Whether a CUDA device can be used (CuPy installed and a GPU present)."""
    from .backend.cupy_backend import unavailable_reason

    return unavailable_reason() is None


def synchronize() -> None:
    """Wait for queued GPU work to finish (a no-op on the CPU)."""
    from .backend.cupy_backend import synchronize as sync

    sync()


_install()
