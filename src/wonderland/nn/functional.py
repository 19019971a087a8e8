"""The stateless form of every layer, activation and loss (``wl.nn.functional``): one
façade over the modules that define them (``activations``, ``dropout``, ``dense``,
``losses``, ``conv``, ``normalization``, ``attention``, ``positional``), which never
import it.

Shapes are channels-last: features, classes and channels are the last axis.
Losses take ``reduction="mean" | "sum" | "none"``.
"""

from __future__ import annotations

from ..ops.nn import softmax_cross_entropy
from .activations import (elu, gelu, leaky_relu, log_sigmoid, log_softmax, relu, sigmoid, silu,
                          softmax, softplus, tanh)
from .attention import linear_attention, linear_attention_recurrent, scaled_dot_product_attention
from .conv import (avg_pool1d, avg_pool2d, avg_pool3d, conv1d, conv2d, conv3d, conv_transpose1d,
                   conv_transpose2d, conv_transpose3d, global_avg_pool, global_max_pool,
                   masked_global_avg_pool, masked_global_max_pool, max_pool1d, max_pool2d,
                   max_pool3d)
from .dense import embedding, linear, one_hot
from .dropout import dropout
from .losses import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                     hinge_loss, huber_loss, kl_div, l1_loss, mse_loss, multi_margin_loss,
                     nll_loss, smooth_l1_loss)
from .normalization import batch_norm, channel_dropout, group_norm, layer_norm, rms_norm
from .positional import alibi_bias, rotate_half, sinusoidal_embedding

__all__ = [
    "linear", "embedding", "dropout", "relu", "leaky_relu", "softplus", "elu", "gelu", "silu",
    "sigmoid", "tanh", "softmax", "log_softmax", "log_sigmoid", "mse_loss", "l1_loss",
    "huber_loss", "smooth_l1_loss", "hinge_loss", "multi_margin_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "cross_entropy", "nll_loss", "kl_div",
    "softmax_cross_entropy", "one_hot", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "global_avg_pool", "global_max_pool", "masked_global_avg_pool",
    "masked_global_max_pool", "batch_norm", "layer_norm", "group_norm", "rms_norm",
    "channel_dropout",
    "scaled_dot_product_attention", "linear_attention", "linear_attention_recurrent",
    "alibi_bias", "rotate_half", "sinusoidal_embedding",
]
