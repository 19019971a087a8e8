"""The primitives, grouped by family; each one's forward, VJP and JVP side by side.

========================  ====================================================
``elementwise``           arithmetic, unary math, comparisons, where, clip, cast
``reductions``            sum, mean, prod, max, min, var, std, logsumexp, softmax,
                          log_softmax, cumsum, argmax, argmin, any, all
``linalg``                matmul, einsum, tensordot, outer
``shape``                 reshape, transpose, broadcast, concatenate, stack, split,
                          pad, flip, repeat, tile
``indexing``              getitem and its dual add_at; take, take_along_axis,
                          index_add, scatter_add, one_hot
``creation``              zeros, ones, full, arange, linspace, eye, ``*_like``
``scan_ops``              associative_scan, linear_recurrence (real and complex),
                          causal_convolution (FFT)
``recurrence``            fused RNN/GRU/LSTM layers over whole sequences
``selective``, ``wkv``    the selective scan (Mamba) and RWKV's WKV, fused
``segment``               gather_rows, segment_sum, segment_mean, segment_max,
                          segment_softmax, segment_count (graph aggregation)
``sparse``                sparse (CSR) matrix times dense, with value gradients
========================  ====================================================
"""

from . import methods as _methods
from . import recurrence, scan_ops, wkv
from .creation import (arange, empty, eye, full, full_like, linspace, ones, ones_like,
                       zeros, zeros_like)
from .elementwise import (abs, add, astype, ceil, clip, cos, divide, equal, erf, exp,
                          expm1, floor, floor_divide, greater, greater_equal, isfinite,
                          isinf, isnan, less, less_equal, log, log1p, logical_and,
                          logical_not, logical_or, logical_xor, maximum, minimum, multiply,
                          negative, not_equal, pow_scalar, power, relu, remainder, round,
                          sigmoid, sign, sin, softplus, sqrt, square, subtract, tan, tanh,
                          where)
from .indexing import (add_at, getitem, index_add, one_hot, scatter_add, take,
                       take_along_axis)
from .linalg import einsum, matmul, outer, tensordot
from .reductions import (all, any, argmax, argmin, cumsum, log_softmax, logsumexp, max,
                         mean, min, prod, softmax, std, sum, var)
from .segment import (gather_rows, segment_count, segment_max, segment_mean, segment_softmax,
                      segment_sum)
from .shape import (broadcast_arrays, broadcast_to, concatenate, expand_dims, flatten,
                    flip, moveaxis, pad, ravel, repeat, reshape, split, squeeze, stack,
                    swapaxes, tile, transpose)

from .scan_ops import (associative_scan, causal_convolution, complex_linear_recurrence,
                       linear_recurrence)

_methods.install()

__all__ = [
    "arange", "empty", "eye", "full", "full_like", "linspace", "ones", "ones_like", "zeros",
    "zeros_like",
    "abs", "add", "astype", "ceil", "clip", "cos", "divide", "equal", "erf", "exp", "expm1",
    "floor", "floor_divide", "greater", "greater_equal", "isfinite", "isinf", "isnan",
    "less", "less_equal", "log", "log1p", "logical_and", "logical_not", "logical_or",
    "logical_xor", "maximum", "minimum", "multiply", "negative", "not_equal", "power",
    "relu", "remainder", "round", "sigmoid", "sign", "sin", "softplus", "sqrt", "square", "subtract",
    "tan", "tanh", "where",
    "add_at", "getitem", "index_add", "one_hot", "scatter_add", "take", "take_along_axis",
    "einsum", "matmul", "outer", "tensordot",
    "all", "any", "argmax", "argmin", "cumsum", "log_softmax", "logsumexp", "max", "mean",
    "min", "prod", "softmax", "std", "sum", "var",
    "broadcast_arrays", "broadcast_to", "concatenate", "expand_dims", "flatten", "flip",
    "moveaxis", "pad", "ravel", "repeat", "reshape", "split", "squeeze", "stack",
    "swapaxes", "tile", "transpose",
    "associative_scan", "causal_convolution", "complex_linear_recurrence", "linear_recurrence",
    "gather_rows", "segment_count", "segment_max", "segment_mean", "segment_softmax",
    "segment_sum",
]


def warm_up(dtypes=None) -> None:
    """Compile (or load from the disk cache) the recurrent kernels now, so that the first
    training step does not pay for it. Benchmarks call this before timing. ``dtypes``:
    only the kernels for these data types (default: float32 and float64, and complex64
    and complex128 for the linear recurrence). With an empty cache, every variant took
    26.8 s to compile on a 2-core Xeon, float32 and complex64 alone 12.8 s."""
    import numpy as np

    wanted = None if dtypes is None else {np.dtype(d) for d in dtypes}
    scan_ops.warm(wanted)
    recurrence.warm(wanted)
    wkv.warm(wanted)
