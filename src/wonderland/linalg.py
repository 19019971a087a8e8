"""``wl.linalg``: decompositions, solves and norms, NumPy's names, all differentiable.

``cholesky``, ``solve``, ``solve_triangular``, ``lstsq``, ``inv``, ``slogdet``, ``norm``,
plus ``tril``, ``triu``, ``diagonal``.
"""

from .ops.decompositions import (cholesky, diagonal, inv, lstsq, norm, slogdet, solve,
                                 solve_triangular, tril, triu)

__all__ = ["cholesky", "diagonal", "inv", "lstsq", "norm", "slogdet", "solve",
           "solve_triangular", "tril", "triu"]
