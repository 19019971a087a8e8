"""Data: datasets, the DataLoader, bundled and synthetic datasets, file readers, splits."""

from .dataset import DataLoader, Dataset, Subset, TensorDataset, default_collate, random_split
from .distributed import DistributedSampler
from .datasets import (CharVocab, Standardizer, default_text, load_breast_cancer, load_diabetes,
                       load_digits, load_iris, load_membrane_potential, load_wine, make_circles,
                       make_moons, make_regression_1d, make_spirals, make_xor, read_csv, read_npz,
                       read_text, train_test_split)
from . import augment
from .augment import Compose, CutMix, MixUp, RandomCrop, RandomFlip, RandomTranslate
from .sequences import lengths_to_mask, pad_sequences, shift_for_next_step, sliding_windows
from .bundled import load_alice, load_spoken_digits
from .tokenizers import BPETokenizer, CharTokenizer
