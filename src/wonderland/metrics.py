"""Evaluation metrics on tensors or arrays; each returns a Python float (or an array
for the confusion matrix)."""

from __future__ import annotations

import numpy as np

from .core.tensor import Tensor


def _np(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def accuracy(output, target) -> float:
    """Fraction of correct predictions. ``output`` holds class scores (classes on the
    last axis, argmax taken) or predicted labels of ``target``'s shape."""
    out, t = _np(output), _np(target)
    pred = out.argmax(-1) if out.ndim == t.ndim + 1 else out
    if pred.shape != t.shape:
        raise ValueError(f"accuracy: predictions {pred.shape} and targets {t.shape} differ "
                         f"(scores should have classes on the last axis)")
    return float((pred == t).mean()) if t.size else float("nan")


def binary_accuracy(output, target, threshold=0.0) -> float:
    """Accuracy of ``output > threshold`` against 0/1 targets (threshold 0 for logits,
    0.5 for probabilities)."""
    out, t = _np(output), _np(target)
    out = out.reshape(t.shape) if out.size == t.size else out
    return float(((out > threshold) == (t > 0.5)).mean())


def mse(output, target) -> float:
    """Mean squared error."""
    out, t = _np(output), _np(target)
    return float(((out.reshape(t.shape) - t) ** 2).mean())


def mae(output, target) -> float:
    """Mean absolute error."""
    out, t = _np(output), _np(target)
    return float(np.abs(out.reshape(t.shape) - t).mean())


def r2_score(output, target) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``."""
    out, t = _np(output).astype(np.float64), _np(target).astype(np.float64)
    out = out.reshape(t.shape)
    ss_tot = ((t - t.mean()) ** 2).sum()
    return float(1.0 - ((t - out) ** 2).sum() / ss_tot) if ss_tot else float("nan")


def confusion_matrix(output, target, num_classes=None) -> np.ndarray:
    """``m[i, j]`` counts samples of true class ``i`` predicted as ``j``."""
    out, t = _np(output), _np(target).astype(np.int64)
    pred = (out.argmax(-1) if out.ndim == t.ndim + 1 else out).astype(np.int64).ravel()
    t = t.ravel()
    k = int(num_classes if num_classes is not None else max(pred.max(initial=0), t.max(initial=0)) + 1)
    if pred.size and (pred.min() < 0 or pred.max() >= k or t.min() < 0 or t.max() >= k):
        raise ValueError(f"confusion_matrix: labels out of range for {k} classes")
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (t, pred), 1)
    return m


METRICS = {"accuracy": accuracy, "binary_accuracy": binary_accuracy, "mse": mse, "mae": mae,
           "r2": r2_score}
