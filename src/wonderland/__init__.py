"""wonderland: differentiable programming from first principles.

``import wonderland as wl``; the main names:

* tensors: ``wl.tensor``, ``wl.Tensor``, ``wl.zeros`` … ``wl.eye``, ``wl.random``
* operations: NumPy's names (``wl.exp``, ``wl.sum``, ``wl.matmul``, ``wl.einsum``,
  ``wl.concatenate``, ``wl.take_along_axis`` …), also as tensor methods
* transforms: ``wl.grad``, ``wl.value_and_grad``, ``wl.vjp``, ``wl.jvp``, ``wl.vmap``,
  ``wl.jacrev``, ``wl.jacfwd``, ``wl.hessian``, ``wl.checkpoint``, ``wl.scan``,
  ``wl.custom_vjp``, ``wl.custom_jvp``
* PyTorch-style autodiff: ``requires_grad``, ``.backward()``, ``.grad``, ``wl.no_grad()``
* checking: ``wl.testing.check_grads``, ``wl.detect_anomaly()``
* threads: ``wl.set_num_threads``, ``wl.get_num_threads`` (see ``wonderland.backend.threads``)
* other libraries: ``wl.from_dlpack`` and ``Tensor.__dlpack__`` (zero-copy arrays),
  ``wl.interop`` (safetensors files from anywhere), ``wl.onnx.export`` (ONNX graphs from
  the ``jit`` trace); see docs/interop.md
"""

import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    # idle OpenBLAS threads sleep at once instead of spinning (read when NumPy loads)
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import backend
from .backend import threads as _threads
from .backend.memory import tune_allocator as _tune_allocator
from .backend.threads import get_num_threads, set_num_threads
from ._version import __version__
from .core import dtypes
from .core.dtypes import (bool_, float16, float32, float64, get_default_dtype, int8, int16,
                          int32, int64, set_default_dtype, uint8)
from .core import (JitError, Primitive, Tensor, apply, as_tensor, checkpoint, custom_jvp,
                   custom_vjp, detect_anomaly, enable_grad, grad, hessian, is_grad_enabled,
                   jacfwd, jacrev, jit, jvp, no_grad, remat, scan, set_grad_enabled, tensor,
                   value_and_grad, vjp, vmap)
from .core.pytree import tree_map
from . import ops
from .ops import *  # noqa: F401,F403 - the primitives at wl.<name>
from . import autograd, linalg, random, testing
from . import data, distributions, io, metrics, models, nn, optim, train
from . import device, distributed
from .nn import parallel as _parallel  # wl.nn.parallel
from . import fft
from . import graph, sparse
from .profiler import profile
from . import interop
from . import onnx  # wl.onnx.export; imports the onnx package only when exporting
from .interop import from_dlpack  # arrays of torch, NumPy, JAX, CuPy without copies
from .ops.nn import linear, softmax_cross_entropy
from .ops.decompositions import diagonal, tril, triu
from .random import bernoulli, normal, permutation, randint, uniform  # also at wl.random

bool = bool_  # noqa: A001 - NumPy's name for the dtype

_threads.apply_blas_policy()
_tune_allocator()  # keep freed memory for the next step (backend/memory.py)

__all__ = [n for n in dir() if not n.startswith("_")]
