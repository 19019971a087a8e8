"""Readers for graph data sets stored as npz files (read with ``allow_pickle=False``),
and the small graphs the tour uses, shipped with the package (``graph/files/``; see its
README for their sources).

Two layouts:

* one graph, node-level task (the GNN-benchmark layout): adjacency and node features
  in CSR form (``adj_data``, ``adj_indices``, ``adj_indptr``, ``adj_shape``; ``attr_*``),
  ``labels`` (−1 for none) and optionally the split ``idx_train``, ``idx_val``,
  ``idx_test`` — :func:`read_node_npz`;
* many small graphs, graph-level task (flat like a batch): ``node_tag``, ``edge_index``
  with global node ids, ``graph_ptr``, ``y`` — :func:`read_graph_npz`.
"""

from __future__ import annotations

import os

import numpy as np

from ..core.tensor import Tensor
from ..ops.sparse import SparseMatrix
from .data import Graph

__all__ = ["read_node_npz", "read_graph_npz", "load_citeseer", "load_mutag", "karate_club",
           "data_path", "row_normalize"]

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")


def data_path(name: str) -> str:
    """The path of a file shipped with the package (``citeseer.npz``, ``mutag.npz``,
    ``karate.txt``)."""
    path = os.path.join(FILES, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data_path: no shipped file {name!r} (have: "
                                f"{', '.join(sorted(os.listdir(FILES)))})")
    return path


def _load(path, what, required):
    try:
        with np.load(path, allow_pickle=False) as arrays:
            data = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what}: cannot read {str(path)!r} as an npz file without pickle: "
                         f"{exc}") from None
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{what}: {str(path)!r} lacks the keys {missing} (it has "
                         f"{sorted(data)})")
    return data


def _csr(data, prefix, what):
    import scipy.sparse as sp

    shape = tuple(int(s) for s in data[f"{prefix}_shape"])
    try:
        return sp.csr_matrix((data[f"{prefix}_data"], data[f"{prefix}_indices"],
                              data[f"{prefix}_indptr"]), shape=shape)
    except ValueError as exc:
        raise ValueError(f"{what}: the {prefix}_* arrays do not form a CSR matrix of shape "
                         f"{shape}: {exc}") from None


def row_normalize(features):
    """Rows scaled to sum to 1 (rows of zeros stay zero): a SciPy matrix or an array."""
    import scipy.sparse as sp

    if sp.issparse(features):
        s = np.asarray(features.sum(axis=1)).ravel()
        inv = np.where(s != 0, 1.0 / np.where(s != 0, s, 1.0), 0.0)
        return (sp.diags(inv) @ features).tocsr().astype(features.dtype)
    f = np.asarray(features)
    s = f.sum(axis=1, keepdims=True)
    return f / np.where(s != 0, s, 1.0)


def read_node_npz(path, features="dense", normalize_features=False) -> Graph:
    """A single graph from the GNN-benchmark npz layout.

    The adjacency (symmetric, values ignored) becomes ``edge_index`` with each
    undirected edge in both directions; node features become ``x`` — a dense float32
    tensor (``features="dense"``) or a :class:`SparseMatrix` (``"sparse"``), rows
    scaled to sum 1 with ``normalize_features``; ``labels`` become ``y`` (int64, −1 for
    unlabelled nodes). When the file has the split, ``train_idx``/``val_idx``/
    ``test_idx`` and boolean ``train_mask``/``val_mask``/``test_mask`` are set.
    """
    what = "read_node_npz"
    data = _load(path, what, ["adj_data", "adj_indices", "adj_indptr", "adj_shape",
                              "attr_data", "attr_indices", "attr_indptr", "attr_shape", "labels"])
    adj = _csr(data, "adj", what).tocoo()
    attr = _csr(data, "attr", what).astype(np.float32)
    n = adj.shape[0]
    if adj.shape != (n, n) or attr.shape[0] != n or data["labels"].shape != (n,):
        raise ValueError(f"{what}: adjacency {adj.shape}, features {attr.shape} and "
                         f"labels {data['labels'].shape} do not describe one graph")
    if normalize_features:
        attr = row_normalize(attr)
    # source = column, target = row: messages flow along A's transpose; the adjacency
    # is symmetric, so both directions are present either way
    edge_index = np.stack([adj.col, adj.row]).astype(np.int64)
    order = np.lexsort((edge_index[0], edge_index[1]))
    edge_index = edge_index[:, order]
    if features == "dense":
        x = Tensor(attr.toarray())
    elif features == "sparse":
        x = SparseMatrix.from_scipy(attr, np.float32)
    else:
        raise ValueError(f"{what}: features must be 'dense' or 'sparse', got {features!r}")
    g = Graph(x, edge_index, y=Tensor(data["labels"].astype(np.int64)), num_nodes=n)
    for split in ("train", "val", "test"):
        key = f"idx_{split}"
        if key in data:
            idx = data[key].astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"{what}: {key} holds node {int(idx.max())}, beyond {n} nodes")
            mask = np.zeros(n, dtype=bool)
            mask[idx] = True
            g[f"{split}_idx"] = idx
            g[f"{split}_mask"] = mask
    return g


def read_graph_npz(path, one_hot_tags=True) -> list:
    """A list of graphs from the graph-classification npz layout (flat like a batch).

    Each graph gets ``edge_index`` in its own node ids, ``y`` (0-d int64), the
    ``node_tag`` of its nodes and, with ``one_hot_tags``, ``x`` as one-hot rows of the
    tags (float32; as many columns as the data set has tags).
    """
    what = "read_graph_npz"
    data = _load(path, what, ["node_tag", "edge_index", "graph_ptr", "y"])
    tags = data["node_tag"].astype(np.int64)
    ei = data["edge_index"].astype(np.int64)
    ptr = data["graph_ptr"].astype(np.int64)
    y = data["y"].astype(np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"{what}: edge_index must have shape (2, E), got {ei.shape}")
    if ptr.ndim != 1 or ptr[0] != 0 or ptr[-1] != tags.shape[0] or (np.diff(ptr) < 0).any():
        raise ValueError(f"{what}: graph_ptr must rise from 0 to the number of nodes "
                         f"({tags.shape[0]}), got {ptr[:3]}...{ptr[-2:]}")
    if y.shape[0] != ptr.shape[0] - 1:
        raise ValueError(f"{what}: {y.shape[0]} labels for {ptr.shape[0] - 1} graphs")
    owner = np.searchsorted(ptr, ei[0], side="right") - 1
    if ei.size and (owner != np.searchsorted(ptr, ei[1], side="right") - 1).any():
        raise ValueError(f"{what}: an edge joins two different graphs")
    order = np.argsort(owner, kind="stable")
    ei, owner = ei[:, order], owner[order]
    edge_ptr = np.searchsorted(owner, np.arange(ptr.shape[0]))
    n_tags = int(tags.max()) + 1 if tags.size else 0
    eye = np.eye(n_tags, dtype=np.float32)
    graphs = []
    for g in range(ptr.shape[0] - 1):          # one Graph object per graph
        lo, hi = ptr[g], ptr[g + 1]
        local = ei[:, edge_ptr[g]:edge_ptr[g + 1]] - lo
        t = tags[lo:hi]
        graphs.append(Graph(eye[t] if one_hot_tags else None, local, y=np.int64(y[g]),
                            num_nodes=int(hi - lo), node_tag=t))
    return graphs


def load_citeseer(features="dense", normalize_features=True) -> Graph:
    """CiteSeer with the standard Planetoid split (3,327 papers, 6 classes, 120 / 500 /
    1,000 train / validation / test nodes), from the copy shipped with the package."""
    return read_node_npz(data_path("citeseer.npz"), features, normalize_features)


def load_mutag(one_hot_tags=True) -> list:
    """MUTAG: 188 molecules (mutagenic or not), atoms one-hot over 7 types."""
    return read_graph_npz(data_path("mutag.npz"), one_hot_tags)


def karate_club() -> Graph:
    """Zachary's karate club: 34 members, 78 friendships (each stored both ways), ``y``
    the faction each member joined after the club split (0: Mr. Hi, 1: the officer)."""
    club, edges = None, []
    with open(data_path("karate.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("club"):
                club = np.array([int(v) for v in line.split()[1:]], dtype=np.int64)
            else:
                edges.append([int(v) for v in line.split()])
    e = np.array(edges, dtype=np.int64).T
    ei = np.concatenate([e, e[::-1]], axis=1)
    n = club.shape[0]
    return Graph(Tensor(np.eye(n, dtype=np.float32)), ei, y=Tensor(club), num_nodes=n)
