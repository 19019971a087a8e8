"""Variable-length sequences: padding to the longest in a batch, masks, and
next-step (teacher-forcing) pairs for autoregressive training."""

from __future__ import annotations

import numpy as np

from ..core.tensor import Tensor


def _arr(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def pad_sequences(sequences, padding_value=0.0, max_length=None, dtype=None):
    """Stack sequences of shape ``(t_i, ...)`` into ``(b, T, ...)`` padded at the end, and
    return ``(padded, mask)`` where ``mask[i, t]`` is true for real steps."""
    seqs = [_arr(s) for s in sequences]
    if not seqs:
        raise ValueError("pad_sequences: need at least one sequence")
    tail = seqs[0].shape[1:]
    for i, s in enumerate(seqs):
        if s.ndim == 0 or s.shape[1:] != tail:
            raise ValueError(f"pad_sequences: sequence {i} has shape {s.shape}; every sequence "
                             f"needs shape (length, *{tail})")
    lengths = np.array([len(s) for s in seqs])
    T = int(lengths.max()) if max_length is None else int(max_length)
    d = dtype or np.result_type(*[s.dtype for s in seqs])
    out = np.full((len(seqs), T) + tail, padding_value, dtype=d)
    for i, s in enumerate(seqs):
        n = min(len(s), T)
        out[i, :n] = s[:n]
    return Tensor(out), Tensor(lengths_to_mask(np.minimum(lengths, T), T))


def lengths_to_mask(lengths, max_length=None):
    """Boolean mask ``(b, T)``: true at the first ``lengths[i]`` steps of row ``i``."""
    lengths = _arr(lengths)
    T = int(lengths.max(initial=0)) if max_length is None else int(max_length)
    return np.arange(T)[None, :] < lengths[:, None]


def shift_for_next_step(tokens):
    """``(inputs, targets)`` for teacher forcing: predict ``x[t+1]`` from ``x[≤ t]``."""
    t = _arr(tokens)
    if t.ndim < 2 or t.shape[1] < 2:
        raise ValueError(f"shift_for_next_step: need (batch, time ≥ 2, ...), got {t.shape}")
    return Tensor(t[:, :-1]), Tensor(t[:, 1:])


def sliding_windows(series, length, step=1):
    """All windows of ``length`` consecutive steps of a ``(T, ...)`` series:
    ``(n_windows, length, ...)`` (a copy)."""
    s = _arr(series)
    if length > s.shape[0]:
        raise ValueError(f"sliding_windows: window {length} is longer than the series {s.shape[0]}")
    starts = np.arange(0, s.shape[0] - length + 1, step)
    return Tensor(np.stack([s[i:i + length] for i in starts]))
