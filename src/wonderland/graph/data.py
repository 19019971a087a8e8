"""Graphs as data: :class:`Graph`, mini-batches of graphs (:class:`Batch`) and a loader.

A :class:`Graph` holds named fields: node features ``x`` (n, c), ``edge_index`` (2, e)
with row 0 the source and row 1 the target of each edge (PyTorch Geometric's
convention), optional ``edge_attr`` (e, ...), a target ``y``, and any other field.

Batching many graphs makes one block-diagonal graph: node and edge fields are
concatenated, a ``batch`` vector names each node's graph and ``ptr`` the first node of
each graph. Fields that hold *node indices* are shifted by the number of nodes before
them so that they point into the big graph. Which fields those are follows a rule, not
a name: ``edge_index`` is one by definition, and any other field becomes one when it is
given as :class:`NodeIndex` (or listed in ``index_fields``); a field that merely has
"index" in its name is concatenated unchanged. Index fields are concatenated along
their last axis (edges run along it), every other field along axis 0, and 0-d fields
(a graph's label) are stacked. ``Batch.to_graphs()`` undoes it exactly.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..core.tensor import Tensor
from ..ops.sparse import SparseMatrix

__all__ = ["Graph", "Batch", "GraphLoader", "NodeIndex"]


class NodeIndex:
    """Marks a field's values as node indices, to be offset when graphs are batched:
    ``Graph(x, edge_index, anchors=NodeIndex([0, 3]))``."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values


def _index_array(value, what):
    arr = value.data if isinstance(value, Tensor) else np.asarray(value)
    arr = np.asarray(arr)
    if arr.size == 0:
        return arr.astype(np.int64).reshape(arr.shape)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"Graph: {what} must hold integer node indices, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_field(value):
    if value is None or isinstance(value, (Tensor, SparseMatrix)):
        return value
    if isinstance(value, (np.ndarray, list, tuple, int, float, np.generic)):
        return Tensor(np.asarray(value))
    return value


def _shape(v):
    if isinstance(v, (Tensor, SparseMatrix, np.ndarray)):
        return tuple(v.shape)
    return None


class Graph:
    """One graph: ``Graph(x, edge_index, edge_attr=None, y=None, **fields)``.

    ``edge_index`` is an integer array or tensor of shape (2, E) (kept as an int64
    NumPy array: structure, not a differentiable value); ``x``, ``edge_attr``, ``y`` and
    other array fields become tensors (``x`` may also be a :class:`SparseMatrix`).
    ``num_nodes`` defaults to ``x.shape[0]``, else the largest index + 1. Fields read
    and write as attributes or items (``g.x``, ``g["x"]``).
    """

    def __init__(self, x=None, edge_index=None, edge_attr=None, y=None, num_nodes=None,
                 index_fields=(), **fields):
        store = {}
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_index_fields", {"edge_index"} | set(index_fields))
        if edge_index is None:
            edge_index = np.zeros((2, 0), dtype=np.int64)
        ei = _index_array(edge_index, "edge_index")
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(f"Graph: edge_index must have shape (2, E) (row 0 sources, row 1 "
                             f"targets), got {ei.shape}")
        store["x"] = _as_field(x)
        store["edge_index"] = ei
        store["edge_attr"] = _as_field(edge_attr)
        store["y"] = _as_field(y)
        for k, v in fields.items():
            self[k] = v
        for k in self._index_fields:
            if k in store and not isinstance(store[k], np.ndarray):
                store[k] = _index_array(store[k], k)
        if num_nodes is None:
            if x is not None:
                num_nodes = int(_shape(store["x"])[0])
            else:
                num_nodes = int(ei.max()) + 1 if ei.size else 0
        object.__setattr__(self, "_num_nodes", int(num_nodes))
        if ei.size and (ei.min() < 0 or ei.max() >= self._num_nodes):
            raise IndexError(f"Graph: edge_index holds node {int(ei.max() if ei.max() >= self._num_nodes else ei.min())} "
                             f"but the graph has {self._num_nodes} nodes")
        ea = store["edge_attr"]
        if ea is not None and _shape(ea)[0] != ei.shape[1]:
            raise ValueError(f"Graph: edge_attr has {_shape(ea)[0]} rows for {ei.shape[1]} "
                             f"edges (shape {_shape(ea)})")

    # -- fields
    def __setitem__(self, key, value):
        if isinstance(value, NodeIndex):
            self._index_fields.add(key)
            value = _index_array(value.values, key)
        elif key in self._index_fields:
            value = _index_array(value, key)
        else:
            value = _as_field(value)
        self._store[key] = value

    def __getitem__(self, key):
        return self._store[key]

    def __setattr__(self, key, value):
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self[key] = value

    def __getattr__(self, key):
        store = self.__dict__.get("_store")
        if store is not None and key in store:
            return store[key]
        raise AttributeError(f"'{type(self).__name__}' has no field {key!r}")

    def __contains__(self, key):
        return self._store.get(key) is not None

    def keys(self):
        """The names of the fields that are set."""
        return [k for k, v in self._store.items() if v is not None]

    def items(self):
        return [(k, self._store[k]) for k in self.keys()]

    def is_index_field(self, key) -> bool:
        """Whether field ``key`` holds node indices (offset when batched)."""
        return key in self._index_fields

    @property
    def index_fields(self):
        return sorted(self._index_fields & set(self.keys()))

    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @property
    def num_edges(self) -> int:
        return int(self._store["edge_index"].shape[1])

    @property
    def num_node_features(self) -> int:
        x = self._store.get("x")
        return 0 if x is None else (x.shape[1] if len(x.shape) > 1 else 1)

    def has_self_loops(self) -> bool:
        ei = self.edge_index
        return bool((ei[0] == ei[1]).any())

    def is_undirected(self) -> bool:
        from .utils import is_undirected

        return is_undirected(self.edge_index, self.num_nodes)

    def clone(self) -> "Graph":
        g = Graph.__new__(type(self))
        object.__setattr__(g, "_store", dict(self._store))
        object.__setattr__(g, "_index_fields", set(self._index_fields))
        object.__setattr__(g, "_num_nodes", self._num_nodes)
        return g

    def __repr__(self):
        parts = [f"{k}={list(_shape(v)) if _shape(v) is not None else v!r}"
                 for k, v in self.items()]
        return f"{type(self).__name__}({', '.join(parts)}, num_nodes={self.num_nodes})"


def _cat(values, axis):
    """Concatenate tensors / arrays along ``axis`` (tensors stay differentiable)."""
    first = values[0]
    if isinstance(first, Tensor):
        if any(v.requires_grad for v in values):
            return ops.concatenate(values, axis=axis)
        return Tensor(np.concatenate([v.data for v in values], axis=axis))
    return np.concatenate([np.asarray(v) for v in values], axis=axis)


def _stack(values):
    first = values[0]
    if isinstance(first, Tensor):
        if any(v.requires_grad for v in values):
            return ops.stack(values)
        return Tensor(np.stack([v.data for v in values]))
    return np.stack([np.asarray(v) for v in values])


def _check_shapes(key, values, is_index):
    """Every graph's field ``key`` must agree with graph 0's outside the axis it is
    concatenated along (the last for index fields, else the first; 0-d fields are stacked)."""
    first = _shape(values[0])
    if first is None:
        return

    def kept(shape):
        return shape[:-1] if is_index else shape[1:]

    def described(shape):
        if shape is None:
            return "is a plain value"
        width = f" (width {shape[1]})" if len(shape) == 2 and not is_index else ""
        return f"has shape {shape}{width}"

    for i, v in enumerate(values[1:], 1):
        shape = _shape(v)
        if shape is None or len(shape) != len(first) or kept(shape) != kept(first):
            along = "its last axis" if is_index else "axis 0"
            raise ValueError(f"Batch.from_graphs: field {key!r} of graph {i} {described(shape)}, "
                             f"but graph 0's {described(first)}; every graph's {key!r} must "
                             f"agree outside {along}, along which they are concatenated")


class Batch(Graph):
    """Many graphs as one block-diagonal graph, with ``batch`` (graph of each node),
    ``ptr`` (first node of each graph, and the total at the end) and ``num_graphs``.
    Every graph needs the same fields, each of one shape outside the batched axis (an
    error names the field, the graph and both shapes otherwise)."""

    @classmethod
    def from_graphs(cls, graphs) -> "Batch":
        graphs = list(graphs)
        if not graphs:
            raise ValueError("Batch.from_graphs: need at least one graph")
        keys = graphs[0].keys()
        for i, g in enumerate(graphs[1:], 1):
            if set(g.keys()) != set(keys):
                raise ValueError(f"Batch.from_graphs: graph {i} has fields {sorted(g.keys())}, "
                                 f"graph 0 has {sorted(keys)}; every graph needs the same fields")
        counts = np.array([g.num_nodes for g in graphs], dtype=np.int64)
        ptr = np.zeros(len(graphs) + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        index_fields = set().union(*(g._index_fields for g in graphs)) & set(keys)
        fields, layout = {}, {}
        for k in keys:
            vals = [g[k] for g in graphs]
            _check_shapes(k, vals, k in index_fields)
            if isinstance(vals[0], SparseMatrix):
                raise TypeError(f"Batch.from_graphs: field {k!r} is a SparseMatrix; batch dense "
                                f"features")
            if k in index_fields:
                shifted = [np.asarray(v) + off for v, off in zip(vals, ptr[:-1])]
                sizes = [v.shape[-1] for v in shifted]
                fields[k] = np.concatenate(shifted, axis=-1)
                layout[k] = ("index", sizes)
            elif _shape(vals[0]) == ():
                fields[k] = _stack(vals)
                layout[k] = ("stack", None)
            elif _shape(vals[0]) is not None:
                sizes = [_shape(v)[0] for v in vals]
                fields[k] = _cat(vals, 0)
                layout[k] = ("cat", sizes)
            else:                                   # plain Python values: a list
                fields[k] = list(vals)
                layout[k] = ("list", None)
        b = cls.__new__(cls)
        object.__setattr__(b, "_store", {"x": None, "edge_attr": None, "y": None})
        object.__setattr__(b, "_index_fields", set(index_fields) | {"edge_index"})
        object.__setattr__(b, "_num_nodes", int(ptr[-1]))
        b._store.update(fields)
        object.__setattr__(b, "_layout", layout)
        object.__setattr__(b, "_counts", counts)
        b._store["batch"] = np.repeat(np.arange(len(graphs), dtype=np.int64), counts)
        b._store["ptr"] = ptr
        return b

    @property
    def num_graphs(self) -> int:
        return int(self._store["ptr"].shape[0] - 1)

    def keys(self):
        return [k for k in super().keys() if k not in ("batch", "ptr")]

    def to_graphs(self) -> list:
        """The graphs this batch was made from (fields split and indices shifted back)."""
        n = self.num_graphs
        ptr = self._store["ptr"]
        per = [dict() for _ in range(n)]
        for k, (kind, sizes) in self._layout.items():
            v = self._store[k]
            if kind == "list":
                for i in range(n):
                    per[i][k] = v[i]
                continue
            if kind == "stack":
                for i in range(n):
                    per[i][k] = v[i]
                continue
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            for i in range(n):
                if kind == "index":
                    per[i][k] = np.asarray(v)[..., bounds[i]:bounds[i + 1]] - ptr[i]
                else:
                    per[i][k] = v[int(bounds[i]):int(bounds[i + 1])]
        out = []
        for i in range(n):
            f = per[i]
            g = Graph(f.pop("x", None), f.pop("edge_index"), f.pop("edge_attr", None),
                      f.pop("y", None), num_nodes=int(self._counts[i]),
                      index_fields=[k for k in self._index_fields if k in f], **f)
            out.append(g)
        return out

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.to_graphs()[key]
        return super().__getitem__(key)


class GraphLoader:
    """Mini-batches of graphs: ``for batch in GraphLoader(graphs, 32, shuffle=True)``.

    Each item is a :class:`Batch`; shuffling draws from ``generator`` (a
    ``wl.random.Generator`` or a seed) so that runs repeat exactly.
    """

    def __init__(self, graphs, batch_size=32, shuffle=False, drop_last=False, generator=None):
        self.graphs = list(graphs)
        if batch_size <= 0:
            raise ValueError(f"GraphLoader: batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        from ..random import Generator

        self.generator = generator if isinstance(generator, Generator) or generator is None \
            else Generator(generator)

    def __len__(self):
        n = len(self.graphs)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.graphs)
        if self.shuffle:
            from ..random import get_generator

            order = np.asarray(get_generator(self.generator).permutation(n).data)
        else:
            order = np.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield Batch.from_graphs([self.graphs[i] for i in idx])
