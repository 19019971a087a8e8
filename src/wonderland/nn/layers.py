"""Basic layers: Linear, Embedding, Identity, Flatten, Dropout, MLP, and the
activation modules. Each is the module form of a function in ``nn.functional``."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core import dtypes
from . import activations as A
from .dense import embedding, linear
from .dropout import dropout
from . import init
from .containers import Sequential
from .module import Module, Parameter


class Linear(Module):
    """``y = x @ weight + bias`` with ``weight`` of shape (in_features, out_features).

    Initialised like PyTorch: weight and bias uniform in ±1/sqrt(in_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None,
                 generator=None):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear: feature counts must be positive, got ({in_features}, "
                             f"{out_features})")
        self.in_features = in_features
        self.out_features = out_features
        d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = Parameter(np.zeros((in_features, out_features), d))
        init.uniform_(self.weight, -bound, bound, generator)
        if bias:
            self.bias = Parameter(np.zeros(out_features, d))
            init.uniform_(self.bias, -bound, bound, generator)
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        shape = getattr(x, "shape", None)
        if shape is not None and (len(shape) == 0 or shape[-1] != self.in_features):
            got = "a scalar" if len(shape) == 0 else f"shape {tuple(shape)}"
            raise ValueError(f"Linear(in_features={self.in_features}, out_features="
                             f"{self.out_features}): expected an input of shape (..., "
                             f"{self.in_features}) (features last), got {got}")
        return linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim`` (N(0, 1) init)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, dtype=None,
                 generator=None):
        super().__init__()
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError("Embedding: sizes must be positive")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        if padding_idx is not None and padding_idx < 0:
            padding_idx += num_embeddings
        self.padding_idx = padding_idx
        d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        self.weight = Parameter(np.zeros((num_embeddings, embedding_dim), d))
        init.normal_(self.weight, 0.0, 1.0, generator)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, indices):
        return embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}" + \
            (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class Identity(Module):
    """Returns its input."""

    def forward(self, x):
        return x


class Flatten(Module):
    """Merge axes ``start_axis..end_axis`` (default: all but the batch axis)."""

    def __init__(self, start_axis: int = 1, end_axis: int = -1):
        super().__init__()
        self.start_axis, self.end_axis = start_axis, end_axis

    def forward(self, x):
        return ops.flatten(x, self.start_axis, self.end_axis)


class Dropout(Module):
    """Inverted dropout with probability ``p`` (active only in training mode)."""

    def __init__(self, p: float = 0.5, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def forward(self, x):
        return dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


def _activation(name, fn, doc, params=()):
    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        values = dict(zip([p for p, _ in params], args))
        values.update(kwargs)
        for p, default in params:
            object.__setattr__(self, p, values.pop(p, default))
        if values:
            raise TypeError(f"{name}: unexpected arguments {sorted(values)}")

    def forward(self, x):
        return fn(x, **{p: getattr(self, p) for p, _ in params})

    def extra_repr(self):
        return ", ".join(f"{p}={getattr(self, p)!r}" for p, _ in params)

    return type(name, (Module,), {"__init__": __init__, "forward": forward,
                                  "extra_repr": extra_repr, "__doc__": doc})


ReLU = _activation("ReLU", lambda x: A.relu(x), "``max(x, 0)``.")
LeakyReLU = _activation("LeakyReLU", A.leaky_relu, "Leaky ReLU.", (("negative_slope", 0.01),))
Softplus = _activation("Softplus", A.softplus, "Softplus.", (("beta", 1.0), ("threshold", 20.0)))
ELU = _activation("ELU", A.elu, "Exponential linear unit.", (("alpha", 1.0),))
GELU = _activation("GELU", A.gelu, "Gaussian error linear unit.", (("approximate", "none"),))
SiLU = _activation("SiLU", A.silu, "``x * sigmoid(x)``.")
Sigmoid = _activation("Sigmoid", lambda x: A.sigmoid(x), "Logistic sigmoid.")
Tanh = _activation("Tanh", lambda x: A.tanh(x), "Hyperbolic tangent.")
Softmax = _activation("Softmax", lambda x, axis, dim: A.softmax(x, axis if dim is None else dim),
                      "Softmax along ``axis`` (or PyTorch's ``dim``).", (("axis", -1), ("dim", None)))
LogSoftmax = _activation("LogSoftmax", lambda x, axis, dim: A.log_softmax(x, axis if dim is None else dim),
                         "Log-softmax along ``axis`` (or ``dim``).", (("axis", -1), ("dim", None)))

ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "softplus": Softplus, "elu": ELU,
               "gelu": GELU, "silu": SiLU, "sigmoid": Sigmoid, "tanh": Tanh,
               "identity": Identity}


def activation(name: str) -> Module:
    """An activation module by name (``"relu"``, ``"gelu"``, ...)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation: unknown name {name!r}; known: {sorted(ACTIVATIONS)}") from None


_make_activation = activation


class MLP(Sequential):
    """A fully-connected network: ``MLP([in, hidden..., out], activation="relu")``.

    Linear layers with the activation (and optional dropout) between them; the last
    layer is linear unless ``output_activation`` is given.
    """

    def __init__(self, sizes, activation="relu", dropout=0.0, bias=True,
                 output_activation=None, generator=None):
        sizes = list(sizes)
        if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
            raise ValueError(f"MLP: sizes must list at least two positive widths, got {sizes}")
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(a, b, bias=bias, generator=generator))
            if i < len(sizes) - 2:
                layers.append(_make_activation(activation) if isinstance(activation, str)
                              else activation())
                if dropout:
                    layers.append(Dropout(dropout, generator))
        if output_activation is not None:
            layers.append(_make_activation(output_activation))
        super().__init__(*layers)
        self.sizes = sizes
