"""Graph utilities on ``edge_index`` arrays (2, E): self-loops, symmetrisation,
degrees, normalised adjacency, k-hop neighbourhoods, structural encodings (Laplacian
eigenvectors, random-walk return probabilities, shortest-path distances), dense
batching.

Structure (``edge_index``) is integer data handled with NumPy, once per graph; edge
*weights* may be differentiable tensors, and everything computed from them here
(loop weights, normalisation, symmetrised weights) stays differentiable. No function
loops over nodes or edges in Python.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..core.tensor import Tensor
from ..core.tracing import read_values
from ..ops.segment import gather_raw, segment_sum_raw
from ..ops.sparse import SparseMatrix

__all__ = [
    "as_edge_index", "num_nodes_of", "remove_self_loops", "add_self_loops",
    "add_remaining_self_loops", "contains_self_loops", "coalesce", "to_undirected",
    "is_undirected", "degree", "gcn_norm", "adjacency_matrix", "normalized_adjacency",
    "to_dense_adj", "laplacian", "laplacian_eigenvectors", "random_sign_flip",
    "random_walk_encoding", "shortest_path_distances", "k_hop_subgraph", "subgraph",
    "to_dense_batch", "from_dense_batch",
]


def as_edge_index(edge_index, what="edge_index") -> np.ndarray:
    """``edge_index`` (array, list or int tensor) as an int64 NumPy array (2, E)."""
    ei = np.asarray(read_values(edge_index, what))
    if ei.size == 0:
        ei = ei.astype(np.int64).reshape(2, 0)
    if ei.dtype.kind not in "iu":
        raise TypeError(f"{what}: edge_index must hold integers, got {ei.dtype}")
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"{what}: edge_index must have shape (2, E) (row 0 sources, row 1 "
                         f"targets), got {ei.shape}")
    return ei.astype(np.int64, copy=False)


def num_nodes_of(edge_index, num_nodes=None) -> int:
    if num_nodes is not None:
        return int(num_nodes)
    ei = as_edge_index(edge_index)
    return int(ei.max()) + 1 if ei.size else 0


def _weights(edge_weight, e, what, dtype=np.float32):
    """Edge weights as a float tensor of shape (E,) (ones when ``None``)."""
    if edge_weight is None:
        return None
    w = edge_weight if isinstance(edge_weight, Tensor) else Tensor(np.asarray(edge_weight))
    if w.shape[:1] != (e,):
        raise ValueError(f"{what}: {w.shape[0] if w.ndim else 'scalar'} edge weights for "
                         f"{e} edges (shape {w.shape}); expected one row per edge")
    if w.dtype.kind != "f":
        w = w.astype(dtype)
    return w


def edge_scalars(edge_weight, e, what):
    """One weight per edge, shape (E,), from ``(E,)`` or ``(E, 1)`` (as PyTorch Geometric
    accepts); ``None`` stays ``None``."""
    w = _weights(edge_weight, e, what)
    if w is None or w.ndim == 1:
        return w
    if w.ndim == 2 and w.shape[1] == 1:
        return w.reshape(-1)
    raise ValueError(f"{what}: edge_weight must have shape (E,) or (E, 1) with E = {e}, got "
                     f"{tuple(w.shape)}")


def _const(a) -> Tensor:
    return Tensor(np.asarray(a))


# ----------------------------------------------------------------------------- self-loops
def contains_self_loops(edge_index) -> bool:
    ei = as_edge_index(edge_index)
    return bool((ei[0] == ei[1]).any())


def remove_self_loops(edge_index, edge_attr=None):
    """``(edge_index, edge_attr)`` without the edges ``i → i``."""
    ei = as_edge_index(edge_index, "remove_self_loops")
    keep = np.flatnonzero(ei[0] != ei[1])
    attr = _weights(edge_attr, ei.shape[1], "remove_self_loops")
    if attr is not None:
        attr = gather_raw(attr, _const(keep))
    return ei[:, keep], attr


def add_self_loops(edge_index, edge_attr=None, fill_value=1.0, num_nodes=None):
    """Append one edge ``i → i`` per node (after the existing edges, which stay);
    loop attributes are ``fill_value`` (a number, or a tensor of one row)."""
    ei = as_edge_index(edge_index, "add_self_loops")
    n = num_nodes_of(ei, num_nodes)
    loops = np.arange(n, dtype=np.int64)
    out = np.concatenate([ei, np.stack([loops, loops])], axis=1)
    attr = _weights(edge_attr, ei.shape[1], "add_self_loops")
    if attr is None:
        return out, None
    fill = ops.broadcast_to(ops.astype(fill_value if isinstance(fill_value, Tensor)
                                       else _const(np.asarray(fill_value, dtype=attr.dtype)),
                                       attr.dtype), (n,) + tuple(attr.shape[1:]))
    return out, ops.concatenate([attr, fill], axis=0)


def add_remaining_self_loops(edge_index, edge_weight=None, fill_value=1.0, num_nodes=None):
    """Give every node exactly one self-loop, as PyTorch Geometric does: existing loops
    are taken out of the edge list and one loop per node is appended; a node that had a
    loop keeps its weight (the last one listed), the others get ``fill_value``.
    Returns ``(edge_index, edge_weight)`` (weight ``None`` when none was given)."""
    ei = as_edge_index(edge_index, "add_remaining_self_loops")
    n = num_nodes_of(ei, num_nodes)
    is_loop = ei[0] == ei[1]
    keep = np.flatnonzero(~is_loop)
    loops = np.arange(n, dtype=np.int64)
    out = np.concatenate([ei[:, keep], np.stack([loops, loops])], axis=1)
    w = _weights(edge_weight, ei.shape[1], "add_remaining_self_loops")
    if w is None:
        return out, None
    loop_pos = np.flatnonzero(is_loop)
    fill = _const(np.full((n,) + tuple(w.shape[1:]), fill_value, dtype=w.dtype))
    if loop_pos.size:
        owner = ei[0, loop_pos]
        last = np.full(n, -1, dtype=np.int64)
        last[owner] = loop_pos                       # later loops overwrite earlier ones
        has = last >= 0
        picked = gather_raw(w, _const(np.where(has, last, 0)))
        mask = _const(has.reshape((n,) + (1,) * (w.ndim - 1)))
        fill = ops.where(mask, picked, fill)
    return out, ops.concatenate([gather_raw(w, _const(keep)), fill], axis=0)


# ----------------------------------------------------------------------------- structure
def coalesce(edge_index, edge_attr=None, num_nodes=None, reduce="add"):
    """Sort edges by (source, target) and merge repeats; their attributes are combined
    with ``reduce`` (``"add"``, ``"mean"`` or ``"max"``)."""
    ei = as_edge_index(edge_index, "coalesce")
    n = num_nodes_of(ei, num_nodes)
    key = ei[0] * max(n, 1) + ei[1]
    uniq, inverse = np.unique(key, return_inverse=True)
    out = np.stack([uniq // max(n, 1), uniq % max(n, 1)]).astype(np.int64)
    attr = _weights(edge_attr, ei.shape[1], "coalesce")
    if attr is None:
        return out, None
    fn = {"add": ops.segment_sum, "sum": ops.segment_sum, "mean": ops.segment_mean,
          "max": ops.segment_max}.get(reduce)
    if fn is None:
        raise ValueError(f"coalesce: reduce must be 'add', 'mean' or 'max', got {reduce!r}")
    return out, fn(attr, inverse.reshape(-1), len(uniq))


def to_undirected(edge_index, edge_attr=None, num_nodes=None, reduce="add"):
    """Add the reverse of every edge and merge repeats (coalesced, sorted). Attributes
    of an edge and its reverse are combined with ``reduce``, as PyTorch Geometric."""
    ei = as_edge_index(edge_index, "to_undirected")
    both = np.concatenate([ei, ei[::-1]], axis=1)
    attr = _weights(edge_attr, ei.shape[1], "to_undirected")
    if attr is not None:
        attr = ops.concatenate([attr, attr], axis=0)
    return coalesce(both, attr, num_nodes, reduce)


def is_undirected(edge_index, num_nodes=None) -> bool:
    """Whether every edge ``i → j`` has its reverse ``j → i``."""
    ei = as_edge_index(edge_index)
    n = max(num_nodes_of(ei, num_nodes), 1)
    fwd = np.unique(ei[0] * n + ei[1])
    bwd = np.unique(ei[1] * n + ei[0])
    return fwd.shape == bwd.shape and bool((fwd == bwd).all())


def degree(index, num_nodes=None, weight=None, dtype=np.float32) -> Tensor:
    """How many entries of ``index`` name each node (``edge_index[1]``: in-degree,
    ``edge_index[0]``: out-degree); with ``weight``, the weighted sum (differentiable)."""
    idx = np.asarray(read_values(index, "degree")).astype(np.int64, copy=False).reshape(-1)
    n = int(num_nodes) if num_nodes is not None else (int(idx.max()) + 1 if idx.size else 0)
    if weight is None:
        return Tensor(np.bincount(idx, minlength=n).astype(dtype))
    return ops.segment_sum(_weights(weight, idx.shape[0], "degree"), idx, n)


def gcn_norm(edge_index, edge_weight=None, num_nodes=None, improved=False,
             add_self_loops=True, dtype=np.float32):
    """The GCN normalisation of Kipf & Welling, as PyTorch Geometric computes it:
    remaining self-loops (weight 1, or 2 with ``improved``), degree counted at the
    target, weight ``w_ij / sqrt(deg_i deg_j)`` (0 where a degree is 0).
    Returns ``(edge_index, weight)``; the weight is differentiable in ``edge_weight``
    (without weights it is a constant of ``dtype``)."""
    ei = as_edge_index(edge_index, "gcn_norm")
    n = num_nodes_of(ei, num_nodes)
    fill = 2.0 if improved else 1.0
    if edge_weight is None:                      # pure structure: NumPy, no graph
        w = np.ones(ei.shape[1])
        if add_self_loops:                       # a node's existing loop keeps weight 1
            is_loop = ei[0] == ei[1]
            loop_w = np.full(n, fill)
            loop_w[ei[0, is_loop]] = 1.0
            ei, _ = add_remaining_self_loops(ei, None, fill, n)
            w = np.concatenate([np.ones(ei.shape[1] - n), loop_w])
        deg = np.bincount(ei[1], weights=w, minlength=n)
        with np.errstate(divide="ignore"):
            inv = np.where(deg > 0, deg ** -0.5, 0.0)
        return ei, Tensor((inv[ei[0]] * w * inv[ei[1]]).astype(dtype))
    w = edge_scalars(edge_weight, ei.shape[1], "gcn_norm")
    if add_self_loops:
        ei, w = add_remaining_self_loops(ei, w, fill, n)
    deg = segment_sum_raw(w, _const(ei[1]), n)
    safe = ops.where(deg > 0, deg, 1.0)
    inv = ops.where(deg > 0, safe ** -0.5, 0.0)
    return ei, gather_raw(inv, _const(ei[0])) * w * gather_raw(inv, _const(ei[1]))


def adjacency_matrix(edge_index, num_nodes=None, edge_weight=None,
                     transpose=False) -> SparseMatrix:
    """The adjacency matrix as a :class:`SparseMatrix`: ``A[i, j]`` is the weight of
    the edge ``i → j``. With ``transpose=True``, ``Aᵀ`` — rows are targets, so
    ``Aᵀ @ x`` sums each node's incoming messages."""
    ei = as_edge_index(edge_index, "adjacency_matrix")
    n = num_nodes_of(ei, num_nodes)
    w = _weights(edge_weight, ei.shape[1], "adjacency_matrix")
    r, c = (ei[1], ei[0]) if transpose else (ei[0], ei[1])
    return SparseMatrix.from_coo(r, c, w, (n, n))


def normalized_adjacency(edge_index, num_nodes=None, edge_weight=None, improved=False,
                         add_self_loops=True) -> SparseMatrix:
    """GCN's propagation matrix ``D^-1/2 (A + I)ᵀ D^-1/2`` (rows are targets), so that
    ``P @ x`` aggregates each node's normalised incoming messages."""
    ei, w = gcn_norm(edge_index, edge_weight, num_nodes, improved, add_self_loops)
    n = num_nodes_of(edge_index, num_nodes)
    return SparseMatrix.from_coo(ei[1], ei[0], w, (n, n))


def to_dense_adj(edge_index, num_nodes=None, edge_weight=None) -> Tensor:
    """The dense ``(n, n)`` adjacency ``A[i, j] = Σ w(i → j)`` (differentiable in the
    weights)."""
    return adjacency_matrix(edge_index, num_nodes, edge_weight).to_dense()


def _scipy_adj(ei, n, dtype=np.float64):
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(ei.shape[1], dtype=dtype), (ei[0], ei[1])), shape=(n, n))


def laplacian(edge_index, num_nodes=None, normalization="sym"):
    """The graph Laplacian as a SciPy matrix: ``"sym"`` ``I - D^-1/2 A D^-1/2``,
    ``"rw"`` ``I - D^-1 A``, ``None`` ``D - A`` (A symmetrised, repeats counted once)."""
    import scipy.sparse as sp

    ei = as_edge_index(edge_index, "laplacian")
    n = num_nodes_of(ei, num_nodes)
    ei, _ = remove_self_loops(ei)
    a = _scipy_adj(ei, n)
    a = ((a + a.T) > 0).astype(np.float64)
    deg = np.asarray(a.sum(axis=1)).ravel()
    if normalization is None:
        return sp.diags(deg) - a
    with np.errstate(divide="ignore"):
        if normalization == "sym":
            inv = np.where(deg > 0, deg ** -0.5, 0.0)
            return sp.identity(n) - sp.diags(inv) @ a @ sp.diags(inv)
        if normalization == "rw":
            inv = np.where(deg > 0, 1.0 / deg, 0.0)
            return sp.identity(n) - sp.diags(inv) @ a
    raise ValueError(f"laplacian: normalization must be 'sym', 'rw' or None, got "
                     f"{normalization!r}")


def laplacian_eigenvectors(edge_index, num_nodes=None, k=8, dtype=np.float32) -> np.ndarray:
    """Laplacian positional encodings: the eigenvectors of the symmetric normalised
    Laplacian for the ``k`` smallest eigenvalues after the first (whose eigenvector
    only reflects degrees), as columns of an ``(n, k)`` array; zero columns pad graphs
    with fewer than ``k + 1`` nodes. Their signs are arbitrary: train with
    :func:`random_sign_flip`."""
    n = num_nodes_of(edge_index, num_nodes)
    out = np.zeros((n, k), dtype=dtype)
    if n <= 1 or k == 0:
        return out
    lap = laplacian(edge_index, n, "sym")
    if n <= 1000:
        vals, vecs = np.linalg.eigh(lap.toarray())
    else:
        import scipy.sparse.linalg as sla

        vals, vecs = sla.eigsh(lap.tocsc(), k=min(k + 1, n - 1), which="SM", tol=1e-6)
        order = np.argsort(vals)
        vals, vecs = vals[order], vecs[:, order]
    vecs = vecs[:, 1:k + 1]
    out[:, :vecs.shape[1]] = vecs
    return out


def random_sign_flip(pe, generator=None) -> Tensor:
    """``pe`` with each column multiplied by an independent random sign (eigenvectors
    are only defined up to sign; flipping during training teaches invariance)."""
    from ..random import get_generator

    pe = pe if isinstance(pe, Tensor) else Tensor(np.asarray(pe))
    signs = get_generator(generator).randint(0, 2, (pe.shape[-1],)).astype(pe.dtype) * 2.0 - 1.0
    return pe * signs


def random_walk_encoding(edge_index, num_nodes=None, walk_length=8,
                         dtype=np.float32) -> np.ndarray:
    """Random-walk structural encodings: ``[P_ii, (P²)_ii, ..., (P^K)_ii]`` for each
    node, where ``P = D^-1 A`` is the random-walk matrix (probability that a walk from
    ``i`` is back at ``i`` after k steps), as an ``(n, K)`` array."""
    ei = as_edge_index(edge_index, "random_walk_encoding")
    n = num_nodes_of(ei, num_nodes)
    a = _scipy_adj(ei, n)
    deg = np.asarray(a.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(deg > 0, 1.0 / deg, 0.0)
    import scipy.sparse as sp

    p = sp.diags(inv) @ a
    out = np.zeros((n, walk_length), dtype=dtype)
    if n == 0:
        return out
    if n <= 1000:
        p = p.toarray()
        cur = p.copy()
        for k in range(walk_length):
            out[:, k] = np.diagonal(cur)
            cur = cur @ p
    else:
        cur = p.copy()
        for k in range(walk_length):
            out[:, k] = cur.diagonal()
            cur = cur @ p
    return out


def shortest_path_distances(edge_index, num_nodes=None, max_distance=None) -> np.ndarray:
    """Hop counts between every pair of nodes, ``(n, n)`` int64, following edges in
    their direction (BFS from every node). Unreachable pairs get ``-1``; with
    ``max_distance``, longer paths are clipped to it."""
    from scipy.sparse.csgraph import shortest_path

    ei = as_edge_index(edge_index, "shortest_path_distances")
    n = num_nodes_of(ei, num_nodes)
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    d = shortest_path(_scipy_adj(ei, n), method="D", directed=True, unweighted=True)
    out = np.where(np.isfinite(d), d, -1).astype(np.int64)
    if max_distance is not None:
        out = np.where(out > max_distance, max_distance, out)
    return out


# ----------------------------------------------------------------------------- neighbourhoods
def k_hop_subgraph(node_idx, num_hops, edge_index, num_nodes=None, relabel_nodes=False,
                   flow="source_to_target"):
    """The nodes within ``num_hops`` hops of ``node_idx`` (an int or a list): with
    ``flow="source_to_target"``, the nodes whose messages reach ``node_idx`` in at most
    ``num_hops`` layers. Returns ``(subset, edge_index, mapping, edge_mask)`` as
    PyTorch Geometric: ``subset`` the sorted nodes, the edges among them (relabelled to
    ``0..len(subset)-1`` with ``relabel_nodes``), where the seed nodes went, and which
    of the original edges were kept."""
    ei = as_edge_index(edge_index, "k_hop_subgraph")
    n = num_nodes_of(ei, num_nodes)
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(f"k_hop_subgraph: flow must be 'source_to_target' or "
                         f"'target_to_source', got {flow!r}")
    src, dst = (ei[0], ei[1]) if flow == "source_to_target" else (ei[1], ei[0])
    seeds = np.atleast_1d(np.asarray(read_values(node_idx, "k_hop_subgraph"))).astype(np.int64)
    if seeds.size and (seeds.min() < 0 or seeds.max() >= n):
        raise IndexError(f"k_hop_subgraph: node index out of range for {n} nodes")
    inside = np.zeros(n, dtype=bool)
    inside[seeds] = True
    frontier = inside.copy()
    for _ in range(int(num_hops)):
        reach = np.zeros(n, dtype=bool)
        reach[src[frontier[dst]]] = True
        frontier = reach & ~inside
        inside |= reach
        if not frontier.any():
            break
    subset = np.flatnonzero(inside)
    edge_mask = inside[ei[0]] & inside[ei[1]]
    sub = ei[:, edge_mask]
    mapping = np.searchsorted(subset, seeds)
    if relabel_nodes:
        relabel = np.full(n, -1, dtype=np.int64)
        relabel[subset] = np.arange(subset.size)
        sub = relabel[sub]
    return subset, sub, mapping, edge_mask


def subgraph(subset, edge_index, edge_attr=None, num_nodes=None, relabel_nodes=False):
    """The edges among ``subset`` (node ids or a boolean mask) and their attributes."""
    ei = as_edge_index(edge_index, "subgraph")
    n = num_nodes_of(ei, num_nodes)
    s = np.asarray(read_values(subset, "subgraph"))
    mask = s.astype(bool) if s.dtype == bool else np.isin(np.arange(n), s)
    keep = mask[ei[0]] & mask[ei[1]]
    out = ei[:, keep]
    if relabel_nodes:
        relabel = np.full(n, -1, dtype=np.int64)
        relabel[mask] = np.arange(int(mask.sum()))
        out = relabel[out]
    attr = _weights(edge_attr, ei.shape[1], "subgraph")
    if attr is not None:
        attr = gather_raw(attr, _const(np.flatnonzero(keep)))
    return out, attr


# ----------------------------------------------------------------------------- dense batches
def _dense_positions(batch, num_graphs=None, max_nodes=None):
    b = np.asarray(read_values(batch, "to_dense_batch")).astype(np.int64)
    if b.size and (np.diff(b) < 0).any():
        raise ValueError("to_dense_batch: the batch vector must be sorted (nodes of one "
                         "graph together, graphs in order)")
    g = int(num_graphs) if num_graphs is not None else (int(b.max()) + 1 if b.size else 0)
    counts = np.bincount(b, minlength=g)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    m = int(max_nodes) if max_nodes is not None else int(counts.max(initial=0))
    local = np.arange(b.size) - ptr[b]
    if (local >= m).any():
        raise ValueError(f"to_dense_batch: a graph has {int(counts.max())} nodes, more than "
                         f"max_nodes={m}")
    return b * m + local, g, m, counts


def to_dense_batch(x, batch, num_graphs=None, max_nodes=None):
    """Node features (N, C) of a batch of graphs as a padded ``(B, n_max, C)`` tensor
    and a boolean mask ``(B, n_max)`` of real nodes (differentiable in ``x``)."""
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x))
    pos, g, m, counts = _dense_positions(batch, num_graphs, max_nodes)
    dense = segment_sum_raw(x, _const(pos), g * m).reshape((g, m) + tuple(x.shape[1:]))
    mask = np.arange(m)[None, :] < counts[:, None]
    return dense, Tensor(mask)


def from_dense_batch(dense, batch, num_graphs=None):
    """The inverse of :func:`to_dense_batch`: the rows of the real nodes, (N, C)."""
    b = np.asarray(read_values(batch, "from_dense_batch"))
    g, m = dense.shape[0], dense.shape[1]
    pos, _, _, _ = _dense_positions(b, g, m)
    flat = dense.reshape((g * m,) + tuple(dense.shape[2:]))
    return gather_raw(flat, _const(pos))
