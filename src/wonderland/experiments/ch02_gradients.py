"""Chapter 2: derivatives, gradients and gradient descent (with momentum)."""

from __future__ import annotations

import numpy as np

import wonderland as wl

from .base import Check, Result
from .plotting import COLORS, explained


def _hand_gradient_check(ctx):
    """A batch-vectorised logistic loss, its gradient coded by hand, against autodiff."""
    rng = np.random.default_rng(ctx.seed)
    x = rng.standard_normal((256, 5))
    y = np.sign(rng.standard_normal(256))
    w = rng.standard_normal(5)

    def loss(w_):                           # mean_i log(1 + exp(-y_i <w, x_i>))
        margins = (wl.tensor(x) @ w_) * wl.tensor(y)
        return wl.nn.functional.softplus(-margins).mean()

    m = y * (x @ w)
    hand = -(x * (y / (1 + np.exp(m)))[:, None]).mean(0)     # by hand: -mean y x σ(-m)
    auto = wl.grad(loss)(wl.tensor(w)).numpy()
    eps = 1e-6
    fd = np.array([(loss(wl.tensor(w + eps * e)).item() - loss(wl.tensor(w - eps * e)).item()) / (2 * eps)
                   for e in np.eye(5)])
    return float(np.abs(hand - auto).max()), float(np.abs(fd - auto).max())


def _descent_paths(ctx):
    theta = np.deg2rad(30)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    a = rot @ np.diag([1.0, 20.0]) @ rot.T                   # condition number 20
    A = wl.tensor(a)

    def f(v):
        return 0.5 * (v @ A @ v)

    grad_f = wl.grad(f)
    start = wl.tensor(np.array([-2.0, 1.5]))
    steps = ctx.pick(150, 100)
    lr = 0.09
    paths = {"gradient descent": wl.models.gradient_descent(grad_f, start, lr, steps),
             "momentum 0.5": wl.models.gradient_descent(grad_f, start, lr, steps, momentum=0.5)}

    def steps_to(path, tol=1e-6):
        values = 0.5 * np.einsum("ti,ij,tj->t", path, a, path)
        hit = np.flatnonzero(values < tol)
        return int(hit[0]) if hit.size else len(path)

    return a, paths, {k: steps_to(p) for k, p in paths.items()}


def run(ctx) -> Result:
    ctx.status("hand-coded gradient vs autodiff")
    hand_err, fd_err = _hand_gradient_check(ctx)
    ctx.status("gradient descent paths")
    a, paths, needed = _descent_paths(ctx)

    fig = ctx.figure("descent", "Gradient descent (lr 0.09) zig-zags across the valley of an "
                     "ill-conditioned quadratic (grey contours: levels of f); momentum follows the valley floor.")
    ax = fig.add_subplot(111)
    g = np.linspace(-2.5, 2.5, 200)
    xx, yy = np.meshgrid(g, g)
    pts = np.stack([xx, yy], -1)
    zz = 0.5 * np.einsum("...i,ij,...j->...", pts, a, pts)
    explained(ax.contour(xx, yy, zz, levels=np.geomspace(0.01, 60, 14), colors="#bbbbbb",
                         linewidths=0.7), "contours")
    for (name, path), c in zip(paths.items(), COLORS):
        ax.plot(path[:40, 0], path[:40, 1], "-o", ms=2.5, lw=1, color=c,
                label=f"{name} ({needed[name]} steps to f < 1e-6)")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    ctx.save(fig)

    gd, mom = needed["gradient descent"], needed["momentum 0.5"]
    metrics = {"hand_vs_autodiff_max_abs_error": hand_err, "fd_vs_autodiff_max_abs_error": fd_err,
               "gd_steps_to_1e-6": gd, "momentum_steps_to_1e-6": mom}
    checks = [Check("hand-coded gradient equals autodiff (max abs error)", hand_err, 1e-12, "<="),
              Check("finite differences agree with autodiff", fd_err, 1e-7, "<="),
              Check("momentum needs fewer steps than plain gradient descent", mom, gd, "<")]
    summary = (f"The gradient of a logistic loss over a batch of 256 points, written by hand, "
               f"matches reverse-mode autodiff to {hand_err:.1e} (finite differences agree to "
               f"{fd_err:.1e}). On a quadratic with condition number 20, gradient descent with "
               f"step 0.09 needs {gd} steps to bring f below 1e-6, zig-zagging across the "
               f"valley; with momentum 0.5 it needs {mom}.")
    return Result(metrics, summary, checks)
