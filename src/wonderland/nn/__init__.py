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
from .conv import (AvgPool1d, AvgPool2d, AvgPool3d, Conv1d, Conv2d, Conv3d, ConvTranspose1d,
                   ConvTranspose2d, ConvTranspose3d, GlobalAvgPool, GlobalMaxPool, MaxPool1d,
                   MaxPool2d, MaxPool3d, receptive_field)
from .normalization import (BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, ChannelDropout,
                            Dropout1d, Dropout2d, Dropout3d, GroupNorm, LayerNorm, RMSNorm)
from .residual import Bottleneck, ResidualBlock
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, detach_state, truncated_chunks
from .ssm import (AFTFull, AFTSimple, LRU, S4D, LinearAttention, Mamba, RWKVBlock,
                  RWKVChannelMixing, RWKVTimeMixing)
from .attention import KVCache, MultiheadAttention
from .positional import (ALiBi, LearnedPositionalEmbedding, RotaryEmbedding,
                         SinusoidalPositionalEmbedding, T5RelativePositionBias)
from .transformer import (AttentionMixer, ClassToken, ConvFeatureEncoder, FourierMixer,
                          MetaFormerBlock, MLPMixerBlock, PatchEmbed, PoolingMixer, Transformer,
                          TransformerDecoder, TransformerDecoderLayer, TransformerEncoder,
                          TransformerEncoderLayer)
from .graph import (AttentionalAggregation, GATConv, GCNConv, GINConv, GraphTransformerLayer,
                    MessagePassing, SAGEConv, global_add_pool, global_max_pool, global_mean_pool)
from . import torch_port  # load_torch_state_dict, torch_state_dict: PyTorch weights in and out
