"""Tensor, Primitive, the reverse-mode engine, forward mode and the transforms."""

from . import engine as _engine  # noqa: F401 - installs Tensor.backward
from .custom import custom_jvp, custom_vjp
from .tracing import JitError, jit
from .modes import detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .primitive import Primitive, apply
from .scan import scan
from .tensor import Tensor, as_tensor, tensor
from .transforms import (checkpoint, grad, hessian, jacfwd, jacrev, jvp, remat, value_and_grad,
                         vjp)
from .vmap import vmap
