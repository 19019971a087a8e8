"""Datasets that need no download: scikit-learn's bundled tables, synthetic problems,
and readers for files a user points to (npz and CSV, never pickle).

Every loader returns ``(x, y)`` tensors: ``x`` float32 of shape ``(n, features)``, ``y``
int64 class labels (or float32 targets for regression).
"""

from __future__ import annotations

import csv
import math
import os
import zipfile

import numpy as np

from ..core import dtypes
from ..core.tensor import Tensor
from ..random import get_generator


# ----------------------------------------------------------------------------- bundled tables
def _sklearn(name):
    try:
        from sklearn import datasets as skd
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("this dataset ships with scikit-learn; pip install scikit-learn") from exc
    return getattr(skd, f"load_{name}")()


def _xy(bunch, regression=False):
    x = Tensor(np.asarray(bunch.data, dtype=np.float32))
    y = np.asarray(bunch.target)
    return x, Tensor(y.astype(np.float32) if regression else y.astype(np.int64))


def load_digits():
    """8×8 handwritten digits: 1,797 images flattened to 64 features (0–16), 10 classes."""
    return _xy(_sklearn("digits"))


def load_iris():
    """Iris flowers: 150 samples, 4 features, 3 classes."""
    return _xy(_sklearn("iris"))


def load_breast_cancer():
    """Wisconsin breast cancer: 569 samples, 30 features, 2 classes (1 = benign)."""
    return _xy(_sklearn("breast_cancer"))


def load_wine():
    """Wine cultivars: 178 samples, 13 features, 3 classes."""
    return _xy(_sklearn("wine"))


def load_diabetes():
    """Diabetes progression: 442 samples, 10 (standardised) features, a float target."""
    return _xy(_sklearn("diabetes"), regression=True)


# ----------------------------------------------------------------------------- synthetic
def _n(n, what):
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"{what}: n must be a positive int, got {n!r}")
    return int(n)


def make_xor(n=200, noise=0.1, generator=None):
    """Points around the four corners of the unit square; label = x0 XOR x1."""
    n = _n(n, "make_xor")
    g = get_generator(generator)
    corners = g.randint(0, 2, (n, 2)).numpy()
    x = corners + noise * g.normal((n, 2), dtype=np.float64).numpy()
    return Tensor(x.astype(np.float32)), Tensor((corners[:, 0] ^ corners[:, 1]).astype(np.int64))


def make_moons(n=200, noise=0.1, generator=None):
    """Two interleaving half circles."""
    n = _n(n, "make_moons")
    g = get_generator(generator)
    half = n // 2
    t = g.uniform((n,), 0.0, math.pi, dtype=np.float64).numpy()
    upper = np.stack([np.cos(t[:half]), np.sin(t[:half])], 1)
    lower = np.stack([1 - np.cos(t[half:]), 0.5 - np.sin(t[half:])], 1)
    x = np.concatenate([upper, lower]) + noise * g.normal((n, 2), dtype=np.float64).numpy()
    y = np.concatenate([np.zeros(half), np.ones(n - half)]).astype(np.int64)
    return Tensor(x.astype(np.float32)), Tensor(y)


def make_circles(n=200, noise=0.05, factor=0.5, generator=None):
    """A small circle inside a large one (label 1 = inner)."""
    n = _n(n, "make_circles")
    if not 0 < factor < 1:
        raise ValueError(f"make_circles: factor must be in (0, 1), got {factor}")
    g = get_generator(generator)
    half = n // 2
    t = g.uniform((n,), 0.0, 2 * math.pi, dtype=np.float64).numpy()
    r = np.concatenate([np.ones(half), factor * np.ones(n - half)])
    x = np.stack([r * np.cos(t), r * np.sin(t)], 1) + noise * g.normal((n, 2), dtype=np.float64).numpy()
    y = np.concatenate([np.zeros(half), np.ones(n - half)]).astype(np.int64)
    return Tensor(x.astype(np.float32)), Tensor(y)


def make_spirals(n=300, classes=2, noise=0.2, turns=1.5, generator=None):
    """Interleaved spiral arms, one per class."""
    n = _n(n, "make_spirals")
    if classes < 2:
        raise ValueError(f"make_spirals: need at least 2 classes, got {classes}")
    g = get_generator(generator)
    y = np.arange(n) % classes
    r = g.uniform((n,), 0.05, 1.0, dtype=np.float64).numpy()
    theta = 2 * math.pi * (turns * r + y / classes)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
    x += noise * 0.1 * g.normal((n, 2), dtype=np.float64).numpy()
    return Tensor(x.astype(np.float32)), Tensor(y.astype(np.int64))


def make_regression_1d(n=100, noise=0.1, fn=None, low=-3.0, high=3.0, generator=None):
    """1-D regression: ``x`` uniform in [low, high], ``y = fn(x) + noise·ε`` (default
    ``fn = sin``); shapes ``(n, 1)`` and ``(n,)``."""
    n = _n(n, "make_regression_1d")
    g = get_generator(generator)
    x = np.sort(g.uniform((n,), low, high, dtype=np.float64).numpy())
    f = np.sin if fn is None else fn
    y = np.asarray(f(x), dtype=np.float64) + noise * g.normal((n,), dtype=np.float64).numpy()
    return Tensor(x[:, None].astype(np.float32)), Tensor(y.astype(np.float32))


# ----------------------------------------------------------------------------- files
def read_npz(path, keys=None) -> dict:
    """Arrays of an ``.npz`` file as tensors (loaded with ``allow_pickle=False``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_npz: no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"read_npz: {path} is not a valid npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = list(f.files) if keys is None else list(keys)
            missing = [k for k in names if k not in f.files]
            if missing:
                raise KeyError(f"read_npz: {path} has no arrays {missing}; it has {f.files}")
            return {k: Tensor(f[k]) for k in names}
    except ValueError as exc:
        raise ValueError(f"read_npz: cannot read {path}: {exc} (object arrays are refused: "
                         f"files are loaded without pickle)") from None
    except OSError as exc:
        raise ValueError(f"read_npz: {path} is not a valid npz file ({exc})") from None


def read_csv(path, target=None, delimiter=",", header=True, dtype=None):
    """Numeric CSV columns as float tensors.

    With ``target`` (a column name, or an index when there is no header) returns
    ``(x, y)``; otherwise ``x``. Integer-valued target columns become int64.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_csv: no such file: {path}")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"read_csv: {path} is empty")
    names = [c.strip() for c in rows[0]] if header else [str(i) for i in range(len(rows[0]))]
    body = rows[1:] if header else rows
    width = len(names)
    values = np.empty((len(body), width), dtype=np.float64)
    for i, r in enumerate(body):
        if len(r) != width:
            raise ValueError(f"read_csv: {path} line {i + 1 + header} has {len(r)} fields, "
                             f"expected {width}")
        try:
            values[i] = [float(c) for c in r]
        except ValueError:
            raise ValueError(f"read_csv: {path} line {i + 1 + header} has a non-numeric "
                             f"field: {r}") from None
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    if target is None:
        return Tensor(values.astype(d))
    col = names.index(str(target)) if str(target) in names else None
    if col is None:
        if isinstance(target, int) and -width <= target < width:
            col = target % width
        else:
            raise KeyError(f"read_csv: no column {target!r}; columns are {names}")
    y = values[:, col]
    x = np.delete(values, col, axis=1)
    y_t = Tensor(y.astype(np.int64)) if np.all(y == np.round(y)) else Tensor(y.astype(d))
    return Tensor(x.astype(d)), y_t


# ----------------------------------------------------------------------------- splits, scaling
def train_test_split(*arrays, test_size=0.25, shuffle=True, stratify=None, generator=None):
    """Split tensors along the first axis: ``x_tr, x_te, y_tr, y_te = train_test_split(x, y)``.

    ``test_size`` is a fraction or a count; ``stratify`` (labels) keeps class
    proportions in both parts.
    """
    if not arrays:
        raise ValueError("train_test_split: need at least one array")
    ts = [a if isinstance(a, Tensor) else Tensor(a) for a in arrays]
    n = ts[0].shape[0]
    for t in ts:
        if t.shape[0] != n:
            raise ValueError(f"train_test_split: arrays have different lengths ({n} and {t.shape[0]})")
    n_test = int(math.ceil(test_size * n)) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: test_size={test_size} leaves an empty part for n={n}")
    g = get_generator(generator)
    if stratify is not None:
        labels = stratify.data if isinstance(stratify, Tensor) else np.asarray(stratify)
        test_idx = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if shuffle:
                members = members[g.permutation(len(members)).numpy()]
            k = int(round(len(members) * n_test / n))
            test_idx.extend(members[:k])
        test_idx = np.array(sorted(test_idx), dtype=np.int64)
        train_idx = np.setdiff1d(np.arange(n), test_idx)
        if shuffle:
            train_idx = train_idx[g.permutation(len(train_idx)).numpy()]
            test_idx = test_idx[g.permutation(len(test_idx)).numpy()]
    else:
        order = g.permutation(n).numpy() if shuffle else np.arange(n)
        test_idx, train_idx = order[:n_test], order[n_test:]
    out = []
    for t in ts:
        out.extend([Tensor(t.data[train_idx]), Tensor(t.data[test_idx])])
    return out


class Standardizer:
    """Shift and scale features to zero mean and unit variance (statistics from ``fit``)."""

    def __init__(self, eps=1e-8):
        self.eps = eps
        self.mean = None
        self.std = None

    def fit(self, x, axis=0):
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        self.mean = data.mean(axis=axis, keepdims=True)
        self.std = data.std(axis=axis, keepdims=True)
        self.std = np.where(self.std < self.eps, 1.0, self.std).astype(data.dtype)
        return self

    def _check(self):
        if self.mean is None:
            raise RuntimeError("Standardizer: call fit() first")

    def transform(self, x):
        self._check()
        return (x - self.mean) / self.std

    def inverse_transform(self, x):
        self._check()
        return x * self.std + self.mean

    def fit_transform(self, x, axis=0):
        return self.fit(x, axis).transform(x)


# ----------------------------------------------------------------------------- series and text
def load_membrane_potential(downsample=1):
    """A neuron's membrane potential (12,000 samples; spiking under a current step),
    from the sample data that matplotlib installs. Returns a float32 tensor ``(T,)``."""
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "membrane.dat")
    if not os.path.exists(path):  # pragma: no cover - part of every matplotlib install
        raise FileNotFoundError(f"load_membrane_potential: {path} is missing from matplotlib")
    series = np.fromfile(path, dtype=np.float32)
    if downsample > 1:
        series = series[: len(series) // downsample * downsample].reshape(-1, downsample).mean(1)
    return Tensor(series.astype(np.float32))


def default_text(max_chars=None):
    """English prose that every Python installation ships: the reference documentation
    topics behind ``help()`` (``pydoc_data``), joined in a fixed order."""
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return text if max_chars is None else text[:max_chars]


def read_text(path, max_chars=None):
    """A UTF-8 text file as a string (a clear error when missing or not text)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_text: no such file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read() if max_chars is None else f.read(max_chars)
    except UnicodeDecodeError as exc:
        raise ValueError(f"read_text: {path} is not UTF-8 text ({exc})") from None
    if not text.strip():
        raise ValueError(f"read_text: {path} is empty")
    return text


class CharVocab:
    """Characters ↔ integer ids for character-level models."""

    def __init__(self, text):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        missing = sorted(set(text) - set(self.index))
        if missing:
            raise KeyError(f"CharVocab.encode: characters not in the vocabulary: {missing[:10]}")
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        ids = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
        return "".join(self.chars[int(i)] for i in ids)
