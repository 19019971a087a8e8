"""Linear models (chapter 4): least squares in closed form and by gradient descent,
ridge regression, logistic and softmax regression."""

from __future__ import annotations

import numpy as np

from .. import linalg, ops
from ..core.tensor import Tensor
from ..nn import Linear, Module
from ..ops.arguments import floating, to_tensor


def least_squares(x, y, l2=0.0, fit_intercept=True):
    """Closed-form (ridge) least squares: ``argmin_w ||x w + b - y||² + l2 ||w||²``.

    Solved stably, never with an explicit inverse: ridge is least squares on the
    augmented system ``[x; sqrt(l2) I] w = [y; 0]``, handed to an SVD-based solver.
    The intercept is not penalised (the data are centred first). Returns ``(w, b)``.
    """
    x = floating(to_tensor(x, "least_squares"))
    y = to_tensor(y, "least_squares").astype(x.dtype)
    if x.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"least_squares: need x (n, d) and y (n,) or (n, k); got {x.shape} "
                         f"and {y.shape}")
    if l2 < 0:
        raise ValueError(f"least_squares: l2 must be non-negative, got {l2}")
    if fit_intercept:
        xm, ym = x.mean(0), y.mean(0)
        xc, yc = x - xm, y - ym
    else:
        xc, yc = x, y
    if l2 > 0:
        d = x.shape[1]
        aug = Tensor(np.sqrt(l2) * np.eye(d, dtype=x.dtype))
        zeros = ops.zeros((d,) + yc.shape[1:], dtype=x.dtype)
        xc = ops.concatenate([xc, aug])
        yc = ops.concatenate([yc, zeros])
    w = linalg.lstsq(xc, yc)
    b = (ym - xm @ w) if fit_intercept else ops.zeros(y.shape[1:], dtype=x.dtype)
    return w, b


class LinearRegression(Module):
    """``f(x) = x w + b`` (a :class:`~wonderland.nn.Linear` layer) for regression."""

    def __init__(self, in_features, out_features=1):
        super().__init__()
        self.out_features = out_features
        self.linear = Linear(in_features, out_features)

    def forward(self, x):
        out = self.linear(x)
        return out[..., 0] if self.out_features == 1 else out


class LogisticRegression(Module):
    """``p(y=1|x) = σ(x w + b)``: ``forward`` returns the logit ``x w + b``."""

    def __init__(self, in_features):
        super().__init__()
        self.linear = Linear(in_features, 1)

    def forward(self, x):
        return self.linear(x)[..., 0]

    def predict_proba(self, x):
        return ops.sigmoid(self(x))

    def predict(self, x, threshold=0.5):
        return (self.predict_proba(x) > threshold).astype(np.int64)


class SoftmaxRegression(Module):
    """``p(y|x) = softmax(x W + b)``: ``forward`` returns the k logits."""

    def __init__(self, in_features, num_classes):
        super().__init__()
        self.linear = Linear(in_features, num_classes)

    def forward(self, x):
        return self.linear(x)

    def predict_proba(self, x):
        return ops.softmax(self(x))

    def predict(self, x):
        return ops.argmax(self(x), axis=-1)


def gradient_descent(grad_fn, x0, lr=0.1, steps=100, momentum=0.0):
    """Iterate ``x ← x − lr ∇f(x)`` (with heavy-ball momentum); returns the path as an
    array of shape ``(steps + 1,) + x0.shape``."""
    x = floating(to_tensor(x0, "gradient_descent"))
    v = ops.zeros_like(x)
    path = [x.numpy().copy()]
    for _ in range(steps):
        g = grad_fn(x)
        v = v * momentum - g * lr
        x = x + v
        path.append(x.numpy().copy())
    return np.stack(path)


__all__ = ["least_squares", "LinearRegression", "LogisticRegression", "SoftmaxRegression",
           "gradient_descent"]
