"""Attention (chapters 10–11): scaled dot-product attention with PyTorch's semantics,
multi-head attention (self, cross, causal, grouped-query, multi-query), a KV cache for
incremental decoding, and linear attention.

Shapes are channels-last: sequences ``(b, t, c)``; inside attention, heads sit on
axis −3: ``(b, h, t, d)``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..core.tensor import Tensor
from ..core.tracing import refuse_while_tracing
from ..ops.arguments import constant, floating, to_tensor
from ..ops.attention import attention, attention_reference
from .activations import elu
from .dropout import dropout
from . import init
from .layers import Linear
from .module import Module

__all__ = ["scaled_dot_product_attention", "linear_attention", "linear_attention_recurrent",
           "MultiheadAttention", "KVCache"]


def _as_tensor(x, what):
    x = to_tensor(x, what)
    return floating(x) if x.dtype.kind != "b" else x


def _bias_from_mask(mask, dtype, what, allowed_is_true=True):
    """A boolean or float mask as an additive bias: bool → 0 where allowed, −inf elsewhere."""
    mask = to_tensor(mask, what)
    if mask.dtype.kind == "b":
        allowed = mask if allowed_is_true else ops.logical_not(mask)
        return ops.where(allowed, 0.0, -np.inf).astype(dtype)
    if mask.dtype.kind != "f":
        raise TypeError(f"{what}: a mask must be boolean or floating point, got {mask.dtype}")
    return mask.astype(dtype) if mask.dtype != dtype else mask


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False, *,
                                 generator=None, implementation="auto",
                                 block_size=None) -> Tensor:
    """``softmax(q kᵀ · scale + mask) v`` with PyTorch's semantics.

    ``query (..., L, E)``, ``key (..., S, E)``, ``value (..., S, Ev)`` → ``(..., L, Ev)``.
    ``attn_mask``: boolean, **True where attention is allowed**, or float, added to the
    scores; broadcastable to ``(..., L, S)``. ``is_causal``: the mask
    ``tril(ones(L, S))``, aligned top-left (an error together with ``attn_mask``).
    ``scale`` defaults to ``1/sqrt(E)``. ``enable_gqa``: ``key``/``value`` may have
    fewer heads (axis −3) than ``query``; each serves a contiguous group of query heads.
    ``dropout_p`` drops attention weights (always, as in PyTorch's functional form),
    using ``generator``.

    **One difference from PyTorch, on purpose:** a query row with nothing to attend to
    (a boolean row all False, or a float row all −inf) returns zeros, and its gradients
    are zeros; PyTorch returns NaN there.

    One fused primitive computes it (see ``wonderland.ops.attention``):
    ``implementation="plain"`` keeps the probabilities for the backward pass, ``"flash"``
    runs FlashAttention's block-by-block online softmax and recomputes blocks in the
    backward pass (memory linear in the length); ``"auto"`` takes flash on the CPU
    (compiled loops) and for large problems elsewhere. ``block_size``: the flash kernel's block, ``(queries, keys)`` or one int for
    both (default: chosen from the sizes). With dropout the composite form runs instead.
    """
    what = "scaled_dot_product_attention"
    block_size = _block_size(block_size, what)
    q, k, v = _qkv(query, key, value, enable_gqa, what)
    if is_causal and attn_mask is not None:
        raise ValueError(f"{what}: is_causal=True and an explicit attn_mask cannot be given "
                         f"together (PyTorch's rule); put the causal mask into attn_mask")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{what}: dropout_p must be in [0, 1], got {dropout_p}")
    bias = None if attn_mask is None else _scores_bias(attn_mask, q, k, what)
    causal = 0 if is_causal else None
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    if dropout_p > 0.0:
        return attention_reference(q, k, v, bias, causal, scale,
                                   dropout=lambda p: dropout(p, dropout_p, True, generator))
    return attention(q, k, v, bias, causal, scale, implementation, block_size=block_size)


def _qkv(query, key, value, enable_gqa, what):
    """Query, key and value as tensors of one dtype whose shapes fit attention (key and
    value heads repeated for grouped-query attention)."""
    q, k, v = (_as_tensor(t, what) for t in (query, key, value))
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"{what}: query, key and value need at least 2 dimensions (..., L, E), "
                         f"got shapes {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{what}: query and key must share the embedding size (last axis), "
                         f"got query {q.shape} and key {k.shape}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{what}: key and value must have the same length (axis -2), got "
                         f"key {k.shape} and value {v.shape}")
    dtype = np.result_type(q.dtype, k.dtype, v.dtype)
    q, k, v = (t.astype(dtype) if t.dtype != dtype else t for t in (q, k, v))
    if enable_gqa and q.ndim >= 3 and k.ndim >= 3 and k.shape[-3] != q.shape[-3]:
        hq, hk = q.shape[-3], k.shape[-3]
        if v.ndim < 3 or v.shape[-3] != hk or hq % hk:
            raise ValueError(f"{what}: with enable_gqa the query heads ({hq}) must be a multiple "
                             f"of the key/value heads (key {k.shape}, value {v.shape})")
        k = ops.repeat(k, hq // hk, axis=-3)
        v = ops.repeat(v, hq // hk, axis=-3)
    try:
        np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"{what}: the leading (batch, head) dimensions of query {q.shape}, key "
                         f"{k.shape} and value {v.shape} do not broadcast"
                         + ("" if enable_gqa else "; for fewer key/value heads pass enable_gqa=True")
                         ) from None
    return q, k, v


def _scores_bias(attn_mask, q, k, what):
    """``attn_mask`` as an additive bias that broadcasts to the scores ``(..., L, S)``."""
    L, S = q.shape[-2], k.shape[-2]
    bias = _bias_from_mask(attn_mask, q.dtype, what)
    if bias.ndim < 2:
        bias = bias.reshape((1,) * (2 - bias.ndim) + bias.shape)
    try:
        np.broadcast_shapes(bias.shape, q.shape[:-2] + (L, S))
    except ValueError:
        raise ValueError(f"{what}: attn_mask of shape {bias.shape} does not broadcast to the "
                         f"scores' shape {q.shape[:-2] + (L, S)}") from None
    if bias.shape[-2] not in (1, L) or bias.shape[-1] not in (1, S):
        raise ValueError(f"{what}: attn_mask's last two axes {bias.shape[-2:]} must be "
                         f"(L, S) = ({L}, {S}) or broadcast to it")
    return bias


def _added(extra, bias):
    return extra if bias is None else bias + extra


def _padding_bias(key_padding_mask, unbatched, b, S, dtype, what):
    """PyTorch's ``key_padding_mask`` ((batch, S), or (S,) for an unbatched query; True or
    -inf at padded keys) as a bias ``(b, 1, 1, S)``."""
    kp = _bias_from_mask(key_padding_mask, dtype, what, allowed_is_true=False)
    if unbatched and kp.ndim == 1:
        if kp.shape != (S,):
            raise ValueError(f"{what}: key_padding_mask must be (S,) = ({S},) for an "
                             f"unbatched query, or (1, S), got {kp.shape}")
        kp = kp.reshape(1, S)
    if kp.shape != (b, S):
        raise ValueError(f"{what}: key_padding_mask must be (batch, S) = ({b}, {S}), got "
                         f"{kp.shape}")
    return kp.reshape(b, 1, 1, S)


def _block_size(block_size, what):
    """``None`` or ``(queries, keys)`` per flash block (either may be ``None``)."""
    if block_size is None:
        return None

    def size(n):
        return n is None or (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0)

    if isinstance(block_size, (int, np.integer)) and size(block_size):
        return (int(block_size), int(block_size))
    if isinstance(block_size, (tuple, list)) and len(block_size) == 2 \
            and all(map(size, block_size)):
        return tuple(None if n is None else int(n) for n in block_size)
    raise ValueError(f"{what}: block_size must be a positive int or a pair (queries, keys) of "
                     f"them, got {block_size!r}")


# ----------------------------------------------------------------------------- linear attention
def _feature_map(x):
    return elu(x) + 1.0


def linear_attention(q, k, v, causal=False, eps=1e-6) -> Tensor:
    """Linear attention with the ``elu(x) + 1`` feature map φ (Katharopoulos et al.):
    ``out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / φ(q_i)ᵀ Σ_j φ(k_j)``, over all ``j`` or, with
    ``causal``, over ``j ≤ i`` by prefix sums (the parallel form of the recurrence
    ``S_i = S_{i−1} + φ(k_i) v_iᵀ``, ``z_i = z_{i−1} + φ(k_i)``). Shapes
    ``(..., L, E)``, ``(..., S, E)``, ``(..., S, Ev)``; cost linear in the length.
    """
    what = "linear_attention"
    q, k, v = (floating(to_tensor(t, what)) for t in (q, k, v))
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{what}: expected query (..., L, E), key (..., S, E), value (..., S, Ev); "
                         f"got {q.shape}, {k.shape}, {v.shape}")
    fq, fk = _feature_map(q), _feature_map(k)
    if not causal:
        kv = ops.matmul(fk.swapaxes(-1, -2), v)                      # (..., E, Ev)
        z = fk.sum(-2)                                                # (..., E)
        num = ops.matmul(fq, kv)
        den = (fq * z.expand_dims(-2)).sum(-1, keepdims=True)
        return num / (den + eps)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"{what}: causal linear attention needs as many queries as keys, got "
                         f"{q.shape[-2]} and {k.shape[-2]}")
    kv = ops.cumsum(fk.expand_dims(-1) * v.expand_dims(-2), axis=-3)   # (..., L, E, Ev)
    z = ops.cumsum(fk, axis=-2)                                        # (..., L, E)
    num = (fq.expand_dims(-1) * kv).sum(-2)
    den = (fq * z).sum(-1, keepdims=True)
    return num / (den + eps)


def linear_attention_recurrent(q, k, v, eps=1e-6):
    """Causal linear attention as the recurrence (one step per position): the reference
    that :func:`linear_attention` with ``causal=True`` must equal, and the O(1)-per-token
    decoding form. Returns the outputs ``(..., L, Ev)``."""
    q, k, v = (floating(to_tensor(t, "linear_attention_recurrent")) for t in (q, k, v))
    fq, fk = _feature_map(q), _feature_map(k)
    state = None
    z = None
    outs = []
    for i in range(q.shape[-2]):
        ki, vi, qi = fk[..., i, :], v[..., i, :], fq[..., i, :]
        upd = ki.expand_dims(-1) * vi.expand_dims(-2)
        state = upd if state is None else state + upd
        z = ki if z is None else z + ki
        num = (qi.expand_dims(-1) * state).sum(-2)
        den = (qi * z).sum(-1, keepdims=True)
        outs.append(num / (den + eps))
    return ops.stack(outs, axis=-2)


# ----------------------------------------------------------------------------- KV cache
class KVCache:
    """Keys and values of the tokens decoded so far, per layer, for incremental decoding.

    ``update(k, v)`` appends the new keys and values ``(b, h, t_new, d)`` and returns
    everything so far. Storage is a preallocated buffer that doubles when full, so a
    step costs O(t_new), not a copy of the whole history. ``MultiheadAttention`` with
    ``cache=`` aligns its new queries with the *last* keys (query ``i`` of ``t_new``
    sees keys up to ``length − t_new + i``), so decoding token by token equals the full
    causal forward pass. Tensors that require grad are concatenated instead (the cache
    then stays differentiable, keeping what was stored before). New keys and values must
    match the cached batch, heads and head size: a cache serves one batch until
    :meth:`reset`.
    """

    def __init__(self):
        self._k = self._v = None
        self.length = 0
        self._kt = self._vt = None

    def __len__(self):
        return self.length

    def reset(self):
        self.__init__()

    def select(self, index):
        """Keep the batch rows ``index`` (in that order): beam search reorders its beams."""
        index = np.asarray(index, dtype=np.int64)
        if self._kt is not None:
            self._kt = ops.take(self._kt, constant(index), axis=0)
            self._vt = ops.take(self._vt, constant(index), axis=0)
        elif self._k is not None:
            self._k = self._k[index]
            self._v = self._v[index]

    def update(self, k: Tensor, v: Tensor):
        refuse_while_tracing("KVCache.update (the cache keeps state between calls; decode "
                             "step by step outside wl.jit)")
        if k.ndim != 4 or v.ndim != 4 or k.shape[:3] != v.shape[:3]:
            raise ValueError(f"KVCache.update: expected keys and values (b, h, t, d) of one "
                             f"length, got {k.shape} and {v.shape}")
        cached_k = self._kt if self._kt is not None else self._k
        cached_v = self._vt if self._vt is not None else self._v
        if cached_k is not None and (tuple(cached_k.shape[:2]) != k.shape[:2] or
                                     cached_k.shape[3] != k.shape[3] or
                                     cached_v.shape[3] != v.shape[3]):
            shape = (cached_k.shape[0], cached_k.shape[1], self.length, cached_k.shape[3])
            raise ValueError(f"KVCache.update: new keys {k.shape} do not match the cached "
                             f"(b, h, ·, d) = {shape} (values {v.shape}, cached "
                             f"{tuple(cached_v.shape[:2]) + (self.length, cached_v.shape[3])}); "
                             f"reset() the cache for another batch")
        if k.requires_grad or v.requires_grad or self._kt is not None:
            if self._kt is None and self._k is not None:      # filled without grad so far
                self._kt = constant(self._k[:, :, :self.length])
                self._vt = constant(self._v[:, :, :self.length])
                self._k = self._v = None
            self._kt = k if self._kt is None else ops.concatenate([self._kt, k], axis=2)
            self._vt = v if self._vt is None else ops.concatenate([self._vt, v], axis=2)
            self.length = self._kt.shape[2]
            return self._kt, self._vt
        n = k.shape[2]
        need = self.length + n
        if self._k is None or need > self._k.shape[2]:
            cap = max(16, need, 2 * (0 if self._k is None else self._k.shape[2]))
            newk = ops.zeros(k.shape[:2] + (cap, k.shape[3]), dtype=k.dtype).data
            newv = ops.zeros(v.shape[:2] + (cap, v.shape[3]), dtype=v.dtype).data
            if self._k is not None:
                newk[:, :, :self.length] = self._k[:, :, :self.length]
                newv[:, :, :self.length] = self._v[:, :, :self.length]
            self._k, self._v = newk, newv
        self._k[:, :, self.length:need] = k.data
        self._v[:, :, self.length:need] = v.data
        self.length = need
        return constant(self._k[:, :, :need]), constant(self._v[:, :, :need])


# ----------------------------------------------------------------------------- the module
class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's arguments and semantics.

    ``MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, kdim=None,
    vdim=None, batch_first=True)``; ``forward(query, key, value, key_padding_mask=None,
    need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False)``
    returns ``(output, weights or None)``.

    .. warning:: **Mask polarity differs from** :func:`scaled_dot_product_attention`.
       As in PyTorch's ``nn.MultiheadAttention``, a boolean ``key_padding_mask``
       ``(b, S)`` (``(S,)`` for an unbatched query) or ``attn_mask`` ``(L, S)`` /
       ``(b·num_heads, L, S)`` is **True where a position is to be IGNORED** (padding, the
       future). Float masks are added to the
       scores.

    ``is_causal`` is PyTorch's hint: it needs ``attn_mask`` (the causal mask) and lets
    the fused kernel apply the causal rule itself. ``need_weights=True`` returns the
    attention weights averaged over heads (``(b, L, S)``; per head ``(b, h, L, S)``
    with ``average_attn_weights=False``), computed on the composite path.

    Projections are four :class:`Linear` submodules, ``q_proj``, ``k_proj``,
    ``v_proj`` and ``out_proj`` (weights ``(in, out)``, channels last). Beyond PyTorch:
    ``num_kv_heads`` (keyword) gives grouped-query attention (``1``: multi-query), and
    ``forward(..., cache=KVCache())`` decodes incrementally.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, kdim=None, vdim=None,
                 batch_first=True, *, num_kv_heads=None, dtype=None, generator=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive "
                             f"multiple of num_heads ({num_heads})")
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_kv_heads <= 0 or num_heads % num_kv_heads:
            raise ValueError(f"MultiheadAttention: num_heads ({num_heads}) must be a multiple "
                             f"of num_kv_heads ({num_kv_heads})")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout, self.batch_first = dropout, batch_first
        kv = num_kv_heads * self.head_dim
        self.q_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype, generator=generator)
        self.k_proj = Linear(self.kdim, kv, bias=bias, dtype=dtype, generator=generator)
        self.v_proj = Linear(self.vdim, kv, bias=bias, dtype=dtype, generator=generator)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype, generator=generator)
        self.generator = generator
        # PyTorch: Xavier-uniform input projections (as one stacked matrix when the
        # dimensions agree), zero biases
        same = self.kdim == embed_dim and self.vdim == embed_dim and kv == embed_dim
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            fan_in, fan_out = proj.in_features, proj.out_features * (3 if same else 1)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            init.uniform_(proj.weight, -bound, bound, generator)
            if proj.bias is not None:
                proj.bias.data[...] = 0
        if self.out_proj.bias is not None:
            self.out_proj.bias.data[...] = 0

    def _heads(self, x, heads):
        b, t, _ = x.shape
        return x.reshape(b, t, heads, self.head_dim).transpose(0, 2, 1, 3)

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False, *, cache=None,
                rope=None, position_bias=None):
        """See the class text. ``key``/``value`` default to ``query`` (self-attention).
        Extras: ``cache`` (a :class:`KVCache`), ``rope`` (a rotary embedding applied to
        queries and keys at their positions), ``position_bias`` (a float bias
        ``(h, L, S)`` or broadcastable, e.g. ALiBi or T5 buckets)."""
        what = "MultiheadAttention"
        q_in, k_in, v_in, unbatched = self._inputs(query, key, value, what)
        b, L, _ = q_in.shape
        q = self._heads(self.q_proj(q_in), self.num_heads)
        k = self._heads(self.k_proj(k_in), self.num_kv_heads)
        v = self._heads(self.v_proj(v_in), self.num_kv_heads)
        offset = 0 if cache is None else len(cache)
        if rope is not None:
            q = rope(q, offset=offset)
            k = rope(k, offset=offset)
        if cache is not None:
            k, v = cache.update(k, v)
        S = k.shape[2]
        if is_causal and attn_mask is None and cache is None:
            raise ValueError(f"{what}: is_causal=True needs attn_mask (PyTorch's rule: it is a "
                             f"hint that attn_mask is the causal mask)")
        causal, bias = None, position_bias
        if is_causal and (cache is not None or (key_padding_mask is None and not need_weights)):
            # PyTorch's fast path: the causal hint replaces attn_mask; with a cache the
            # new queries line up with the last keys
            causal = S - L if cache is not None else 0
        elif attn_mask is not None:
            bias = _added(self._attn_mask_bias(attn_mask, b, L, S, q.dtype, what), bias)
        if key_padding_mask is not None:
            bias = _added(_padding_bias(key_padding_mask, unbatched, b, S, q.dtype, what), bias)
        out, weights = self._attend(q, k, v, bias, causal, need_weights, average_attn_weights)
        if not self.batch_first:
            out = out.swapaxes(0, 1)
        if unbatched:
            out = out[0] if self.batch_first else out[:, 0]
            if weights is not None:
                weights = weights[0]
        return out, weights

    def _inputs(self, query, key, value, what):
        """Query, key and value as float ``(batch, length, features)`` tensors, batch
        first; whether the query was unbatched."""
        key = query if key is None else key
        value = key if value is None else value
        q_in, k_in, v_in = (floating(to_tensor(t, what)) for t in (query, key, value))
        unbatched = q_in.ndim == 2
        if unbatched:
            q_in, k_in, v_in = (t.expand_dims(0 if self.batch_first else 1) for t in (q_in, k_in, v_in))
        if q_in.ndim != 3 or k_in.ndim != 3 or v_in.ndim != 3:
            raise ValueError(f"{what}: expected (batch, length, features) inputs, got query "
                             f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}")
        if not self.batch_first:
            q_in, k_in, v_in = (t.swapaxes(0, 1) for t in (q_in, k_in, v_in))
        if q_in.shape[-1] != self.embed_dim or k_in.shape[-1] != self.kdim or \
                v_in.shape[-1] != self.vdim:
            raise ValueError(f"{what}: expected query/key/value features ({self.embed_dim}, "
                             f"{self.kdim}, {self.vdim}), got {q_in.shape}, {k_in.shape}, "
                             f"{v_in.shape}")
        if k_in.shape[:2] != v_in.shape[:2] or k_in.shape[0] != q_in.shape[0]:
            raise ValueError(f"{what}: key {k_in.shape} and value {v_in.shape} must share batch "
                             f"and length, and the batch of query {q_in.shape}")
        return q_in, k_in, v_in, unbatched

    def _attn_mask_bias(self, attn_mask, b, L, S, dtype, what):
        """PyTorch's ``attn_mask`` (True or -inf where attention is *not* allowed), 2-D
        ``(L, S)`` or 3-D ``(batch·heads, L, S)``, as a bias ``(b or 1, heads or 1, L, S)``."""
        m = _bias_from_mask(attn_mask, dtype, what, allowed_is_true=False)
        if m.ndim == 2:
            if m.shape != (L, S):
                raise ValueError(f"{what}: 2-D attn_mask must be (L, S) = ({L}, {S}), got {m.shape}")
            return m.reshape(1, 1, L, S)
        if m.ndim == 3:
            if m.shape != (b * self.num_heads, L, S):
                raise ValueError(f"{what}: 3-D attn_mask must be (batch*num_heads, L, S) = "
                                 f"({b * self.num_heads}, {L}, {S}), got {m.shape}")
            return m.reshape(b, self.num_heads, L, S)
        raise ValueError(f"{what}: attn_mask must be 2-D or 3-D, got {m.shape}")

    def _attend(self, q, k, v, bias, causal, need_weights, average_attn_weights):
        """The heads' attention, merged and projected: ``(out (b, L, E), weights)``."""
        b, L = q.shape[0], q.shape[2]
        if self.num_kv_heads != self.num_heads:
            g = self.num_heads // self.num_kv_heads
            k, v = ops.repeat(k, g, axis=1), ops.repeat(v, g, axis=1)
        p_drop = self.dropout if self.training else 0.0
        scale = 1.0 / math.sqrt(self.head_dim)
        weights = None
        if need_weights or p_drop > 0:
            drop = (lambda p: dropout(p, p_drop, True, self.generator)) if p_drop > 0 else None
            o, probs = attention_reference(q, k, v, bias, causal, scale, return_probs=True,
                                           dropout=drop)
            if need_weights:
                weights = probs.mean(1) if average_attn_weights else probs
        else:
            o = attention(q, k, v, bias, causal, scale)
        o = o.transpose(0, 2, 1, 3).reshape(b, L, self.embed_dim)
        return self.out_proj(o), weights

    def extra_repr(self):
        extra = f", num_kv_heads={self.num_kv_heads}" if self.num_kv_heads != self.num_heads else ""
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}{extra}, " \
               f"dropout={self.dropout}, batch_first={self.batch_first}"

