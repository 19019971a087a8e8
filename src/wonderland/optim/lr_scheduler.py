"""Learning-rate schedules (PyTorch's semantics): call ``scheduler.step()`` once per
epoch (or per step) after ``optimizer.step()``.

``LambdaLR``, ``StepLR``, ``MultiStepLR``, ``ExponentialLR``, ``CosineAnnealingLR``,
``LinearLR`` (linear warm-up) and ``SequentialLR`` (e.g. warm-up then cosine).
"""

from __future__ import annotations

import math

import numpy as np

from .optimizer import Optimizer, check_number


def _check_int(owner, name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer, got {value!r} "
                        f"({type(value).__name__})")
    if value < low:
        raise ValueError(f"{owner}: {name} must be at least {low}, got {value}")


class LRScheduler:
    """Base class: ``step()`` moves to the next epoch (or step) and sets every group's
    ``lr`` to :meth:`lr_at` of it; ``state_dict()`` / ``load_state_dict()``."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        _check_int(type(self).__name__, "last_epoch", last_epoch, -1)
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, epoch: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        for g, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_epoch)):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def check_state_dict(self, state: dict) -> None:
        """Raise ``ValueError``/``TypeError`` unless ``state`` fits this schedule."""
        name = type(self).__name__
        if not isinstance(state, dict) or not {"last_epoch", "base_lrs"} <= set(state):
            raise ValueError(f"{name}: a schedule state needs 'last_epoch' and 'base_lrs', got "
                             f"{state!r}")
        _check_int(name, "last_epoch", state["last_epoch"], -1)
        lrs = state["base_lrs"]
        if not isinstance(lrs, list) or len(lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"{name}: base_lrs must list one rate per parameter group "
                             f"({len(self.optimizer.param_groups)}), got {lrs!r}")
        for lr in lrs:
            check_number(name, "base_lrs", lr, 0.0)

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (checked first)."""
        self.check_state_dict(state)
        self.last_epoch = state["last_epoch"]
        self.base_lrs = list(state["base_lrs"])
        for g, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_epoch)):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class LambdaLR(LRScheduler):
    """``lr = base_lr · lr_lambda(epoch)``."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        if not callable(lr_lambda):
            raise TypeError(f"LambdaLR: lr_lambda must be a function of the epoch, got "
                            f"{lr_lambda!r}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return [b * self.lr_lambda(epoch) for b in self.base_lrs]


class StepLR(LRScheduler):
    """``lr = base_lr · gamma^(epoch // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _check_int("StepLR", "step_size", step_size, 1)
        check_number("StepLR", "gamma", gamma, 0.0)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return [b * self.gamma ** (epoch // self.step_size) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base_lr · gamma^(number of milestones ≤ epoch)``."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        for m in milestones:
            _check_int("MultiStepLR", "milestones", m, 0)
        check_number("MultiStepLR", "gamma", gamma, 0.0)
        self.milestones, self.gamma = sorted(int(m) for m in milestones), gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        k = sum(epoch >= m for m in self.milestones)
        return [b * self.gamma ** k for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr · gamma^epoch``."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        check_number("ExponentialLR", "gamma", gamma, 0.0)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return [b * self.gamma ** epoch for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min)(1 + cos(π·epoch/T_max))/2``."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803
        _check_int("CosineAnnealingLR", "T_max", T_max, 1)
        check_number("CosineAnnealingLR", "eta_min", eta_min, 0.0)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        c = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Factor moving linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps (a linear warm-up with the defaults ``1/3 → 1``)."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5,
                 last_epoch=-1):
        check_number("LinearLR", "start_factor", start_factor, 0.0, 1.0, True)
        check_number("LinearLR", "end_factor", end_factor, 0.0, 1.0, True)
        _check_int("LinearLR", "total_iters", total_iters, 0)
        if start_factor == 0:
            raise ValueError("LinearLR: start_factor must be above 0, got 0")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        frac = min(epoch, self.total_iters) / self.total_iters if self.total_iters else 1.0
        f = self.start_factor + (self.end_factor - self.start_factor) * frac
        return [b * f for b in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run ``schedulers[i]`` from ``milestones[i-1]`` on (each restarted at 0)."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        schedulers, milestones = list(schedulers), list(milestones)
        if not schedulers or len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: need one milestone fewer than schedulers, got "
                             f"{len(schedulers)} schedulers and milestones {milestones}")
        for s in schedulers:
            if not isinstance(s, LRScheduler) or s.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: every scheduler must be a schedule of the same "
                                 f"optimizer, got {s!r}")
        for m in milestones:
            _check_int("SequentialLR", "milestones", m, 1)
        if milestones != sorted(milestones):
            raise ValueError(f"SequentialLR: milestones must increase, got {milestones}")
        self.schedulers, self.milestones = list(schedulers), list(milestones)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        i = sum(epoch >= m for m in self.milestones)
        start = self.milestones[i - 1] if i else 0
        return self.schedulers[i].lr_at(epoch - start)
