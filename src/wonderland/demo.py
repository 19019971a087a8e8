"""A small end-to-end demonstration of the core: an MLP trained by gradient descent
with momentum on two interleaved half-moons, gradients from ``wl.value_and_grad``,
checked against finite differences."""

from __future__ import annotations

import math
import time

import numpy as np

import wonderland as wl


def make_moons(n: int, noise: float, seed: int):
    """Two interleaving half circles in 2-D with labels 0/1."""
    rng = np.random.default_rng(seed)
    half = n // 2
    t0 = rng.uniform(0, math.pi, half)
    t1 = rng.uniform(0, math.pi, n - half)
    upper = np.stack([np.cos(t0), np.sin(t0)], 1)
    lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)
    x = np.concatenate([upper, lower]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(half), np.ones(n - half)])
    return x.astype(np.float32), y.astype(np.int64)


def init_params(sizes, seed):
    g = wl.random.Generator(seed)
    params = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"w{i}"] = g.normal((a, b), std=math.sqrt(2.0 / a))
        params[f"b{i}"] = wl.zeros(b)
    return params


def forward(params, x):
    n = len(params) // 2
    h = x
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < n - 1:
            h = wl.tanh(h)
    return h


def loss_fn(params, x, onehot):
    logits = forward(params, x)
    return -(wl.log_softmax(logits, axis=-1) * onehot).sum(axis=-1).mean()


def run(steps: int = 300, lr: float = 0.5, momentum: float = 0.9, seed: int = 0) -> int:
    if steps <= 0:
        print(f"demo: --steps must be positive, got {steps}")
        return 2
    x_np, y_np = make_moons(400, 0.15, seed)
    x, onehot = wl.tensor(x_np), wl.one_hot(y_np, 2)
    params = init_params([2, 32, 32, 2], seed)
    velocity = {k: wl.zeros_like(v) for k, v in params.items()}
    step = wl.value_and_grad(loss_fn)
    print(f"wonderland {wl.__version__} demo: MLP 2-32-32-2 on two moons (400 points), "
          f"{steps} steps of gradient descent with momentum")
    start = time.perf_counter()
    report_every = max(1, steps // 6)
    for i in range(1, steps + 1):
        loss, grads = step(params, x, onehot)
        for k in params:
            velocity[k] = momentum * velocity[k] - lr * grads[k]
            params[k] = params[k] + velocity[k]
        if i % report_every == 0 or i == steps:
            acc = (forward(params, x).argmax(axis=-1).numpy() == y_np).mean()
            print(f"  step {i:5d}   loss {loss.item():.4f}   accuracy {acc:6.1%}")
    elapsed = time.perf_counter() - start
    acc = (forward(params, x).argmax(axis=-1).numpy() == y_np).mean()
    print(f"trained in {elapsed:.2f} s ({1000 * elapsed / steps:.2f} ms/step); "
          f"final training accuracy {acc:.1%}")
    small = {k: v.astype(wl.float64) for k, v in init_params([2, 4, 2], seed + 1).items()}
    wl.testing.check_grads(lambda p: loss_fn(p, x[:16].astype(wl.float64),
                                             onehot[:16].astype(wl.float64)),
                           (small,), order=2)
    print("gradient check (forward and reverse mode, up to second order, float64): passed")
    return 0 if acc > 0.95 else 1
