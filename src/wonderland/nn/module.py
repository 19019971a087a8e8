"""``Module`` and ``Parameter``: layers that register their parameters by attribute.

As in PyTorch: assigning a :class:`Parameter` or a :class:`Module` to an attribute
registers it; ``parameters()``, ``named_parameters()``, ``state_dict()``,
``load_state_dict()``, ``train()``/``eval()`` and ``zero_grad()`` walk the tree.
:func:`functional_call` runs a module with parameters taken from a dict, so that
``wl.grad`` can differentiate a loss with respect to them (JAX style).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, namedtuple

import numpy as np

from ..core import dtypes
from ..core.modes import get_state
from ..core.structural import zeros_like
from ..core.tensor import Tensor, to_array
from .torch_port import load_torch_state_dict

# bumped by every change to any module's attributes, parameters, buffers, sub-modules or
# mode: a jit program compares it to see at once that no module it depends on changed
_EPOCH = [0]
_PLAIN_ATTRIBUTE = (bool, int, float, complex, str, bytes, type(None), tuple, Tensor)


class Parameter(Tensor):
    """A tensor that is a module's learnable parameter (``requires_grad=True``).

    It owns a writeable copy of its data, which optimisers update in place.
    """

    __slots__ = ()

    def __init__(self, data, requires_grad=True, dtype=None):
        arr = to_array(data.data if isinstance(data, Tensor) else data, dtype)
        if arr.dtype.kind != "f":
            arr = arr.astype(dtypes.get_default_dtype())
        super().__init__(arr.copy(), requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter(" + super().__repr__()[len("tensor("):]


def _own_writeable(t: Tensor) -> None:
    """Give ``t`` a writeable array of its own if its data is a read-only view."""
    if not getattr(t.data, "flags", None) or t.data.flags.writeable:
        return
    t.data = t.data.copy()
    t.bump_version()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model.

    Subclasses set their parameters and sub-modules as attributes in ``__init__`` and
    define ``forward``; calling the module calls ``forward``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning attribute {name!r}")
        _EPOCH[0] += 1
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            self.__dict__.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            self.__dict__.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} "
                                f"to parameter {name!r} (expected a Parameter or None)")
            params[name] = value
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} "
                                f"to buffer {name!r} (expected a Tensor or None)")
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} "
                                f"to sub-module {name!r}")
            modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        _EPOCH[0] += 1
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: expected a Parameter, got {type(param).__name__}")
        _EPOCH[0] += 1
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register state that is not learned (e.g. running statistics)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: expected a Tensor, got {type(tensor).__name__}")
        _EPOCH[0] += 1
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: expected a Module, got {type(module).__name__}")
        _EPOCH[0] += 1
        self._modules[name] = module

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        trace = get_state().trace
        if trace is not None:            # wl.jit is recording: its program depends on us
            trace.guards.watch(self)
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ jit guards
    def _jit_state(self) -> tuple:
        """What a traced program of this module relies on besides its parameters' values:
        the mode, which parameters, buffers and sub-modules it has, its plain attributes
        (``p``, ``eps``...), as a flat tuple ``(training, key, value, key, value...)``
        (see ``wonderland.core.guards``)."""
        state = [self.training]
        for kind, store in (("parameter", self._parameters), ("buffer", self._buffers),
                            ("sub-module", self._modules)):
            for name, value in store.items():
                state += (f"{kind} {name!r}", value)
        for name, value in self.__dict__.items():
            if isinstance(value, _PLAIN_ATTRIBUTE) and name != "training":
                state += (f"attribute {name!r}", value)
        return tuple(state)

    def _jit_explain(self, snapshot) -> str:
        """What changed since ``snapshot`` (a ``_jit_state()``), in words."""
        what = type(self).__name__
        if snapshot[0] != self.training:
            return f"{what} was switched to {'training' if self.training else 'eval'} mode"
        then = dict(zip(snapshot[1::2], snapshot[2::2]))
        now = self._jit_state()
        now = dict(zip(now[1::2], now[2::2]))
        for key in list(then) + [k for k in now if k not in then]:
            if key not in now:
                return f"{what}'s {key} was removed"
            if key not in then:
                return f"{what} has a new {key}"
            if now[key] is not then[key]:
                return f"{what}'s {key} was replaced or changed"
        return f"{what} changed"

    @staticmethod
    def _jit_epoch() -> int:
        return _EPOCH[0]

    def _jit_watch(self):
        return self.modules()

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def num_parameters(self) -> int:
        """Total number of learnable scalars."""
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True):
        """Training mode (dropout active, batch statistics); returns self."""
        _EPOCH[0] += 1
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Inference mode; returns self."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = zeros_like(p)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def apply(self, fn):
        """Call ``fn`` on every sub-module (children first) and on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, dtype):
        """Convert floating parameters and buffers to ``dtype`` in place; returns self."""
        d = dtypes.as_dtype(dtype)
        if d.kind != "f":
            raise TypeError(f"Module.to: expected a floating dtype, got {d}")
        for m in self.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is not None and t.data.dtype.kind == "f" and t.data.dtype != d:
                        t.data = t.data.astype(d)       # a new array: saved values notice
                        t.bump_version()
                        if t.grad is not None:
                            t.grad = t.grad.astype(d)
        return self

    def double(self):
        return self.to(dtypes.float64)

    def float(self):
        return self.to(dtypes.float32)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Parameters and persistent buffers by dotted name (sharing their data)."""
        out = OrderedDict()
        for mprefix, m in self.named_modules():
            for name, p in m._parameters.items():
                if p is not None:
                    out[f"{mprefix}.{name}" if mprefix else name] = p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[f"{mprefix}.{name}" if mprefix else name] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values from ``state_dict`` into this module's parameters and buffers.

        With ``strict`` every key must match; shapes must always match. Every entry is
        checked before any is copied, so a mismatch leaves the module unchanged.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        own = {}
        for mprefix, m in self.named_modules():
            for store in (m._parameters, m._buffers):
                for name, t in store.items():
                    if t is not None and not (store is m._buffers and name in m._non_persistent):
                        own[f"{mprefix}.{name}" if mprefix else name] = t
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(f"load_state_dict: {'; '.join(parts)}")
        updates = []
        for k, t in own.items():                   # check everything, then copy: all or nothing
            if k not in state_dict:
                continue
            v = state_dict[k]
            shape = tuple(v.shape) if isinstance(v, Tensor) else np.shape(v)
            dtype = v.dtype if isinstance(v, Tensor) else np.asarray(v).dtype
            if shape != t.shape:
                raise ValueError(f"load_state_dict: shape mismatch for {k!r}: the state has "
                                 f"{shape}, the module has {t.shape}")
            if not np.can_cast(dtype, t.dtype, "same_kind"):
                raise TypeError(f"load_state_dict: {k!r} has dtype {dtype} in the state, "
                                f"which cannot be stored in the module's {t.dtype}")
            updates.append((t, v))
        for t, v in updates:
            _own_writeable(t)
            t.copy_(v)                              # in place, bumping the version
        return IncompatibleKeys(missing, unexpected)

    def load_torch_state_dict(self, state, strict: bool = True):
        """Load a PyTorch ``state_dict`` (a dict of torch tensors or arrays, or the path of
        a safetensors file) into this twin of the torch model, converting layouts
        (``Linear`` transposed, convolution kernels to channels last, ...); unmappable
        keys are refused by name. See :mod:`wonderland.nn.torch_port`."""
        return load_torch_state_dict(self, state, strict=strict)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}({extra}" if extra else f"{type(self).__name__}("
        return head + "\n  " + "\n  ".join(lines) + "\n)"


@contextlib.contextmanager
def swapped(module: Module, values: dict):
    """Temporarily replace parameters/buffers named in ``values`` (dotted names)."""
    lookup = dict(module.named_modules())
    saved = []
    try:
        for name, value in values.items():
            owner, _, attr = name.rpartition(".")
            m = lookup.get(owner)
            if m is None or (attr not in m._parameters and attr not in m._buffers):
                raise KeyError(f"functional_call: {type(module).__name__} has no parameter or "
                               f"buffer named {name!r}")
            store = m._parameters if attr in m._parameters else m._buffers
            if not isinstance(value, Tensor):
                value = Tensor(value)
            saved.append((store, attr, store[attr]))
            store[attr] = value
        yield
    finally:
        for store, attr, old in reversed(saved):
            store[attr] = old


def functional_call(module: Module, params: dict, *args, **kwargs):
    """Call ``module(*args, **kwargs)`` with its parameters (and buffers) replaced by the
    tensors in ``params`` (dotted names, as in ``named_parameters()``)::

        params = dict(model.named_parameters())
        grads = wl.grad(lambda p: loss(wl.nn.functional_call(model, p, x), y))(params)
    """
    with swapped(module, params):
        return module(*args, **kwargs)
