"""SGD (momentum, Nesterov), Adam, AdamW, RMSprop and Adagrad, with PyTorch's update
rules and defaults.

Each optimiser gives ``_init_state`` (the arrays it keeps per parameter), ``_prepare``
(per-step scalars such as bias corrections) and ``_kernel``, a purely elementwise update
written with in-place NumPy operations, so that large parameters can be updated in
slices on several threads.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import compiled
from ..ops.kernels import optim as fused
from .optimizer import Optimizer

_NON_NEGATIVE = (0.0, None, False)


def _effective_grad(p, g, group, coupled_decay=True):
    """The gradient after ``maximize`` and coupled (L2) weight decay."""
    if group.get("maximize"):
        g = -g
    wd = group.get("weight_decay", 0.0)
    if wd and coupled_decay:
        g = g + wd * p
    return g


def _fused(p, g) -> bool:
    """Whether the compiled one-pass update applies: NumPy arrays, contiguous, one dtype."""
    return (compiled.ENABLED and type(p) is np.ndarray and type(g) is np.ndarray
            and p.flags.c_contiguous and g.flags.c_contiguous and p.dtype == g.dtype
            and p.dtype.kind == "f")


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and L2 decay:
    ``d = g + wd·p``; ``buf = μ·buf + (1 - dampening)·d``; ``p -= lr·(d + μ·buf if
    nesterov else buf)``."""

    _RANGES = {"lr": _NON_NEGATIVE, "momentum": _NON_NEGATIVE, "dampening": _NON_NEGATIVE,
               "weight_decay": _NON_NEGATIVE}

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        self._check_group(defaults)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"SGD: Nesterov momentum requires momentum > 0 and dampening = 0, "
                             f"got momentum={momentum}, dampening={dampening}")
        super().__init__(params, defaults)

    def _init_state(self, param, group):
        return {"momentum_buffer": np.zeros_like(param)} if group["momentum"] else {}

    def _prepare(self, state, group, first):
        return {"first": first}

    def _kernel(self, p, g, state, group, hyper):
        lr, mu = group["lr"], group["momentum"]
        if mu and _fused(p, g) and not group["maximize"]:
            fused.sgd_momentum(p.reshape(-1), g.reshape(-1), state["momentum_buffer"].reshape(-1),
                               lr, mu, group["dampening"], group["weight_decay"],
                               group["nesterov"], hyper["first"])
            return
        g = _effective_grad(p, g, group)
        if mu:
            buf = state["momentum_buffer"]
            if hyper["first"]:
                buf[...] = g                     # PyTorch: the first buffer is the gradient
            else:
                buf *= mu
                buf += (1.0 - group["dampening"]) * g
            g = g + mu * buf if group["nesterov"] else buf
        p -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba): bias-corrected first and second moment estimates.
    ``weight_decay`` adds ``wd·p`` to the gradient (L2); see :class:`AdamW` for the
    decoupled form."""

    decoupled = False
    _RANGES = {"lr": _NON_NEGATIVE, "eps": _NON_NEGATIVE, "weight_decay": _NON_NEGATIVE}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        self._check_group(defaults)
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)

    def _init_state(self, param, group):
        state = {"step": 0, "exp_avg": np.zeros_like(param), "exp_avg_sq": np.zeros_like(param)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(param)
        return state

    def _prepare(self, state, group, first):
        state["step"] += 1
        b1, b2 = group["betas"]
        return {"bias1": 1.0 - b1 ** state["step"], "bias2": 1.0 - b2 ** state["step"]}

    def _kernel(self, p, g, state, group, hyper):
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        if _fused(p, g) and not group["amsgrad"] and not group["maximize"]:
            fused.adam(p.reshape(-1), g.reshape(-1), state["exp_avg"].reshape(-1),
                       state["exp_avg_sq"].reshape(-1), lr, b1, b2, eps, hyper["bias1"],
                       hyper["bias2"], group["weight_decay"], self.decoupled)
            return
        if self.decoupled and group["weight_decay"]:
            p *= 1.0 - lr * group["weight_decay"]
        g = _effective_grad(p, g, group, coupled_decay=not self.decoupled)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        scratch = np.subtract(g, m)                      # m += (1 - b1)(g - m)
        scratch *= 1.0 - b1
        m += scratch
        np.multiply(g, g, out=scratch)                   # v = b2 v + (1 - b2) g²
        scratch *= 1.0 - b2
        v *= b2
        v += scratch
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        # p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), with sqrt(bc2) folded into the
        # scalars so the denominator takes two passes instead of three
        root_bc2 = math.sqrt(hyper["bias2"])
        np.sqrt(v, out=scratch)
        scratch += eps * root_bc2
        np.divide(m, scratch, out=scratch)
        scratch *= lr * root_bc2 / hyper["bias1"]
        p -= scratch


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr·wd`` before the Adam step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


class RMSprop(Optimizer):
    """RMSprop: divide by a running root-mean-square of gradients (optionally centred,
    with momentum)."""

    _RANGES = {"lr": _NON_NEGATIVE, "alpha": _NON_NEGATIVE, "eps": _NON_NEGATIVE,
               "weight_decay": _NON_NEGATIVE, "momentum": _NON_NEGATIVE}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _init_state(self, param, group):
        state = {"step": 0, "square_avg": np.zeros_like(param)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(param)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(param)
        return state

    def _prepare(self, state, group, first):
        state["step"] += 1
        return {}

    def _kernel(self, p, g, state, group, hyper):
        lr, alpha, eps, mu = group["lr"], group["alpha"], group["eps"], group["momentum"]
        g = _effective_grad(p, g, group)
        sq = state["square_avg"]
        sq *= alpha
        sq += (1.0 - alpha) * g * g
        if group["centered"]:
            ga = state["grad_avg"]
            ga *= alpha
            ga += (1.0 - alpha) * g
            avg = np.sqrt(sq - ga * ga)
        else:
            avg = np.sqrt(sq)
        avg += eps
        if mu > 0:
            buf = state["momentum_buffer"]
            buf *= mu
            buf += g / avg
            p -= lr * buf
        else:
            p -= lr * (g / avg)


class Adagrad(Optimizer):
    """Adagrad: per-coordinate steps shrinking with the accumulated squared gradients."""

    _RANGES = {"lr": _NON_NEGATIVE, "lr_decay": _NON_NEGATIVE, "weight_decay": _NON_NEGATIVE,
               "initial_accumulator_value": _NON_NEGATIVE, "eps": _NON_NEGATIVE}

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, maximize=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _init_state(self, param, group):
        return {"step": 0, "sum": np.full_like(param, group["initial_accumulator_value"])}

    def _prepare(self, state, group, first):
        state["step"] += 1
        return {"clr": group["lr"] / (1.0 + (state["step"] - 1) * group["lr_decay"])}

    def _kernel(self, p, g, state, group, hyper):
        g = _effective_grad(p, g, group)
        s = state["sum"]
        s += g * g
        std = np.sqrt(s)
        std += group["eps"]
        p -= hyper["clr"] * (g / std)
