"""Neural-network building blocks (PyTorch's names, channels-last layouts).

``Module``/``Parameter`` and containers; layers (``Linear``, ``Embedding``, ``MLP`` …);
activation modules; loss modules; ``init``; ``functional``; ``utils``.
"""

from . import functional, init, utils
from .containers import ModuleDict, ModuleList, Sequential
from .layers import (ELU, GELU, MLP, Dropout, Embedding, Flatten, Identity, LeakyReLU, Linear,
                     LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh, activation)
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HingeLoss, HuberLoss,
                     KLDivLoss, L1Loss, MSELoss, MultiMarginLoss, NLLLoss, SmoothL1Loss)
from .module import Module, Parameter, functional_call
