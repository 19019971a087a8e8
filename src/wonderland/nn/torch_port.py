"""Porting PyTorch weights: a ``state_dict`` of a torch model into its wonderland twin.

Module names follow PyTorch's, so a torch key such as ``encoder.layers.0.linear1.weight``
names the same layer here; what differs is the *layout* of some parameters, converted
per layer kind:

==========================================  ==========================================
torch                                       wonderland
==========================================  ==========================================
``Linear.weight`` ``(out, in)``              ``(in, out)`` (transposed)
``Conv{1,2,3}d.weight`` ``(out, in/g, *k)``  ``(*k, in/g, out)`` (channels last)
``ConvTranspose{1,2,3}d.weight``             ``(*k, out/g, in)`` from ``(in, out/g, *k)``
``RNN/GRU/LSTM[Cell].weight_*`` ``(g·h, n)``  ``(n, g·h)`` (gates in torch's order)
``MultiheadAttention.in_proj_weight``        ``q_proj``, ``k_proj``, ``v_proj`` weights
``(3e, e)`` and ``in_proj_bias``             ``(e, e)`` each, transposed, and biases
``Embedding``, ``LayerNorm``, ``GroupNorm``,  unchanged (``running_mean``,
``RMSNorm``, ``BatchNorm*``                  ``running_var``, ``num_batches_tracked`` too)
==========================================  ==========================================

Containers (``Sequential``, ``ModuleList``, ``ModuleDict``) and composite layers
(``TransformerEncoderLayer``, ``TransformerDecoderLayer``, ``Transformer``, ...) are
walked through; a module of your own takes its direct parameters by name, unchanged. A
wonderland layer with parameters but no PyTorch twin (``ClassToken``, ``Mamba``, ...) is
refused, and so is every torch key that cannot be mapped (``bias_k`` of
``MultiheadAttention(add_bias_kv=True)``, ``weight_hr_l0`` of an LSTM with
``proj_size``), each by name. Every entry is checked (names, shapes in torch's layout)
before anything is copied.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict, namedtuple

import numpy as np

from ..core.tensor import Tensor
from ..interop.safetensors_files import read_safetensors

__all__ = ["load_torch_state_dict", "torch_state_dict", "TorchKeys", "TWIN_LAYERS"]

TorchKeys = namedtuple("TorchKeys", ["missing_keys", "unexpected_keys"])
# one conversion: torch key -> our keys, and the two directions
_Entry = namedtuple("_Entry", ["torch_key", "ours", "to_ours", "to_torch", "what"])


# ----------------------------------------------------------------------------- layouts
def _same(a):
    return (a,)


def _unsame(a):
    return a


def _transposed(a):
    return (np.swapaxes(a, 0, 1),)


def _untransposed(a):
    return np.swapaxes(a, 0, 1)


def _conv_to_ours(a):
    nd = a.ndim - 2
    return (np.transpose(a, (*range(2, nd + 2), 1, 0)),)


def _conv_to_torch(a):
    nd = a.ndim - 2
    return np.transpose(a, (nd + 1, nd, *range(nd)))


def _split3(a):
    return tuple(np.split(a, 3, axis=0))


def _join3(*parts):
    return np.concatenate(parts, axis=0)


def _split3_transposed(a):
    return tuple(p.T for p in np.split(a, 3, axis=0))


def _join3_transposed(*parts):
    return np.concatenate([p.T for p in parts], axis=0)


# ----------------------------------------------------------------------------- rules
# a rule maps a module to (entries, refusals, handled children): entries are
# (torch name, our names, to_ours, to_torch) relative to the module; refusals map a
# pattern of torch names to why they cannot be mapped
def _rule_same(m, names):
    return [(n, (n,), _same, _unsame) for n in names], {}, ()


def _rule_linear(m, names):
    return [(n, (n,), *((_transposed, _untransposed) if n == "weight" else (_same, _unsame)))
            for n in names], {}, ()


def _rule_conv(m, names):
    return [(n, (n,), *((_conv_to_ours, _conv_to_torch) if n == "weight" else (_same, _unsame)))
            for n in names], {}, ()


def _rule_recurrent(m, names):
    entries = [(n, (n,), *((_transposed, _untransposed) if n.startswith("weight_")
                           else (_same, _unsame))) for n in names]
    return entries, {r"weight_hr_l\d+(_reverse)?": "an LSTM's proj_size (projected hidden "
                                                   "states) has no wonderland counterpart"}, ()


def _rule_attention(m, names):
    refusals = {r"bias_[kv]": "add_bias_kv=True (learned key and value rows appended to the "
                              "sequence) has no counterpart in wonderland's MultiheadAttention"}
    if m.num_kv_heads != m.num_heads:
        raise ValueError(f"load_torch_state_dict: MultiheadAttention with num_kv_heads="
                         f"{m.num_kv_heads} (grouped-query attention) has no PyTorch twin")
    qkv = ("q_proj", "k_proj", "v_proj")
    if m.kdim == m.embed_dim and m.vdim == m.embed_dim:
        entries = [("in_proj_weight", tuple(f"{p}.weight" for p in qkv), _split3_transposed,
                    _join3_transposed)]
    else:                                # torch keeps three matrices when the sizes differ
        entries = [(f"{p}_weight", (f"{p}.weight",), _transposed, _untransposed) for p in qkv]
    if m.q_proj.bias is not None:
        entries.append(("in_proj_bias", tuple(f"{p}.bias" for p in qkv), _split3, _join3))
    entries.append(("out_proj.weight", ("out_proj.weight",), _transposed, _untransposed))
    if m.out_proj.bias is not None:
        entries.append(("out_proj.bias", ("out_proj.bias",), _same, _unsame))
    return entries, refusals, qkv + ("out_proj",)


# wl.nn's layers with a torch twin, by class name (a subclass inherits its base's rule)
_RULES = {
    "Linear": _rule_linear,
    **dict.fromkeys(("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                     "ConvTranspose3d"), _rule_conv),
    **dict.fromkeys(("RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell"), _rule_recurrent),
    **dict.fromkeys(("BatchNorm", "LayerNorm", "GroupNorm", "RMSNorm", "Embedding",
                     "LearnedPositionalEmbedding"), _rule_same),    # the last: an nn.Embedding
    "MultiheadAttention": _rule_attention,
}
TWIN_LAYERS = tuple(sorted(_RULES))


def _rule_for(module):
    for cls in type(module).__mro__:
        if cls.__module__.startswith("wonderland.nn.") and cls.__qualname__ in _RULES:
            return _RULES[cls.__qualname__]
    return None


# ----------------------------------------------------------------------------- the plan
def _direct_keys(module):
    """Our persistent state, grouped by owning module: prefix -> local names."""
    out = {}
    for key in module.state_dict():
        prefix, _, name = key.rpartition(".")
        out.setdefault(prefix, []).append(name)
    return out


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _plan(module):
    """``(entries, refusals, untwinned)`` for the whole tree: conversions, torch-name
    patterns that cannot be mapped (full pattern -> why), our keys of wonderland layers
    that have no torch twin."""
    direct = _direct_keys(module)
    entries, refusals, untwinned = [], {}, []
    skip = set()
    for prefix, m in module.named_modules():
        if prefix in skip or any(prefix.startswith(s + ".") for s in skip):
            continue
        names = direct.get(prefix, [])
        rule = _rule_for(m)
        what = f"{type(m).__name__} {prefix!r}" if prefix else type(m).__name__
        if rule is None and names and type(m).__module__.startswith("wonderland."):
            untwinned += [(_join(prefix, n), type(m).__name__) for n in names]
            continue
        local, refused, handled = (rule or _rule_same)(m, names)
        skip.update(_join(prefix, h) for h in handled)
        for tk, ours, to_ours, to_torch in local:
            entries.append(_Entry(_join(prefix, tk), tuple(_join(prefix, o) for o in ours),
                                  to_ours, to_torch, what))
        for pattern, why in refused.items():
            refusals[(re.escape(prefix + ".") if prefix else "") + pattern] = f"{what}: {why}"
    return entries, refusals, untwinned


# ----------------------------------------------------------------------------- state in
def _array(key, value):
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):          # a torch tensor
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()                                    # NumPy has no bfloat16
        return value.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"load_torch_state_dict: {key!r} holds a {type(value).__name__} "
                        f"({arr.dtype}), not an array of numbers")
    return arr


def _state_arrays(state):
    if isinstance(state, (str, os.PathLike)):
        return read_safetensors(state)
    if hasattr(state, "state_dict") and not isinstance(state, dict):
        raise TypeError(f"load_torch_state_dict: got a {type(state).__name__}; pass its "
                        f"state_dict() (or a path to a safetensors file)")
    if not hasattr(state, "items"):
        raise TypeError(f"load_torch_state_dict: expected a dict of arrays or tensors, or a "
                        f"path to a safetensors file, got {type(state).__name__}")
    for k in state:
        if not isinstance(k, str):
            raise TypeError(f"load_torch_state_dict: keys must be strings, got {k!r}")
    return {k: _array(k, v) for k, v in state.items()}


def _refuse(arrays, refusals, untwinned):
    problems = [f"{key!r} cannot be mapped ({why})" for key in arrays
                for pattern, why in refusals.items() if re.fullmatch(pattern, key)]
    problems += [f"{key!r} belongs to wonderland's {kind}, which has no PyTorch twin (copy "
                 f"it with load_state_dict)" for key, kind in untwinned]
    if problems:
        raise ValueError("load_torch_state_dict: " + "; ".join(problems))


def _convert(module, arrays, entries):
    own = module.state_dict()
    converted, missing, problems = {}, [], []
    for e in entries:
        if e.torch_key not in arrays:
            missing.append(e.torch_key)
            continue
        arr = arrays[e.torch_key]
        expected = e.to_torch(*(own[o].numpy() for o in e.ours)).shape
        if arr.shape != expected:
            problems.append(f"{e.torch_key!r} has shape {arr.shape} in the state, but "
                            f"{e.what} needs {expected} (PyTorch's layout)")
            continue
        converted.update(zip(e.ours, e.to_ours(arr)))
    return converted, missing, problems


def load_torch_state_dict(module, state, strict: bool = True) -> TorchKeys:
    """Copy a PyTorch ``state_dict`` (a dict of torch tensors or arrays, or the path of a
    safetensors file written by ``safetensors.torch``) into ``module``, converting each
    layer's layout. With ``strict`` every key must match; unmappable keys and wonderland
    layers without a torch twin are refused either way. Everything is checked before
    anything is copied. Returns ``(missing_keys, unexpected_keys)`` in torch's names."""
    arrays = _state_arrays(state)
    entries, refusals, untwinned = _plan(module)
    _refuse(arrays, refusals, untwinned)
    converted, missing, problems = _convert(module, arrays, entries)
    if problems:
        raise ValueError("load_torch_state_dict: " + "; ".join(problems))
    known = {e.torch_key for e in entries}
    unexpected = [k for k in arrays if k not in known]
    if strict and (missing or unexpected):
        parts = [f"missing keys {missing}"] * bool(missing) + \
                [f"unexpected keys {unexpected}"] * bool(unexpected)
        hint = ""
        if unexpected and all(k.startswith("module.") for k in arrays):
            hint = " (the keys start with 'module.', as a DataParallel wrapper saves them: " \
                   "strip that prefix)"
        raise KeyError(f"load_torch_state_dict: {'; '.join(parts)}{hint}")
    module.load_state_dict(converted, strict=False)
    return TorchKeys(missing, unexpected)


def torch_state_dict(module) -> "OrderedDict[str, np.ndarray]":
    """The inverse: ``module``'s parameters and buffers under PyTorch's names and in its
    layouts, as new NumPy arrays (``torch.from_numpy`` them for
    ``torch_model.load_state_dict``)."""
    entries, _, untwinned = _plan(module)
    _refuse({}, {}, untwinned)
    own = module.state_dict()
    return OrderedDict((e.torch_key, np.array(e.to_torch(*(own[o].numpy() for o in e.ours)),
                                              order="C"))
                       for e in entries)
