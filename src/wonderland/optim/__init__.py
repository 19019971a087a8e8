"""Optimisers, schedules and gradient clipping (PyTorch's names and update rules)."""

from ..nn.utils import clip_grad_norm_, clip_grad_value_
from . import lr_scheduler
from .lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR, MultiStepLR,
                           SequentialLR, StepLR)
from .optimizer import Optimizer
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop
