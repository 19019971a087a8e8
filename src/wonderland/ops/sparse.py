"""Sparse matrices (CSR) times dense tensors, differentiable in the dense operand and in
the stored values.

A :class:`SparseMatrix` holds an ``(m, n)`` matrix in compressed-row form: ``indptr``
(m + 1,), column ``indices`` (nnz,), the ``row`` of each stored entry (nnz,, kept so the
rules need not expand ``indptr``) — integer tensors — and ``values`` (nnz,), a float
tensor that may require grad (edge weights, attention coefficients). ``A @ x`` for a
dense ``x`` of shape ``(n, ...)`` is one primitive (a compiled CSR loop; SciPy's CSR
product is its reference and the fallback without Numba):

* cotangent of ``x``: ``Aᵀ g`` — the same primitive with ``transpose=True`` (SciPy reads
  the CSR arrays as the transpose's CSC without copying);
* cotangent of the values: ``v̄_e = ⟨g[row_e], x[col_e]⟩``, a gather of both operands'
  rows and a sum over the trailing axes (sampled dense-dense product);
* tangent: ``A(t_v) x + A(v) t_x`` — the product is bilinear.

Every rule is made of primitives (the product itself, ``gather_rows``, sums), so second
derivatives come for free. Build one with :meth:`SparseMatrix.from_coo` (unsorted
``(row, col)`` pairs), :meth:`SparseMatrix.from_csr`, :meth:`SparseMatrix.from_scipy`,
or :meth:`SparseMatrix.from_dense`.

ONNX export (``onnx=``): ONNX has no sparse product, so ``A @ x`` becomes a dense MatMul.
When the matrix is fixed at export (a graph's normalised adjacency: its values and
indices are constants), the dense ``(m, n)`` matrix is computed once and stored as a
constant; otherwise it is built in the graph by a ScatterND-add of the values into zeros
(opset 16). Either way the graph costs ``m·n`` memory, fine for the graphs of one model
call, not for millions of nodes. ``sampled_dot`` is two Gathers, a product and a sum.
"""

from __future__ import annotations

import numpy as np

from .. import backend as B
from ..backend.compiled import kernel
from ..core.primitive import Primitive, apply
from ..core.tensor import Tensor
from ..core.tracing import read_values
from ..core.vmap import broadcast_batch, loop_rule, moveaxis
from .arguments import _array_of, constant, to_tensor
from .segment import compiled_loop, gather_raw, segment_sum_raw

__all__ = ["SparseMatrix", "matmul", "sampled_dot", "from_coo", "from_scipy", "from_dense"]


# ----------------------------------------------------------------------------- kernels
# Compiled loops (Numba, compiled on first use and cached on disk) with NumPy/SciPy
# references that the tests compare them with and that run where Numba is missing.
@kernel
def _csr_heads_loop(indptr, indices, values, x, out):
    """out[i, h, :] = Σ_{e in row i} values[e, h] · x[indices[e], h, :]"""
    m = indptr.shape[0] - 1
    nh = values.shape[1]
    nc = x.shape[2]
    for i in range(m):
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            for h in range(nh):
                v = values[e, h]
                for c in range(nc):
                    out[i, h, c] += v * x[j, h, c]


@kernel
def _csr_heads_t_loop(indptr, indices, values, x, out):
    """out[indices[e], h, :] += values[e, h] · x[i, h, :] for e in row i (the transpose)"""
    m = indptr.shape[0] - 1
    nh = values.shape[1]
    nc = x.shape[2]
    for i in range(m):
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            for h in range(nh):
                v = values[e, h]
                for c in range(nc):
                    out[j, h, c] += v * x[i, h, c]


@kernel
def _sampled_dot_loop(ra, rb, a, b, out):
    """out[e, h] = Σ_c a[ra[e], h, c] · b[rb[e], h, c]"""
    nh = a.shape[1]
    nc = a.shape[2]
    for e in range(ra.shape[0]):
        i = ra[e]
        j = rb[e]
        for h in range(nh):
            acc = a[i, h, 0] * 0
            for c in range(nc):
                acc += a[i, h, c] * b[j, h, c]
            out[e, h] = acc


@kernel
def _counting_order_loop(rows, m, order, indptr):
    """A stable sort of ``rows`` (values in [0, m)) by counting: ``order`` and the CSR
    ``indptr`` of the sorted rows."""
    for e in range(rows.shape[0]):
        indptr[rows[e] + 1] += 1
    for i in range(m):
        indptr[i + 1] += indptr[i]
    nxt = indptr[:-1].copy()
    for e in range(rows.shape[0]):
        r = rows[e]
        order[nxt[r]] = e
        nxt[r] += 1


def csr_heads_reference(indptr, indices, values, x, shape, transpose):
    """NumPy/SciPy reference of the multi-head product (one SciPy product per head)."""
    import scipy.sparse as sp

    out_rows = shape[1] if transpose else shape[0]
    out = np.zeros((out_rows,) + x.shape[1:], dtype=np.result_type(values, x))
    for h in range(values.shape[1]):
        a = sp.csr_matrix((values[:, h], indices, indptr), shape=shape)
        xh = np.ascontiguousarray(x[:, h]).reshape(x.shape[0], -1)
        out[:, h] = np.asarray((a.T if transpose else a) @ xh).reshape(out[:, h].shape)
    return out


def sampled_dot_reference(ra, rb, a, b):
    """NumPy reference of the sampled dot product (gathers, product, sum)."""
    return (a[ra] * b[rb]).sum(-1)


def counting_order_reference(rows, m):
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    return order, indptr


def csr_order(rows, m):
    """``(order, indptr)``: the stable order that sorts ``rows`` and the CSR row
    pointer of the sorted rows (a counting sort: linear in the number of entries)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    loop = compiled_loop(_counting_order_loop)
    if loop is None:
        return counting_order_reference(rows, m)
    order = np.empty(rows.shape[0], dtype=np.int64)
    indptr = np.zeros(m + 1, dtype=np.int64)
    loop(rows, m, order, indptr)
    return order, indptr


def _heads3(a, h):
    """``a`` (n, H, ...) as a C-contiguous (n, H, C) array."""
    return np.ascontiguousarray(a.reshape(a.shape[0], h, -1))


@B.numpy_kernel(device=B.HostOnly("maps onto the device library's scatter-add and sparse products"))
def _csr_forward(values, x, indptr, indices, row, *, shape, transpose, heads):
    import scipy.sparse as sp

    m, n = shape
    out_rows = n if transpose else m
    dtype = np.result_type(values, x)
    if x.shape[0] == 0 or values.shape[0] == 0 or 0 in x.shape[1:]:
        return np.zeros((out_rows,) + x.shape[1:], dtype=dtype)
    loop = compiled_loop(_csr_heads_t_loop if transpose else _csr_heads_loop)
    if not heads:
        if loop is None or dtype.kind != "f":
            a = sp.csr_matrix((values, indices, indptr), shape=shape)
            out = (a.T if transpose else a) @ x.reshape(x.shape[0], -1)
            return np.asarray(out).reshape((out_rows,) + x.shape[1:])
        values = values.reshape(-1, 1)                   # one head
    nh = values.shape[1]
    if loop is None or dtype.kind != "f":
        return csr_heads_reference(indptr, indices, values, x, shape, transpose)
    x3 = _heads3(x.astype(dtype, copy=False), nh)
    out = np.zeros((out_rows, nh, x3.shape[2]), dtype=dtype)
    loop(indptr, indices, np.ascontiguousarray(values, dtype=dtype), x3, out)
    return out.reshape((out_rows,) + x.shape[1:])


def csr_reference(indptr, indices, values, x, shape, transpose):
    """SciPy reference of the one-head product."""
    import scipy.sparse as sp

    a = sp.csr_matrix((values, indices, indptr), shape=shape)
    out = (a.T if transpose else a) @ x.reshape(x.shape[0], -1)
    return np.asarray(out).reshape(((shape[1] if transpose else shape[0]),) + x.shape[1:])


@B.numpy_kernel(device=B.HostOnly("maps onto the device library's scatter-add and sparse products"))
def _sampled_dot_forward(a, b, indptr, indices, row, *, shape, transpose, heads):
    ra, rb = (indices, row) if transpose else (row, indices)
    nh = a.shape[1] if heads else 1
    dtype = np.result_type(a, b)
    a3, b3 = _heads3(a.astype(dtype, copy=False), nh), _heads3(b.astype(dtype, copy=False), nh)
    loop = compiled_loop(_sampled_dot_loop)
    if loop is None or dtype.kind != "f" or a3.shape[2] == 0:
        out = sampled_dot_reference(ra, rb, a3, b3)
    else:
        out = np.empty((ra.shape[0], nh), dtype=dtype)
        loop(ra, rb, a3, b3, out)
    return out if heads else out[:, 0]


# ----------------------------------------------------------------------------- rules
def _csr_vjp(g, out, inputs, needs, *, shape, transpose, heads):
    values, x, indptr, indices, row = inputs
    gv = gx = None
    if needs[0]:
        gv = _sampled_dot(g, x, indptr, indices, row, shape, transpose, heads)
    if needs[1]:
        gx = _csr(values, g, indptr, indices, row, shape, not transpose, heads)
    return [gv, gx, None, None, None]


def _csr_jvp(tangents, out, inputs, *, shape, transpose, heads):
    tv, tx = tangents[0], tangents[1]
    values, x, indptr, indices, row = inputs
    total = None
    if tv is not None:
        total = _csr(tv, x, indptr, indices, row, shape, transpose, heads)
    if tx is not None:
        part = _csr(values, tx, indptr, indices, row, shape, transpose, heads)
        total = part if total is None else total + part
    return total


def _sampled_dot_vjp(g, out, inputs, needs, *, shape, transpose, heads):
    a, b, indptr, indices, row = inputs
    ga = _csr(g, b, indptr, indices, row, shape, transpose, heads) if needs[0] else None
    gb = _csr(g, a, indptr, indices, row, shape, not transpose, heads) if needs[1] else None
    return [ga, gb, None, None, None]


def _sampled_dot_jvp(tangents, out, inputs, *, shape, transpose, heads):
    ta, tb = tangents[0], tangents[1]
    a, b, indptr, indices, row = inputs
    total = None
    if ta is not None:
        total = _sampled_dot(ta, b, indptr, indices, row, shape, transpose, heads)
    if tb is not None:
        part = _sampled_dot(a, tb, indptr, indices, row, shape, transpose, heads)
        total = part if total is None else total + part
    return total


def _csr_batch(args, axes, *, shape, transpose, heads):
    if any(ax is not None for ax in axes[2:]):          # batched structure: rare
        return loop_rule(_csr_prim)(args, axes, shape=shape, transpose=transpose, heads=heads)
    values, x, indptr, indices, row = args
    av, axx = axes[0], axes[1]
    lead = 2 if heads else 1                             # rows (and heads) come first
    if av is None:                                       # shared matrix, batched x
        return _csr(values, moveaxis(x, axx, lead), indptr, indices, row, shape, transpose,
                    heads), lead
    # batched values: gather, weight and sum per output row, batch as axis 1
    out_rows, in_rows = (indices, row) if transpose else (row, indices)
    n_out = shape[1] if transpose else shape[0]
    v = moveaxis(values, av, 1)                          # (nnz, B[, H])
    if axx is None:
        xs = gather_raw(x, in_rows)                      # (nnz[, H], ...)
        xs = xs.reshape((xs.shape[0], 1) + tuple(xs.shape[1:]))
    else:
        xs = gather_raw(moveaxis(x, axx, 1), in_rows)    # (nnz, B[, H], ...)
    v = v.reshape(tuple(v.shape) + (1,) * (xs.ndim - v.ndim))
    return segment_sum_raw(v * xs, out_rows, n_out), 1


def _sampled_dot_batch(args, axes, *, shape, transpose, heads):
    if any(ax is not None for ax in axes[2:]):
        return loop_rule(_sampled_dot_prim)(args, axes, shape=shape, transpose=transpose,
                                            heads=heads)
    a, b, indptr, indices, row = args
    size = next(t.shape[ax] for t, ax in zip(args[:2], axes[:2]) if ax is not None)

    # the batch becomes a (leading) head axis: (n, B[, H], ...) -> (n, B·H, ...)
    a = moveaxis(broadcast_batch(a, axes[0], size), 0, 1)
    b = moveaxis(broadcast_batch(b, axes[1], size), 0, 1)
    if heads:
        nh = a.shape[2]
        a = a.reshape((a.shape[0], size * nh) + tuple(a.shape[3:]))
        b = b.reshape((b.shape[0], size * nh) + tuple(b.shape[3:]))
    out = _sampled_dot(a, b, indptr, indices, row, shape, transpose, True)
    if heads:
        out = out.reshape(out.shape[0], size, nh)
    return out, 1


def _dense_onnx(g, values, indices, row, shape, transpose, heads):
    """The matrix ``(H, rows, cols)`` (``(rows, cols)`` without heads) of the product."""
    known = [g.value(n) for n in (values, indices, row)]
    if all(k is not None for k in known):
        v, cols, rows = known
        dense = np.zeros(tuple(shape) + v.shape[1:], dtype=g.dtype(values))
        np.add.at(dense, (rows, cols), v)
        dense = np.swapaxes(dense, 0, 1) if transpose else dense
        return g.constant(np.moveaxis(dense, 2, 0) if heads else dense, name="sparse_matrix")
    g.require_opset(16, "a sparse matrix with values computed in the graph (ScatterND-add)")
    zeros = g.expand(g.scalar(0, g.dtype(values)), tuple(shape) + tuple(g.shape(values)[1:]))
    pairs = [g.unsqueeze(g.cast(i, np.int64), [1]) for i in (row, indices)]
    dense = g.node("ScatterND", [zeros, g.node("Concat", pairs, axis=1), values],
                   reduction="add")
    perm = ([1, 0] if transpose else [0, 1]) + ([2] if heads else [])
    return g.transpose(dense, [2] + perm[:2] if heads else perm)


def _csr_onnx(g, inputs, outputs, *, shape, transpose, heads):
    values, x, _, indices, row = inputs
    a = _dense_onnx(g, g.cast(values, g.dtype(outputs[0])), indices, row, shape, transpose,
                    heads)
    xs = g.shape(x)
    if not heads and len(xs) == 2:
        g.matmul(a, x, outputs[0])
        return
    nh = g.shape(values)[1] if heads else 1
    cols = int(np.prod(xs[1:])) // nh if g.static(xs[1:]) else -1
    if not heads:
        g.reshape(g.matmul(a, g.reshape(x, (xs[0], cols))), g.shape(outputs[0]), outputs[0])
        return
    x3 = g.transpose(g.reshape(x, (xs[0], nh, cols)), [1, 0, 2])     # (H, n, C)
    out = g.transpose(g.matmul(a, x3), [1, 0, 2])                    # (rows, H, C)
    g.reshape(out, g.shape(outputs[0]), outputs[0])


def _sampled_dot_onnx(g, inputs, outputs, *, shape, transpose, heads):
    a, b, _, indices, row = inputs
    ra, rb = (indices, row) if transpose else (row, indices)
    dtype = g.dtype(outputs[0])
    pa = g.node("Gather", [g.cast(a, dtype), ra], axis=0)
    pb = g.node("Gather", [g.cast(b, dtype), rb], axis=0)
    first = 2 if heads else 1
    g.reduce("ReduceSum", g.node("Mul", [pa, pb]), range(first, g.ndim(a)), False,
             outputs[0])


_csr_prim = Primitive("sparse_matmul", _csr_forward, save=(0, 1, 2, 3, 4), vjp_all=_csr_vjp,
                      onnx=_csr_onnx,
                      jvp_all=_csr_jvp, batch=_csr_batch)
_sampled_dot_prim = Primitive("sampled_dot", _sampled_dot_forward, save=(0, 1, 2, 3, 4),
                              onnx=_sampled_dot_onnx,
                              vjp_all=_sampled_dot_vjp, jvp_all=_sampled_dot_jvp,
                              batch=_sampled_dot_batch)


def _csr(values, x, indptr, indices, row, shape, transpose=False, heads=False) -> Tensor:
    return apply(_csr_prim, (values, x, indptr, indices, row),
                 {"shape": tuple(shape), "transpose": bool(transpose), "heads": bool(heads)})


def _sampled_dot(a, b, indptr, indices, row, shape, transpose=False, heads=False) -> Tensor:
    return apply(_sampled_dot_prim, (a, b, indptr, indices, row),
                 {"shape": tuple(shape), "transpose": bool(transpose), "heads": bool(heads)})


# ----------------------------------------------------------------------------- the matrix
def _int_tensor(a, what, like=None) -> Tensor:
    if isinstance(a, Tensor):
        t = a
    else:
        t = constant(B.asarray(a, like=like))
    if t.dtype.kind not in "iu":
        if t.size == 0:
            return t.astype(np.int64)
        raise TypeError(f"{what}: indices must be integers, got {t.dtype}")
    if t.ndim != 1:
        raise ValueError(f"{what}: indices must be 1-D, got shape {t.shape}")
    return t if t.dtype == np.int64 else t.astype(np.int64)


class SparseMatrix:
    """An ``(m, n)`` sparse matrix in CSR form with differentiable ``values``.

    ``A @ x`` multiplies a dense tensor ``x`` of shape ``(n, ...)``; ``A.T`` is the
    transpose (CSR again); ``A.to_dense()`` the dense matrix (differentiable in the
    values); ``A.with_values(v)`` the same pattern with other values.
    """

    __slots__ = ("values", "indptr", "indices", "row", "shape", "_t_perm")

    def __init__(self, values, indptr, indices, shape, row=None):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 0:
            raise ValueError(f"SparseMatrix: shape must be (rows, cols), got {shape}")
        self.indptr = _int_tensor(indptr, "SparseMatrix")
        self.indices = _int_tensor(indices, "SparseMatrix", self.indptr.data)
        like = self.indptr.data
        if self.indptr.shape[0] != shape[0] + 1:
            raise ValueError(f"SparseMatrix: indptr has {self.indptr.shape[0]} entries for "
                             f"{shape[0]} rows (expected {shape[0] + 1})")
        nnz = self.indices.shape[0]
        ip = read_values(self.indptr, "SparseMatrix")          # the structure, on the host
        if int(ip[0]) != 0 or int(ip[-1]) != nnz or (ip.size > 1 and (np.diff(ip) < 0).any()):
            raise ValueError(f"SparseMatrix: indptr must rise from 0 to nnz={nnz}")
        cols = read_values(self.indices, "SparseMatrix")
        if nnz and (int(cols.min()) < 0 or int(cols.max()) >= shape[1]):
            raise IndexError(f"SparseMatrix: column indices must lie in [0, {shape[1]})")
        if values is None:
            values = constant(B.ns(like).ones(nnz, dtype=np.float32))
        values = to_tensor(values, "SparseMatrix")
        if values.ndim not in (1, 2) or values.shape[0] != nnz:
            raise ValueError(f"SparseMatrix: values of shape {values.shape} for {nnz} stored "
                             f"entries (expected ({nnz},), or ({nnz}, heads) for one matrix "
                             f"per head sharing the pattern)")
        if values.dtype.kind != "f":
            values = values.astype(np.float32)
        self.values = values
        if row is None:
            plain = B.to_numpy(ip)
            row = B.asarray(np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(plain)),
                            like=like)
        self.row = _int_tensor(row, "SparseMatrix", like)
        self.shape = shape
        self._t_perm = None

    # -- construction
    @classmethod
    def from_coo(cls, row, col, values=None, shape=None):
        """From unsorted ``(row, col)`` pairs (and their values): entries are sorted by
        row (stably, columns keep their order within a row); repeated pairs are kept,
        and count once each in products. ``shape`` defaults to the largest indices + 1."""
        r = B.to_numpy(np.asarray(read_values(row, "SparseMatrix.from_coo")))
        c = B.to_numpy(np.asarray(read_values(col, "SparseMatrix.from_coo")))
        if r.shape != c.shape or r.ndim != 1:
            raise ValueError(f"SparseMatrix.from_coo: row and col must be 1-D of one length, "
                             f"got {r.shape} and {c.shape}")
        if r.size and (r.dtype.kind not in "iu" or c.dtype.kind not in "iu"):
            raise TypeError(f"SparseMatrix.from_coo: indices must be integers, got "
                            f"{r.dtype} and {c.dtype}")
        r = r.astype(np.int64, copy=False)
        c = c.astype(np.int64, copy=False)
        if shape is None:
            shape = (int(r.max()) + 1 if r.size else 0, int(c.max()) + 1 if c.size else 0)
        m = int(shape[0])
        if r.size and (r.min() < 0 or r.max() >= m):
            raise IndexError(f"SparseMatrix.from_coo: row indices must lie in [0, {m})")
        sorted_ = bool(r.size < 2 or (r[1:] >= r[:-1]).all())
        if sorted_:
            order, indptr = None, np.zeros(m + 1, dtype=np.int64)
            np.cumsum(np.bincount(r, minlength=m), out=indptr[1:])
        else:
            order, indptr = csr_order(r, m)
        if values is not None:
            values = to_tensor(values, "SparseMatrix.from_coo")
            if values.shape[:1] != r.shape:
                raise ValueError(f"SparseMatrix.from_coo: {values.shape} values for "
                                 f"{r.shape[0]} entries")
            if not sorted_:
                values = gather_raw(values, constant(B.asarray(order, like=_array_of(values))))
        if not sorted_:
            r, c = r[order], c[order]
        return cls(values, indptr, c, shape, row=r)

    @classmethod
    def from_csr(cls, indptr, indices, values=None, shape=None):
        ip = np.asarray(B.to_numpy(read_values(indptr, "SparseMatrix.from_csr")))
        if shape is None:
            idx = np.asarray(B.to_numpy(read_values(indices, "SparseMatrix.from_csr")))
            shape = (ip.shape[0] - 1, int(idx.max()) + 1 if idx.size else 0)
        return cls(values, indptr, indices, shape)

    @classmethod
    def from_scipy(cls, matrix, dtype=None):
        """From any ``scipy.sparse`` matrix (converted to CSR; explicit zeros kept)."""
        m = matrix.tocsr()
        values = m.data if dtype is None else m.data.astype(dtype)
        return cls(constant(B.asarray(values)), m.indptr.astype(np.int64),
                   m.indices.astype(np.int64), m.shape)

    @classmethod
    def from_dense(cls, dense):
        d = to_tensor(dense, "SparseMatrix.from_dense")
        if d.ndim != 2:
            raise ValueError(f"SparseMatrix.from_dense: expected a matrix, got shape {d.shape}")
        r, c = np.nonzero(B.to_numpy(d.data))
        vals = gather_raw(d.reshape(-1), constant(B.asarray(r * d.shape[1] + c)))
        return cls.from_coo(r, c, vals, d.shape)

    # -- views
    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def ndim(self) -> int:
        return 2

    def with_values(self, values) -> "SparseMatrix":
        """The same sparsity pattern with other values (e.g. after dropout)."""
        out = SparseMatrix.__new__(SparseMatrix)
        values = to_tensor(values, "SparseMatrix.with_values")
        if values.ndim not in (1, 2) or values.shape[0] != self.nnz:
            raise ValueError(f"SparseMatrix.with_values: expected shape ({self.nnz},) or "
                             f"({self.nnz}, heads), got {values.shape}")
        out.values, out.indptr, out.indices, out.row = values, self.indptr, self.indices, self.row
        out.shape, out._t_perm = self.shape, self._t_perm
        return out

    @property
    def T(self) -> "SparseMatrix":
        """The transpose, in CSR form (values permuted differentiably)."""
        n = self.shape[1]
        if self._t_perm is None:
            self._t_perm = csr_order(B.to_numpy(read_values(self.indices, "SparseMatrix.T")), n)
        perm, indptr = self._t_perm
        cols = B.to_numpy(read_values(self.indices, "SparseMatrix.T"))[perm]
        rows = B.to_numpy(read_values(self.row, "SparseMatrix.T"))[perm]
        values = gather_raw(self.values, constant(B.asarray(perm, like=self.indptr.data)))
        return SparseMatrix(values, indptr, rows, (n, self.shape[0]), row=cols)

    def to_scipy(self):
        import scipy.sparse as sp

        return sp.csr_matrix((B.to_numpy(self.values.data), B.to_numpy(self.indices.data),
                              B.to_numpy(self.indptr.data)), shape=self.shape)

    def to_dense(self) -> Tensor:
        """The dense ``(m, n)`` matrix (``(m, n, heads)`` for per-head values; repeated
        entries summed); differentiable in the values."""
        m, n = self.shape
        flat = self.row * n + self.indices
        return segment_sum_raw(self.values, flat, m * n).reshape(
            (m, n) + tuple(self.values.shape[1:]))

    def __matmul__(self, x):
        return matmul(self, x)

    def __repr__(self):
        return f"SparseMatrix(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype})"


def matmul(a: SparseMatrix, x) -> Tensor:
    """``a @ x`` for a :class:`SparseMatrix` ``a`` (m, n) and a dense ``x`` (n, ...):
    shape ``(m, ...)``. With per-head values ``(nnz, H)`` (H matrices sharing one
    pattern), ``x`` is ``(n, H, ...)`` and head ``h`` of the result is ``A_h @ x[:, h]``
    (graph attention). Differentiable in ``x`` and in ``a.values``."""
    if not isinstance(a, SparseMatrix):
        raise TypeError(f"sparse.matmul: expected a SparseMatrix first, got {type(a).__name__}")
    x = to_tensor(x, "sparse.matmul")
    if x.ndim == 0 or x.shape[0] != a.shape[1]:
        raise ValueError(f"sparse.matmul: inner dimensions differ: sparse {a.shape} @ dense "
                         f"{x.shape}")
    values = a.values
    heads = values.ndim == 2
    if heads and (x.ndim < 2 or x.shape[1] != values.shape[1]):
        raise ValueError(f"sparse.matmul: {values.shape[1]} heads of values need a dense "
                         f"operand of shape ({a.shape[1]}, {values.shape[1]}, ...), got {x.shape}")
    if x.dtype.kind != "f":
        x = x.astype(values.dtype)
    if values.dtype != x.dtype:
        dtype = np.result_type(values.dtype, x.dtype)
        values, x = values.astype(dtype), x.astype(dtype)
    return _csr(values, x, a.indptr, a.indices, a.row, a.shape, False, heads)


def sampled_dot(a: SparseMatrix, x, y, heads=False) -> Tensor:
    """The dense product ``x @ yᵀ`` read only at the stored positions of ``a``:
    ``out[e] = ⟨x[row_e], y[col_e]⟩`` over the trailing axes, shape ``(nnz,)`` — or, with
    ``heads=True`` and ``x``, ``y`` of shape ``(·, H, ...)``, one dot product per head,
    ``(nnz, H)`` (attention scores on a sparsity pattern). It is the transpose of the
    sparse product: differentiable in ``x`` and ``y`` to any order."""
    if not isinstance(a, SparseMatrix):
        raise TypeError(f"sparse.sampled_dot: expected a SparseMatrix first, got "
                        f"{type(a).__name__}")
    x, y = to_tensor(x, "sparse.sampled_dot"), to_tensor(y, "sparse.sampled_dot")
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != a.shape[0] or y.shape[0] != a.shape[1] \
            or x.shape[1:] != y.shape[1:] or (heads and x.ndim < 2):
        raise ValueError(f"sparse.sampled_dot: operands {x.shape} and {y.shape} do not fit a "
                         f"{a.shape} pattern (expected ({a.shape[0]}, ...) and "
                         f"({a.shape[1]}, ...) with equal trailing shapes"
                         f"{', heads on axis 1' if heads else ''})")
    if x.dtype != y.dtype:
        dtype = np.result_type(x.dtype, y.dtype)
        x, y = x.astype(dtype), y.astype(dtype)
    return _sampled_dot(x, y, a.indptr, a.indices, a.row, a.shape, False, heads)


def from_coo(row, col, values=None, shape=None) -> SparseMatrix:
    return SparseMatrix.from_coo(row, col, values, shape)


def from_scipy(matrix, dtype=None) -> SparseMatrix:
    return SparseMatrix.from_scipy(matrix, dtype)


def from_dense(dense) -> SparseMatrix:
    return SparseMatrix.from_dense(dense)
