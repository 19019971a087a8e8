"""Graph layers (chapter 12): message passing, GCN, GAT, GIN, GraphSAGE, readouts and a
graph transformer layer. Node features are ``(n, c)``; ``edge_index`` is ``(2, e)``
with row 0 the source and row 1 the target of each edge, and messages flow from source
to target (PyTorch Geometric's conventions, so its users find the same names,
parameter shapes — here ``(in, out)`` — and results).

Every layer is built on :class:`MessagePassing`: ``propagate`` gathers the rows that
``message`` asks for (an argument ``x_j`` is ``x`` at each edge's source, ``x_i`` at
its target), ``aggregate`` reduces the messages entering each node with a segment
primitive (``"add"``, ``"mean"``, ``"max"``), ``update`` finishes. A layer may also
offer ``message_and_aggregate``, a fused path (a sparse matrix product) that gives the
same result without materialising one message per edge; GCN and GIN do.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from .. import ops
from ..core import dtypes
from ..core.tensor import Tensor
from ..core.tracing import read_values
from ..graph.utils import edge_scalars, gcn_norm, shortest_path_distances
from ..ops.segment import gather_raw, segment_sum_raw
from ..ops.sparse import SparseMatrix, sampled_dot
from . import functional as F
from . import init
from .layers import Dropout, Embedding, Linear
from .module import Module, Parameter
from .normalization import LayerNorm

__all__ = ["MessagePassing", "GCNConv", "GATConv", "GINConv", "SAGEConv", "global_add_pool",
           "global_mean_pool", "global_max_pool", "AttentionalAggregation",
           "GraphTransformerLayer", "gcn_conv", "gat_conv", "gin_conv", "sage_conv",
           "attention_pairs", "distance_buckets"]


# ----------------------------------------------------------------------------- helpers
def _edge_index(edge_index, what) -> np.ndarray:
    ei = np.asarray(read_values(edge_index, what))
    if ei.size == 0:
        return ei.astype(np.int64).reshape(2, 0)
    if ei.dtype.kind not in "iu" or ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"{what}: edge_index must be an integer array of shape (2, E) (row 0 "
                         f"sources, row 1 targets), got {ei.dtype} {ei.shape}")
    return ei if ei.dtype == np.int64 else ei.astype(np.int64)


def _index(a) -> Tensor:
    return Tensor(a)


def _rows(x) -> int:
    return int(x.shape[0])


def _project(x, weight):
    """``x @ weight`` for dense or sparse (:class:`SparseMatrix`) node features."""
    if isinstance(x, SparseMatrix):
        return x @ weight
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=weight.dtype))
    if x.ndim != 2 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"graph layer: node features of shape {tuple(x.shape)} do not match "
                         f"the weight {tuple(weight.shape)} (expected (n, {weight.shape[0]}))")
    return x @ weight


def _param(shape, dtype=None, fill=None):
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    p = Parameter(np.zeros(shape, d))
    if fill is not None:
        p.data[...] = fill
    return p


def _check_nodes(ei, n, what):
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        raise IndexError(f"{what}: edge_index names node {int(ei.max() if ei.max() >= n else ei.min())} "
                         f"but there are {n} nodes")


# ----------------------------------------------------------------------------- base class
_AGGREGATORS = {"add": segment_sum_raw, "sum": segment_sum_raw,
                "mean": lambda d, i, n: ops.segment_mean(d, i, n),
                "max": lambda d, i, n: ops.segment_max(d, i, n)}
_SPECIAL = ("index", "size_i", "size_j", "edge_index", "dim_size")


class MessagePassing(Module):
    """Base class of message-passing layers:
    ``out_i = update(aggregate_{j → i} message(x_i, x_j, e_ij))``.

    Subclasses define ``message`` (its arguments name what it needs: ``x_j``/``x_i``
    for the feature ``x`` passed to :meth:`propagate` at each edge's source/target — a
    pair ``(x_src, x_dst)`` gives the source part to ``_j`` and the target part to
    ``_i`` —, other keywords as given, and ``index``, ``size_i``, ``edge_index``);
    ``aggregate`` (default: the ``aggr`` reduction over the target of each edge);
    ``update`` (default: identity). ``message_and_aggregate(edge_index, size, **kw)``
    may return the aggregated result directly (a fused path) or ``None``.
    """

    def __init__(self, aggr="add", flow="source_to_target"):
        super().__init__()
        if aggr not in _AGGREGATORS:
            raise ValueError(f"{type(self).__name__}: aggr must be one of "
                             f"{sorted(_AGGREGATORS)}, got {aggr!r}")
        if flow not in ("source_to_target", "target_to_source"):
            raise ValueError(f"{type(self).__name__}: flow must be 'source_to_target' or "
                             f"'target_to_source', got {flow!r}")
        self.aggr = aggr
        self.flow = flow
        self.fuse = True
        cls = type(self)
        if "_mp_args" not in cls.__dict__:
            cls._mp_args = (self._args(cls.message), self._args(cls.aggregate)[1:],
                            self._args(cls.update)[1:])

    @staticmethod
    def _args(fn):
        return tuple(p for p in inspect.signature(fn).parameters if p != "self")

    def propagate(self, edge_index, size=None, **kwargs):
        """Run message → aggregate → update over ``edge_index`` (2, E). ``size`` is the
        number of nodes (or ``(n_src, n_dst)``); by default read from the features."""
        ei = _edge_index(edge_index, f"{type(self).__name__}.propagate")
        j, i = (0, 1) if self.flow == "source_to_target" else (1, 0)
        n_src, n_dst = self._sizes(size, kwargs)
        _check_nodes(ei[j], n_src, f"{type(self).__name__}.propagate")
        _check_nodes(ei[i], n_dst, f"{type(self).__name__}.propagate")
        if self.fuse:
            fused = self.message_and_aggregate(ei, (n_src, n_dst), **kwargs)
            if fused is not None:
                return self._update(fused, kwargs)
        src, dst = _index(ei[j]), _index(ei[i])
        msg_args, aggr_args, _ = type(self)._mp_args
        call = {}
        for name in msg_args:
            if name.endswith(("_i", "_j")) and name[:-2] in kwargs:
                value = kwargs[name[:-2]]
                if isinstance(value, (tuple, list)):
                    value = value[1] if name.endswith("_i") else value[0]
                call[name] = None if value is None else \
                    gather_raw(value, dst if name.endswith("_i") else src)
            elif name == "index":
                call[name] = dst
            elif name in ("size_i", "dim_size"):
                call[name] = n_dst
            elif name == "size_j":
                call[name] = n_src
            elif name == "edge_index":
                call[name] = ei
            else:
                call[name] = kwargs.get(name)
        messages = self.message(**call)
        extra = {k: kwargs[k] for k in aggr_args if k in kwargs and k not in _SPECIAL}
        out = self.aggregate(messages, index=dst, dim_size=n_dst, **extra)
        return self._update(out, kwargs)

    def _sizes(self, size, kwargs):
        if size is not None:
            return (int(size), int(size)) if isinstance(size, (int, np.integer)) \
                else (int(size[0]), int(size[1]))
        n_src = n_dst = None
        for v in kwargs.values():
            if isinstance(v, (tuple, list)) and len(v) == 2:
                if n_src is None and isinstance(v[0], (Tensor, SparseMatrix)):
                    n_src = _rows(v[0])
                if n_dst is None and isinstance(v[1], (Tensor, SparseMatrix)):
                    n_dst = _rows(v[1])
            elif isinstance(v, (Tensor, SparseMatrix)) and v.ndim >= 1 and n_src is None:
                n_src = _rows(v)
        if n_src is None:
            raise ValueError(f"{type(self).__name__}.propagate: cannot tell the number of "
                             f"nodes; pass size=")
        return n_src, (n_dst if n_dst is not None else n_src)

    def _update(self, out, kwargs):
        names = type(self)._mp_args[2]
        return self.update(out, **{k: kwargs.get(k) for k in names})

    def message(self, x_j):
        return x_j

    def aggregate(self, inputs, index, dim_size):
        return _AGGREGATORS[self.aggr](inputs, index, dim_size)

    def message_and_aggregate(self, edge_index, size, **kwargs):
        return None

    def update(self, aggr_out):
        return aggr_out

    def extra_repr(self):
        return f"aggr={self.aggr!r}"


def _plain_add(self, edge_index, size, x=None, **kwargs):
    """Fused ``Σ_{j → i} x_j``: one sparse product with the transposed adjacency."""
    if self.aggr not in ("add", "sum") or self.flow != "source_to_target" or \
            not isinstance(x, Tensor) or kwargs:
        return None
    n_src, n_dst = size
    a = SparseMatrix.from_coo(edge_index[1], edge_index[0], None, (n_dst, n_src))
    return a.with_values(ops.ones((a.nnz,), dtype=x.dtype)) @ x


# ----------------------------------------------------------------------------- GCN
class GCNConv(MessagePassing):
    """Graph convolution (Kipf & Welling): ``x' = D^-1/2 Â D^-1/2 x W + b`` with
    ``Â = A + I`` (``A + 2I`` with ``improved``), normalised as PyTorch Geometric does:
    remaining self-loops added, degrees counted at the target of each edge.
    ``weight`` is ``(in, out)`` (Glorot), ``bias`` ``(out,)`` (zeros). ``cached=True``
    keeps the normalised matrix of the first call (transductive use on one graph)."""

    def __init__(self, in_channels, out_channels, improved=False, cached=False,
                 add_self_loops=True, normalize=True, bias=True, dtype=None, generator=None):
        super().__init__(aggr="add")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.improved, self.cached = improved, cached
        self.add_self_loops, self.normalize = add_self_loops, normalize
        self.weight = _param((in_channels, out_channels), dtype)
        init.xavier_uniform_(self.weight, generator=generator)
        if bias:
            self.bias = _param((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self._cache = None

    def forward(self, x, edge_index, edge_weight=None):
        h = _project(x, self.weight)
        n = _rows(h)
        if self.cached and self._cache is not None:
            ei, w, _ = self._cache
        else:
            ei, w = self._normalized(_edge_index(edge_index, "GCNConv"), n, edge_weight, h.dtype)
        out = self.propagate(ei, x=h, edge_weight=w, size=n)
        return out + self.bias if self.bias is not None else out

    def _normalized(self, ei, n, edge_weight, dtype):
        _check_nodes(ei, n, "GCNConv")
        if self.normalize:
            ei, w = gcn_norm(ei, edge_weight, n, self.improved, self.add_self_loops, dtype)
        else:
            w = edge_scalars(edge_weight, ei.shape[1], "GCNConv")
            w = w if w is not None else Tensor(np.ones(ei.shape[1], dtype=dtype))
        if w.dtype != dtype:
            w = w.astype(dtype)
        if self.cached:
            self._cache = (ei, w, None)
        return ei, w

    def message_and_aggregate(self, edge_index, size, x, edge_weight):
        """Fused path: ``P @ x`` with ``P[i, j]`` the normalised weight of ``j → i``."""
        n_src, n_dst = size
        if self.cached and self._cache is not None and self._cache[0] is edge_index:
            if self._cache[2] is None:
                self._cache = self._cache[:2] + (SparseMatrix.from_coo(
                    edge_index[1], edge_index[0], edge_weight, (n_dst, n_src)),)
            return self._cache[2] @ x
        return SparseMatrix.from_coo(edge_index[1], edge_index[0], edge_weight,
                                     (n_dst, n_src)) @ x

    def message(self, x_j, edge_weight):
        return x_j if edge_weight is None else edge_weight.reshape(-1, 1) * x_j

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, improved={self.improved}"


def gcn_conv(x, edge_index, weight, bias=None, edge_weight=None, improved=False,
             add_self_loops=True, normalize=True):
    """Functional GCN layer (see :class:`GCNConv`)."""
    h = _project(x, weight)
    n = _rows(h)
    ei = _edge_index(edge_index, "gcn_conv")
    _check_nodes(ei, n, "gcn_conv")
    if normalize:
        ei, w = gcn_norm(ei, edge_weight, n, improved, add_self_loops, h.dtype)
    else:
        w = edge_weight if edge_weight is not None else Tensor(np.ones(ei.shape[1], h.dtype))
    out = SparseMatrix.from_coo(ei[1], ei[0], w.astype(h.dtype), (n, n)) @ h
    return out + bias if bias is not None else out


# ----------------------------------------------------------------------------- GAT
class GATConv(MessagePassing):
    """Graph attention (Veličković et al.): per head,
    ``α_ij = softmax_j(LeakyReLU(a_srcᵀ W x_j + a_dstᵀ W x_i))`` over the edges entering
    ``i`` (self-loop included), ``x'_i = Σ_j α_ij W x_j``; heads concatenated (or
    averaged with ``concat=False``). Parameters as PyTorch Geometric's: ``weight``
    ``(in, heads·out)``, ``att_src`` and ``att_dst`` ``(heads, out)``, ``bias``.
    Existing self-loops are removed and one added per node; ``dropout`` acts on the
    attention coefficients in training."""

    def __init__(self, in_channels, out_channels, heads=1, concat=True, negative_slope=0.2,
                 dropout=0.0, add_self_loops=True, bias=True, dtype=None, generator=None):
        super().__init__(aggr="add")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.negative_slope, self.dropout = concat, negative_slope, dropout
        self.add_self_loops = add_self_loops
        self.generator = generator
        self.weight = _param((in_channels, heads * out_channels), dtype)
        self.att_src = _param((heads, out_channels), dtype)
        self.att_dst = _param((heads, out_channels), dtype)
        for p in (self.weight, self.att_src, self.att_dst):
            init.xavier_uniform_(p, generator=generator)
        if bias:
            self.bias = _param((heads * out_channels if concat else out_channels,), dtype)
        else:
            self.register_parameter("bias", None)

    def forward(self, x, edge_index, return_attention_weights=False):
        h = _project(x, self.weight)
        n = _rows(h)
        h = h.reshape(n, self.heads, self.out_channels)
        a_src = (h * self.att_src).sum(-1)
        a_dst = (h * self.att_dst).sum(-1)
        ei = _edge_index(edge_index, "GATConv")
        _check_nodes(ei, n, "GATConv")
        if self.add_self_loops:
            keep = ei[0] != ei[1]
            loops = np.arange(n, dtype=np.int64)
            ei = np.concatenate([ei[:, keep], np.stack([loops, loops])], axis=1)
        out = self.propagate(ei, x=h, alpha=(a_src, a_dst), size=n)
        alpha = self._alpha
        self._alpha = None
        out = out.reshape(n, self.heads * self.out_channels) if self.concat else out.mean(1)
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            return out, (ei, alpha)
        return out

    def message(self, x_j, alpha_j, alpha_i, index, size_i):
        alpha = self._attention(alpha_j, alpha_i, index, size_i)
        return x_j * alpha.reshape(alpha.shape + (1,))

    def _attention(self, alpha_j, alpha_i, index, size_i):
        score = F.leaky_relu(alpha_j + alpha_i, self.negative_slope)
        alpha = ops.segment_softmax(score, index, size_i)
        self._alpha = alpha
        return F.dropout(alpha, self.dropout, self.training, self.generator)

    def message_and_aggregate(self, edge_index, size, x, alpha):
        """Fused path: attention per edge and head, then one multi-head sparse product
        (no per-edge copy of the features)."""
        src, dst = _index(edge_index[0]), _index(edge_index[1])
        a = self._attention(gather_raw(alpha[0], src), gather_raw(alpha[1], dst), dst, size[1])
        return SparseMatrix.from_coo(edge_index[1], edge_index[0], a, (size[1], size[0])) @ x

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, heads={self.heads}"


def gat_conv(x, edge_index, weight, att_src, att_dst, bias=None, heads=1, concat=True,
             negative_slope=0.2, dropout=0.0, training=False, add_self_loops=True,
             generator=None, return_attention_weights=False):
    """Functional GAT layer (see :class:`GATConv`); ``out_channels`` is read from
    ``att_src`` (heads, out)."""
    h = _project(x, weight)
    n = _rows(h)
    c = att_src.shape[-1]
    h = h.reshape(n, heads, c)
    ei = _edge_index(edge_index, "gat_conv")
    _check_nodes(ei, n, "gat_conv")
    if add_self_loops:
        loops = np.arange(n, dtype=np.int64)
        ei = np.concatenate([ei[:, ei[0] != ei[1]], np.stack([loops, loops])], axis=1)
    src, dst = _index(ei[0]), _index(ei[1])
    score = F.leaky_relu(gather_raw((h * att_src).sum(-1), src)
                         + gather_raw((h * att_dst).sum(-1), dst), negative_slope)
    alpha = ops.segment_softmax(score, dst, n)
    a = F.dropout(alpha, dropout, training, generator)
    out = segment_sum_raw(gather_raw(h, src) * a.reshape(a.shape + (1,)), dst, n)
    out = out.reshape(n, heads * c) if concat else out.mean(1)
    out = out + bias if bias is not None else out
    return (out, (ei, alpha)) if return_attention_weights else out


# ----------------------------------------------------------------------------- GIN
class GINConv(MessagePassing):
    """Graph isomorphism network layer (Xu et al.): ``x'_i = nn((1 + ε) x_i + Σ_j x_j)``.
    ``ε`` is a learned parameter with ``train_eps=True``, else the constant ``eps``."""

    def __init__(self, nn, eps=0.0, train_eps=False):
        super().__init__(aggr="add")
        self.nn = nn
        self.initial_eps = float(eps)
        if train_eps:
            self.eps = Parameter(np.array([eps], dtype=dtypes.get_default_dtype()))
        else:
            self.eps = float(eps)

    def forward(self, x, edge_index, size=None):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        out = self.propagate(edge_index, x=x, size=size)
        eps = self.eps
        root = x * (1.0 + eps) if not isinstance(eps, Tensor) else x * (eps + 1.0)
        if isinstance(eps, float) and eps == 0.0:
            root = x
        return self.nn(out + root)

    message_and_aggregate = _plain_add

    def extra_repr(self):
        return f"eps={self.initial_eps}, train_eps={isinstance(self.eps, Tensor)}"


def gin_conv(x, edge_index, nn, eps=0.0):
    """Functional GIN layer: ``nn((1 + eps) x_i + Σ_{j → i} x_j)``."""
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    ei = _edge_index(edge_index, "gin_conv")
    n = _rows(x)
    _check_nodes(ei, n, "gin_conv")
    agg = segment_sum_raw(gather_raw(x, _index(ei[0])), _index(ei[1]), n)
    return nn(agg + x * (1.0 + eps))


# ----------------------------------------------------------------------------- GraphSAGE
class SAGEConv(MessagePassing):
    """GraphSAGE (Hamilton et al.): ``x'_i = W_l · aggr_{j → i} x_j + W_r x_i (+ b)``
    with ``aggr`` mean (default), max or add; ``normalize`` scales outputs to unit
    norm. ``lin_l`` carries the bias, ``lin_r`` none (as PyTorch Geometric)."""

    def __init__(self, in_channels, out_channels, aggr="mean", normalize=False,
                 root_weight=True, bias=True, dtype=None, generator=None):
        super().__init__(aggr=aggr)

        self.in_channels, self.out_channels = in_channels, out_channels
        self.normalize, self.root_weight = normalize, root_weight
        self.lin_l = Linear(in_channels, out_channels, bias=bias, dtype=dtype, generator=generator)
        if root_weight:
            self.lin_r = Linear(in_channels, out_channels, bias=False, dtype=dtype,
                                generator=generator)

    def forward(self, x, edge_index, size=None):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
        out = self.lin_l(self.propagate(edge_index, x=x, size=size))
        if self.root_weight:
            out = out + self.lin_r(x)
        if self.normalize:
            norm = ops.sqrt((out * out).sum(-1, keepdims=True))
            out = out / ops.maximum(norm, 1e-12)
        return out

    message_and_aggregate = _plain_add

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, aggr={self.aggr!r}"


def sage_conv(x, edge_index, weight_l, bias_l=None, weight_r=None, aggr="mean"):
    """Functional GraphSAGE layer: ``aggr_{j → i}(x_j) @ weight_l + bias_l + x @ weight_r``."""
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    ei = _edge_index(edge_index, "sage_conv")
    n = _rows(x)
    _check_nodes(ei, n, "sage_conv")
    agg = _AGGREGATORS[aggr](gather_raw(x, _index(ei[0])), _index(ei[1]), n)
    out = F.linear(agg, weight_l, bias_l)
    return out + x @ weight_r if weight_r is not None else out


# ----------------------------------------------------------------------------- readouts
def _batch_ids(batch, x, size, what):
    if batch is None:
        return Tensor(np.zeros(_rows(x), dtype=np.int64)), 1
    b = batch if isinstance(batch, Tensor) else Tensor(np.asarray(batch))
    if b.dtype.kind not in "iu" or b.ndim != 1 or b.shape[0] != _rows(x):
        raise ValueError(f"{what}: batch must be an integer vector with one entry per node "
                         f"({_rows(x)}), got {b.dtype} {b.shape}")
    if size is None:
        size = int(read_values(b, what).max()) + 1 if b.size else 0
    return b, int(size)


def global_add_pool(x, batch=None, size=None) -> Tensor:
    """Sum of the node features of each graph: ``(num_graphs, c)``; ``batch`` gives the
    graph of each node (all nodes one graph when ``None``), ``size`` the number of
    graphs (default ``max(batch) + 1``)."""
    b, size = _batch_ids(batch, x, size, "global_add_pool")
    return ops.segment_sum(x, b, size)


def global_mean_pool(x, batch=None, size=None) -> Tensor:
    """Mean of the node features of each graph (0 for a graph without nodes)."""
    b, size = _batch_ids(batch, x, size, "global_mean_pool")
    return ops.segment_mean(x, b, size)


def global_max_pool(x, batch=None, size=None) -> Tensor:
    """Elementwise maximum of the node features of each graph."""
    b, size = _batch_ids(batch, x, size, "global_max_pool")
    return ops.segment_max(x, b, size)


class AttentionalAggregation(Module):
    """Attention readout (Li et al., gated graph networks): weights
    ``softmax_{nodes of the graph}(gate_nn(x))`` and the sum of ``nn(x)`` (or ``x``)
    under them, per graph."""

    def __init__(self, gate_nn, nn=None):
        super().__init__()
        self.gate_nn = gate_nn
        self.nn = nn

    def forward(self, x, batch=None, size=None):
        b, size = _batch_ids(batch, x, size, "AttentionalAggregation")
        gate = self.gate_nn(x)
        if gate.ndim == 1:
            gate = gate.reshape(-1, 1)
        weights = ops.segment_softmax(gate, b, size)
        value = self.nn(x) if self.nn is not None else x
        return ops.segment_sum(weights * value, b, size)


# ----------------------------------------------------------------------------- graph transformer
def attention_pairs(batch, num_graphs=None):
    """Every ordered pair of nodes of one graph in a batch, as ``(src, dst)`` int64
    arrays sorted by target (``dst``) then source: full attention within each graph as
    a sparsity pattern of ``Σ n_g²`` entries (no padding). Vectorised over graphs."""
    b = np.asarray(read_values(batch, "attention_pairs")).astype(np.int64)
    if b.size and (np.diff(b) < 0).any():
        raise ValueError("attention_pairs: the batch vector must be sorted (nodes of one "
                         "graph together, graphs in order)")
    g = int(num_graphs) if num_graphs is not None else (int(b.max()) + 1 if b.size else 0)
    counts = np.bincount(b, minlength=g)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    per_node = counts[b]                                 # pairs with each node as target
    dst = np.repeat(np.arange(b.size, dtype=np.int64), per_node)
    first = np.concatenate([[0], np.cumsum(per_node)])[:-1]
    src = ptr[b][dst] + (np.arange(dst.size) - first[dst])
    return src.astype(np.int64), dst


def distance_buckets(edge_index, batch, num_graphs=None, kind="spd", max_distance=5):
    """Integer attention-bias buckets, one per pair of :func:`attention_pairs` (same
    order). ``kind="spd"``: the shortest-path distance from the source to the target,
    clipped to ``max_distance``, unreachable pairs ``max_distance + 1``;
    ``kind="adjacency"``: 0 for a node and itself, 1 for an edge, 2 otherwise. Computed
    graph by graph (a breadth-first search from each node of each small graph, SciPy)."""
    if kind not in ("spd", "adjacency"):
        raise ValueError(f"distance_buckets: kind must be 'spd' or 'adjacency', got {kind!r}")
    ei = _edge_index(edge_index, "distance_buckets")
    b = np.asarray(read_values(batch, "distance_buckets")).astype(np.int64)
    g = int(num_graphs) if num_graphs is not None else (int(b.max()) + 1 if b.size else 0)
    counts = np.bincount(b, minlength=g)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    owner = b[ei[0]] if ei.size else np.zeros(0, dtype=np.int64)
    order = np.argsort(owner, kind="stable")
    ei, owner = ei[:, order], owner[order]
    edge_ptr = np.searchsorted(owner, np.arange(g + 1))
    blocks = []
    for k in range(g):                      # one small graph at a time
        n = int(counts[k])
        local = ei[:, edge_ptr[k]:edge_ptr[k + 1]] - ptr[k]
        if kind == "spd":
            d = shortest_path_distances(local, n)
            d = np.where(d < 0, max_distance + 1, np.minimum(d, max_distance))
        else:
            d = np.full((n, n), 2, dtype=np.int64)
            d[local[0], local[1]] = 1
            np.fill_diagonal(d, 0)
        blocks.append(d.T.reshape(-1))     # row = target, column = source
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)


class GraphTransformerLayer(Module):
    """A pre-norm transformer block over the nodes of each graph: full multi-head
    attention among the nodes of one graph, with a learned bias per head for each
    structural bucket (shortest-path distance or adjacency, see
    :func:`distance_buckets`), then an MLP; each with a residual connection.

    Attention runs on the pattern of :func:`attention_pairs` (every pair of nodes of a
    graph): scores by a sampled dot product, a segment softmax over each node's pairs,
    values by a multi-head sparse product — no padding to the largest graph.
    ``forward(x, batch, buckets=None, pairs=None)``: ``x`` (N, c), ``batch`` (N,),
    ``buckets`` one int per pair (``None``: no bias), ``pairs`` from
    :func:`attention_pairs` (computed when not given). Positional and structural
    encodings are added to the node features before the first layer (see
    ``wl.models.GraphTransformer``)."""

    def __init__(self, channels, heads=4, num_buckets=8, dropout=0.0, ffn_factor=2,
                 generator=None):
        super().__init__()

        if channels % heads:
            raise ValueError(f"GraphTransformerLayer: heads={heads} must divide "
                             f"channels={channels}")
        self.channels, self.heads = channels, heads
        self.norm1, self.norm2 = LayerNorm(channels), LayerNorm(channels)
        self.q = Linear(channels, channels, generator=generator)
        self.k = Linear(channels, channels, generator=generator)
        self.v = Linear(channels, channels, generator=generator)
        self.out = Linear(channels, channels, generator=generator)
        self.ffn1 = Linear(channels, ffn_factor * channels, generator=generator)
        self.ffn2 = Linear(ffn_factor * channels, channels, generator=generator)
        self.bias = Embedding(num_buckets, heads, generator=generator) if num_buckets else None
        if self.bias is not None:
            self.bias.weight.data[...] = 0.0
        self.drop = Dropout(dropout, generator)
        self.num_buckets = num_buckets

    def forward(self, x, batch, buckets=None, pairs=None):
        n = _rows(x)
        src, dst = pairs if pairs is not None else attention_pairs(batch)
        pattern = SparseMatrix.from_coo(dst, src, None, (n, n))
        hd = self.channels // self.heads
        h = self.norm1(x)
        q, k, v = (lin(h).reshape(n, self.heads, hd) for lin in (self.q, self.k, self.v))
        scores = sampled_dot(pattern, q, k, heads=True) * (1.0 / math.sqrt(hd))
        if buckets is not None and self.bias is not None:
            bk = np.asarray(read_values(buckets, "GraphTransformerLayer"))
            if bk.shape != (pattern.nnz,):
                raise ValueError(f"GraphTransformerLayer: {bk.shape} buckets for "
                                 f"{pattern.nnz} node pairs (one per pair of "
                                 f"attention_pairs expected)")
            if bk.size and (bk.min() < 0 or bk.max() >= self.num_buckets):
                raise IndexError(f"GraphTransformerLayer: bucket {int(bk.max())} out of range "
                                 f"for num_buckets={self.num_buckets}")
            # one row of the bias table per pair (its gradient: a segment sum)
            scores = scores + gather_raw(self.bias.weight, Tensor(bk))
        alpha = self.drop(ops.segment_softmax(scores, dst, n))
        ctx = (pattern.with_values(alpha) @ v).reshape(n, self.channels)
        x = x + self.drop(self.out(ctx))
        return x + self.drop(self.ffn2(F.relu(self.ffn1(self.norm2(x)))))

    def extra_repr(self):
        return f"{self.channels}, heads={self.heads}, num_buckets={self.num_buckets}"
