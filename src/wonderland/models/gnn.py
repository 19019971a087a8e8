"""Reference graph models (chapter 12), built only from ``wl.nn``: a GCN (optionally
deep, with residual connections and normalisation), a GAT, a GIN for graph
classification, a graph transformer, and an encoder–decoder for link prediction."""

from __future__ import annotations

import numpy as np

from .. import nn, ops
from ..core.tensor import Tensor
from ..graph import utils as gu
from ..nn import functional as F
from ..ops.sparse import SparseMatrix

__all__ = ["GCN", "GAT", "GIN", "GraphTransformer", "LinkPredictor", "feature_dropout"]


def feature_dropout(x, p, training, generator=None):
    """Inverted dropout on node features, dense or sparse (on a :class:`SparseMatrix`
    it drops stored entries, as Kipf & Welling's sparse dropout).

    The mask is drawn as 16-bit random integers (a fraction of the cost of float64
    uniforms on a feature matrix of millions of entries): an entry is dropped with
    probability ``p' = round(65536 p) / 65536`` (within 1e-5 of ``p``) and survivors
    are scaled by ``1 / (1 - p')``, so the expectation is exactly preserved."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"feature_dropout: p must be in [0, 1), got {p}")
    from ..random import get_generator

    target = x.values if isinstance(x, SparseMatrix) else x
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target, dtype=np.float32))
    cut = int(round(p * 65536))
    bits = get_generator(generator).randint(0, 65536, target.shape, dtype=np.uint16)
    scale = 65536.0 / (65536 - cut)
    mask = (bits >= cut).astype(target.dtype) * scale
    out = target * mask
    return x.with_values(out) if isinstance(x, SparseMatrix) else out


class GCN(nn.Module):
    """``num_layers`` graph convolutions with ReLU and dropout between them.

    ``residual=True`` adds each hidden layer's input to its output (where widths
    agree); ``norm="layer"`` or ``"batch"`` normalises hidden features after each
    convolution. ``forward(x, edge_index, edge_weight=None, return_hidden=False)``
    returns the output (and, on request, the list of hidden representations)."""

    def __init__(self, in_channels, hidden, out_channels, num_layers=2, dropout=0.5,
                 residual=False, norm=None, cached=False, generator=None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"GCN: num_layers must be at least 1, got {num_layers}")
        widths = [in_channels] + [hidden] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList([nn.GCNConv(a, b, cached=cached, generator=generator)
                                    for a, b in zip(widths[:-1], widths[1:])])
        if norm not in (None, "layer", "batch"):
            raise ValueError(f"GCN: norm must be None, 'layer' or 'batch', got {norm!r}")
        make = {"layer": lambda c: nn.LayerNorm(c), "batch": lambda c: nn.BatchNorm1d(c)}.get(norm)
        self.norms = nn.ModuleList([make(hidden) for _ in range(num_layers - 1)]) if make else None
        self.dropout, self.residual, self.generator = dropout, residual, generator

    def forward(self, x, edge_index, edge_weight=None, return_hidden=False):
        hidden = []
        last = len(self.convs) - 1
        for k, conv in enumerate(self.convs):
            h_in = x
            x = conv(feature_dropout(x, self.dropout, self.training, self.generator),
                     edge_index, edge_weight)
            if k < last:
                if self.norms is not None:
                    x = self.norms[k](x)
                x = F.relu(x)
                if self.residual and isinstance(h_in, Tensor) and h_in.shape == x.shape:
                    x = x + h_in
                hidden.append(x)
        return (x, hidden) if return_hidden else x


class GAT(nn.Module):
    """Two GAT layers as Veličković et al. use on citation graphs: ``heads`` heads of
    ``hidden`` features (concatenated, ELU), then ``out_heads`` averaged output heads;
    dropout ``dropout`` on the inputs of both layers and on the attention."""

    def __init__(self, in_channels, hidden, out_channels, heads=8, out_heads=1, dropout=0.6,
                 generator=None):
        super().__init__()
        self.conv1 = nn.GATConv(in_channels, hidden, heads=heads, dropout=dropout,
                                generator=generator)
        self.conv2 = nn.GATConv(hidden * heads, out_channels, heads=out_heads, concat=False,
                                dropout=dropout, generator=generator)
        self.dropout, self.generator = dropout, generator

    def forward(self, x, edge_index):
        x = feature_dropout(x, self.dropout, self.training, self.generator)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training, self.generator)
        return self.conv2(x, edge_index)


class GIN(nn.Module):
    """The graph-classification GIN of Xu et al. (2019): ``num_layers`` GIN layers, each
    a two-layer MLP with batch norm, and a readout that sums every layer's graph-level
    sum (input included) through its own linear classifier."""

    def __init__(self, in_channels, hidden, out_channels, num_layers=4, dropout=0.5,
                 train_eps=False, generator=None):
        super().__init__()
        convs, norms = [], []
        width = in_channels
        for _ in range(num_layers):
            mlp = nn.Sequential(nn.Linear(width, hidden, generator=generator),
                                nn.BatchNorm1d(hidden), nn.ReLU(),
                                nn.Linear(hidden, hidden, generator=generator))
            convs.append(nn.GINConv(mlp, train_eps=train_eps))
            norms.append(nn.BatchNorm1d(hidden))
            width = hidden
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.heads = nn.ModuleList([nn.Linear(in_channels, out_channels, generator=generator)] +
                                   [nn.Linear(hidden, out_channels, generator=generator)
                                    for _ in range(num_layers)])
        self.dropout, self.generator = dropout, generator

    def forward(self, x, edge_index, batch, num_graphs=None):
        size = num_graphs
        out = self._head(0, x, batch, size)
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = F.relu(norm(conv(x, edge_index)))
            out = out + self._head(k + 1, x, batch, size)
        return out

    def _head(self, k, x, batch, size):
        pooled = nn.global_add_pool(x, batch, size)
        return F.dropout(self.heads[k](pooled), self.dropout, self.training, self.generator)


class GraphTransformer(nn.Module):
    """A graph transformer for graph classification: node features, Laplacian
    eigenvectors (``pe``, sign-flipped at random in training) and random-walk encodings
    (``rw``) each projected and summed; ``num_layers`` :class:`GraphTransformerLayer`
    blocks with a shortest-path (or adjacency) attention bias; mean readout; linear
    classifier. ``forward(x, batch, pe, rw, buckets)``."""

    def __init__(self, in_channels, channels, out_channels, num_layers=2, heads=4, pe_dim=8,
                 rw_dim=8, num_buckets=8, dropout=0.0, generator=None):
        super().__init__()
        self.embed = nn.Linear(in_channels, channels, generator=generator)
        self.pe = nn.Linear(pe_dim, channels, bias=False, generator=generator) if pe_dim else None
        self.rw = nn.Linear(rw_dim, channels, bias=False, generator=generator) if rw_dim else None
        self.layers = nn.ModuleList([nn.GraphTransformerLayer(channels, heads, num_buckets,
                                                              dropout, generator=generator)
                                     for _ in range(num_layers)])
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, out_channels, generator=generator)
        self.generator = generator

    def forward(self, x, batch, pe=None, rw=None, buckets=None, num_graphs=None, pairs=None):
        if pairs is None:
            pairs = nn.graph.attention_pairs(batch, num_graphs)
        h = self.embed(x)
        if self.pe is not None and pe is not None:
            if self.training:
                pe = gu.random_sign_flip(pe, self.generator)
            h = h + self.pe(pe)
        if self.rw is not None and rw is not None:
            h = h + self.rw(rw)
        for layer in self.layers:
            h = layer(h, batch, buckets, pairs)
        return self.head(nn.global_mean_pool(self.norm(h), batch, num_graphs))


class LinkPredictor(nn.Module):
    """An encoder (any ``module(x, edge_index) -> (n, d)``) and a decoder scoring node
    pairs: ``"dot"`` (``⟨z_u, z_v⟩``) or ``"mlp"`` (an MLP on ``z_u ⊙ z_v``).
    ``forward(x, edge_index, pairs)`` gives one logit per pair (2, k)."""

    def __init__(self, encoder, embed_dim, decoder="dot", hidden=64, generator=None):
        super().__init__()
        if decoder not in ("dot", "mlp"):
            raise ValueError(f"LinkPredictor: decoder must be 'dot' or 'mlp', got {decoder!r}")
        self.encoder = encoder
        self.decoder = decoder
        if decoder == "mlp":
            self.mlp = nn.MLP([embed_dim, hidden, 1], generator=generator)

    def encode(self, x, edge_index):
        return self.encoder(x, edge_index)

    def decode(self, z, pairs):
        p = pairs if isinstance(pairs, Tensor) else Tensor(np.asarray(pairs))
        zu = ops.gather_rows(z, p[0])
        zv = ops.gather_rows(z, p[1])
        if self.decoder == "dot":
            return (zu * zv).sum(-1)
        return self.mlp(zu * zv).reshape(-1)

    def forward(self, x, edge_index, pairs):
        return self.decode(self.encode(x, edge_index), pairs)
