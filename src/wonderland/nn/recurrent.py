"""Classic recurrent layers with PyTorch's semantics: ``RNN``, ``GRU``, ``LSTM`` and their
cells, in this library's ``(in, out)`` weight layout.

* Parameters are named like PyTorch's (``weight_ih_l0``, ``weight_hh_l0``,
  ``bias_ih_l0``, ``bias_hh_l0``, ``_reverse`` for the backward direction), laid out
  ``(in, out)``: ``weight_ih_l0`` is ``(input_size, gates·hidden)``, ``weight_hh_l0`` is
  ``(hidden, gates·hidden)``, with the gates in PyTorch's order (LSTM ``i, f, g, o``; GRU
  ``r, z, n``). Copy PyTorch weights in by transposing them.
* Initialisation: every weight and bias uniform in ±1/sqrt(hidden_size), as PyTorch.
* ``forward(x, hx=None, lengths=None, mask=None)``: ``x`` is ``(N, T, C)`` with
  ``batch_first=True`` (the default here: sequences are channels-last ``(b, t, c)``), or
  ``(T, N, C)``; an unbatched ``(T, C)`` works too. Returns ``(output, h_n)`` — for the
  LSTM ``(output, (h_n, c_n))`` — with ``output`` ``(N, T, D·H)`` (or ``(T, N, D·H)``)
  and the states ``h_0``, ``c_0``, ``h_n``, ``c_n`` always ``(D·num_layers, N, H)``
  whatever ``batch_first`` says, exactly as PyTorch. ``D`` is 2 when bidirectional.
* Variable lengths: ``lengths`` (one per sequence) or a boolean ``mask`` ``(N, T)`` of
  the valid steps (a prefix of each row). Outputs past a sequence's end are zero and
  ``h_n`` holds the state at each sequence's end; the backward direction starts at each
  sequence's own last step (PyTorch's packed sequences).
* dtypes: the input and the initial states must have the weights' dtype, float32 or
  float64 (an error naming both otherwise, as in PyTorch); ``layer.double()`` or
  ``layer.to(wl.float64)`` makes a float64 layer.
* Each layer and direction is one fused primitive over the whole sequence
  (``ops/recurrence.py``): its VJP runs backpropagation through time itself.
* Truncated backpropagation through time: carry the returned state into the next chunk
  through :func:`detach_state` (values kept, graph cut); :func:`truncated_chunks` cuts a
  long stream into such chunks.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core import dtypes
from ..core.tensor import Tensor
from ..core.tracing import record_call
from ..ops.arguments import to_tensor
from ..ops.recurrence import GATES, cell_step, recurrent_layer
from . import functional as F
from . import init
from .module import Module, Parameter


def _kind(mode, nonlinearity="tanh"):
    if mode == "rnn":
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        return f"rnn_{nonlinearity}"
    return mode


def detach_state(state):
    """A recurrent state (a tensor or a tuple of them) with its values kept and its graph
    cut: the link between chunks of truncated backpropagation through time."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state.detach()


def truncated_chunks(x, length, axis=1):
    """Consecutive chunks of ``length`` steps of a long sequence ``x`` along ``axis``
    (the last one may be shorter): feed them in order, passing the detached state on."""
    x = to_tensor(x, "truncated_chunks")
    if length < 1:
        raise ValueError(f"truncated_chunks: length must be positive, got {length}")
    n = x.shape[axis]
    for start in range(0, n, length):
        yield x[(slice(None),) * axis + (slice(start, min(start + length, n)),)]


def _check_lengths(lens, *, t, what):
    if lens.min() < 0 or lens.max() > t:
        raise ValueError(f"{what}: lengths must lie in [0, {t}], got {lens.min()}..{lens.max()}")


def _same_dtype(t, dtype, what, name):
    """Inputs and states must have the weights' dtype (as in PyTorch): cast the model
    (``.double()``, ``.to(wl.float64)``) or the input, nothing is promoted silently."""
    if t.dtype != dtype:
        fix = f"cast the {'input' if name == 'input' else 'state'} with .astype({dtype})"
        if name == "input" and t.dtype.kind == "f":
            fix += f" or the model with .to({t.dtype})"
        raise TypeError(f"{what}: {name} dtype {t.dtype} does not match the weights' {dtype}; "
                        f"{fix}")


# ----------------------------------------------------------------------------- cells
class _CellBase(Module):
    _mode = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=None,
                 generator=None):
        super().__init__()
        name = type(self).__name__
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"{name}: sizes must be positive, got input_size={input_size}, "
                             f"hidden_size={hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.kind = _kind(self._mode, nonlinearity)
        self.nonlinearity = nonlinearity
        g = GATES[self.kind] * hidden_size
        d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = Parameter(np.zeros((input_size, g), d))
        self.weight_hh = Parameter(np.zeros((hidden_size, g), d))
        if bias:
            self.bias_ih = Parameter(np.zeros(g, d))
            self.bias_hh = Parameter(np.zeros(g, d))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator)

    def _state(self, x, h, what):
        x = to_tensor(x, what)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{what}: input must be (N, {self.input_size}) or "
                             f"({self.input_size},), got {x.shape}")
        unbatched = x.ndim == 1
        if unbatched:
            x = x.reshape(1, -1)
        shape = (x.shape[0], self.hidden_size)
        if h is None:
            h = ops.zeros(shape, dtype=x.dtype)
        else:
            h = to_tensor(h, what)
            if unbatched:
                h = h.reshape(1, -1)
            if h.shape != shape:
                raise ValueError(f"{what}: state must be {shape}, got {h.shape}")
        return x, h, unbatched

    def _step(self, x, h, c):
        xw = F.linear(x, self.weight_ih, self.bias_ih)
        b_hh = self.bias_hh if self.bias_hh is not None else 0.0
        return cell_step(self.kind, xw, h, c, self.weight_hh, b_hh)

    def extra_repr(self):
        extra = f", nonlinearity={self.nonlinearity!r}" if self._mode == "rnn" else ""
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}{extra}"


class RNNCell(_CellBase):
    """``h' = φ(x W_ih + b_ih + h W_hh + b_hh)`` (φ = tanh or relu): ``cell(x, h) -> h'``."""

    _mode = "rnn"

    def forward(self, x, h=None):
        x, h, unbatched = self._state(x, h, "RNNCell")
        out, _ = self._step(x, h, h)
        return out[0] if unbatched else out


class GRUCell(_CellBase):
    """PyTorch's GRU step (gates r, z, n; the reset gate inside the candidate's hidden
    term): ``cell(x, h) -> h'``."""

    _mode = "gru"

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, generator=None):
        super().__init__(input_size, hidden_size, bias, dtype=dtype, generator=generator)

    def forward(self, x, h=None):
        x, h, unbatched = self._state(x, h, "GRUCell")
        out, _ = self._step(x, h, h)
        return out[0] if unbatched else out


class LSTMCell(_CellBase):
    """PyTorch's LSTM step (gates i, f, g, o): ``cell(x, (h, c)) -> (h', c')``."""

    _mode = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, generator=None):
        super().__init__(input_size, hidden_size, bias, dtype=dtype, generator=generator)

    def forward(self, x, hx=None):
        h, c = (None, None) if hx is None else hx
        x2, h, unbatched = self._state(x, h, "LSTMCell")
        _, c, _ = self._state(x, c, "LSTMCell")
        h2, c2 = self._step(x2, h, c)
        return (h2[0], c2[0]) if unbatched else (h2, c2)


# ----------------------------------------------------------------------------- layers
class _RecurrentBase(Module):
    _mode = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=True, dropout=0.0, bidirectional=False, dtype=None,
                 generator=None):
        super().__init__()
        name = type(self).__name__
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"{name}: input_size, hidden_size and num_layers must be positive, "
                             f"got {input_size}, {hidden_size}, {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.nonlinearity, self.bias, self.batch_first = nonlinearity, bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bool(bidirectional)
        self.kind = _kind(self._mode, nonlinearity)
        self.generator = generator
        g = GATES[self.kind] * hidden_size
        d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        bound = 1.0 / math.sqrt(hidden_size)
        dirs = 2 if bidirectional else 1
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * dirs
            for direction in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                setattr(self, "weight_ih" + sfx, Parameter(np.zeros((n_in, g), d)))
                setattr(self, "weight_hh" + sfx, Parameter(np.zeros((hidden_size, g), d)))
                if bias:
                    setattr(self, "bias_ih" + sfx, Parameter(np.zeros(g, d)))
                    setattr(self, "bias_hh" + sfx, Parameter(np.zeros(g, d)))
        for p in self.parameters():
            init.uniform_(p, -bound, bound, generator)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _mask(self, n, t, lengths, mask, what):
        if lengths is not None and mask is not None:
            raise ValueError(f"{what}: pass lengths or mask, not both")
        if lengths is not None:
            lens = to_tensor(lengths if isinstance(lengths, Tensor) else np.asarray(lengths), what)
            if lens.shape != (n,) or lens.dtype.kind not in "iu":
                raise ValueError(f"{what}: lengths must be {n} integers (one per sequence), got "
                                 f"shape {lens.shape} of {lens.dtype}")
            if lens.size:              # a recorded step: a jitted call checks its own lengths
                record_call(_check_lengths, lens, t=t, what=what)
            return ops.less(ops.arange(t).reshape(1, t), lens.reshape(n, 1))
        if mask is not None:
            mask = to_tensor(mask, what)
            if mask.shape != (n, t):
                raise ValueError(f"{what}: mask must be (N, T) = {(n, t)}, got {mask.shape}")
            return mask.astype(np.bool_) if mask.dtype != np.bool_ else mask
        return ops.ones((n, t), dtype=np.bool_)

    def _initial(self, hx, n, dtype, what, name="h_0"):
        shape = (self.num_layers * self.num_directions, n, self.hidden_size)
        if hx is None:
            return ops.zeros(shape, dtype=dtype)
        hx = to_tensor(hx, what)
        if hx.shape != shape:
            raise ValueError(f"{what}: initial state must be (D·num_layers, N, H) = {shape} "
                             f"(whatever batch_first says), got {hx.shape}")
        _same_dtype(hx, dtype, what, name)
        return hx

    def _run(self, x, h0, c0, lengths, mask, what):
        x = to_tensor(x, what)
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"{what}: input must be (N, T, {self.input_size}) with batch_first, "
                             f"(T, N, {self.input_size}) without, or unbatched "
                             f"(T, {self.input_size}); got {x.shape}")
        dtype = self.weight_ih_l0.dtype
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{what}: the recurrence runs in float32 or float64, but the weights "
                            f"are {dtype}; convert the model with .to(float32)")
        _same_dtype(x, dtype, what, "input")
        unbatched = x.ndim == 2
        if unbatched:
            x = x.reshape((1,) + x.shape)
            h0 = h0 if h0 is None else to_tensor(h0, what).reshape(h0.shape[0], 1, -1)
            c0 = c0 if c0 is None else to_tensor(c0, what).reshape(c0.shape[0], 1, -1)
        elif not self.batch_first:
            x = ops.swapaxes(x, 0, 1)
        n, t = x.shape[0], x.shape[1]
        m = self._mask(n, t, lengths, mask, what)
        h0 = self._initial(h0, n, x.dtype, what)
        c0 = self._initial(c0, n, x.dtype, what, "c_0") if self._mode == "lstm" else None
        hs, cs = [], []
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                k = layer * self.num_directions + direction
                w_ih = getattr(self, "weight_ih" + sfx)
                w_hh = getattr(self, "weight_hh" + sfx)
                b_ih = getattr(self, "bias_ih" + sfx, None)
                b_hh = getattr(self, "bias_hh" + sfx, None)
                if b_hh is None:
                    b_hh = ops.zeros(w_hh.shape[1], dtype=x.dtype)
                xw = F.linear(inp, w_ih, b_ih)
                c_k = c0[k] if c0 is not None else h0[k]
                out, h_n, c_n = recurrent_layer(self.kind, xw, w_hh, b_hh, h0[k], c_k, m,
                                                reverse=bool(direction))
                outs.append(out)
                hs.append(h_n)
                cs.append(c_n)
            inp = outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                inp = F.dropout(inp, self.dropout, True, self.generator)
        h_n = ops.stack(hs, 0)
        c_n = ops.stack(cs, 0) if self._mode == "lstm" else None
        if unbatched:
            inp = inp[0]
            h_n = h_n[:, 0]
            c_n = c_n[:, 0] if c_n is not None else None
        elif not self.batch_first:
            inp = ops.swapaxes(inp, 0, 1)
        return inp, h_n, c_n

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self._mode == "rnn" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            s += ", bias=False"
        if not self.batch_first:
            s += ", batch_first=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(_RecurrentBase):
    """Elman RNN: ``h_t = φ(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)``, φ = tanh or relu.
    ``forward(x, hx=None, lengths=None, mask=None) -> (output, h_n)``."""

    _mode = "rnn"

    def forward(self, x, hx=None, lengths=None, mask=None):
        out, h_n, _ = self._run(x, hx, None, lengths, mask, "RNN")
        return out, h_n


class GRU(_RecurrentBase):
    """PyTorch's GRU. ``forward(x, hx=None, lengths=None, mask=None) -> (output, h_n)``."""

    _mode = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=True,
                 dropout=0.0, bidirectional=False, dtype=None, generator=None):
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first,
                         dropout, bidirectional, dtype, generator)

    def forward(self, x, hx=None, lengths=None, mask=None):
        out, h_n, _ = self._run(x, hx, None, lengths, mask, "GRU")
        return out, h_n


class LSTM(_RecurrentBase):
    """PyTorch's LSTM. ``forward(x, hx=None, lengths=None, mask=None) ->
    (output, (h_n, c_n))`` with ``hx = (h_0, c_0)``."""

    _mode = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=True,
                 dropout=0.0, bidirectional=False, dtype=None, generator=None):
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first,
                         dropout, bidirectional, dtype, generator)

    def forward(self, x, hx=None, lengths=None, mask=None):
        h0, c0 = (None, None) if hx is None else hx
        out, h_n, c_n = self._run(x, h0, c0, lengths, mask, "LSTM")
        return out, (h_n, c_n)


__all__ = ["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell", "detach_state",
           "truncated_chunks"]
