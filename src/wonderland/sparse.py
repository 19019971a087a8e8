"""Sparse matrices for graph layers: ``wl.sparse.SparseMatrix`` (CSR, on SciPy) and
``wl.sparse.matmul``; the product is differentiable in the dense operand and in the
stored values (see ``ops/sparse.py``)."""

from .ops.sparse import SparseMatrix, from_coo, from_dense, from_scipy, matmul, sampled_dot

__all__ = ["SparseMatrix", "matmul", "sampled_dot", "from_coo", "from_scipy", "from_dense"]
