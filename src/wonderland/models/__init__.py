"""Reference models built only from ``wl.nn`` and ``wl.linalg``."""

from . import universal
from .bayes import BayesianLinearRegression
from .linear import (LinearRegression, LogisticRegression, SoftmaxRegression, gradient_descent,
                     least_squares)
from .universal import bump_network
from .resnet import ResNet
from .wavenet import CharCNN, WaveNet, forecast
from .audio import AudioTransformer, log_spectrogram
from .gpt import GPT, sample_next
from .seq2seq import Seq2SeqTransformer
from .vit import MetaFormer, MLPMixer, ViT
from .gnn import GAT, GCN, GIN, GraphTransformer, LinkPredictor
