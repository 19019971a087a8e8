"""Appendix B: universal approximation in one dimension with 2m sigmoid neurons."""

from __future__ import annotations

import numpy as np

import wonderland as wl

from .base import Check, Result
from .plotting import COLORS


def _g(t):
    return np.sin(3 * np.pi * t) * np.exp(-t) + 0.5 * t ** 2


def run(ctx) -> Result:
    xs = np.linspace(0, 1, 4001)
    bins = ctx.pick([2, 4, 8, 16, 32, 64, 128, 256], [2, 8, 32, 128])
    errors, nets = [], {}
    for m in bins:
        net = wl.models.bump_network(_g, m, dtype=wl.float64)
        with wl.no_grad():
            pred = net(wl.tensor(xs[:, None])).numpy()[:, 0]
        errors.append(float(np.abs(pred - _g(xs)).mean()))
        nets[m] = pred
    slope = float(np.polyfit(np.log(bins), np.log(errors), 1)[0])

    fig = ctx.figure("approx", "The construction with m bins (2m sigmoid neurons) against the "
                     "target g(x) = sin(3πx)e⁻ˣ + x²/2.")
    ax = fig.add_subplot(111)
    ax.plot(xs, _g(xs), color="#222222", lw=2, label="g")
    for m, c in zip([bins[0], bins[1], bins[len(bins) // 2]], COLORS[1:]):
        ax.plot(xs, nets[m], color=c, lw=1, label=f"m = {m}")
    ax.set_xlabel("x")
    ax.set_ylabel("g(x) and the network's f(x)")
    ax.legend()
    ctx.save(fig)

    fig = ctx.figure("error", "Mean absolute approximation error against the number of bins; "
                     "it falls like 1/m.")
    ax = fig.add_subplot(111)
    ax.loglog(bins, errors, "-o", color=COLORS[0], label=f"error (slope {slope:.2f})")
    ax.loglog(bins, errors[0] * bins[0] / np.array(bins), "--", color="#777777", label="∝ 1/m")
    ax.set_xlabel("bins m (2m neurons)")
    ax.set_ylabel("mean |g − f|")
    ax.legend()
    ctx.save(fig)

    decreasing = all(a > b for a, b in zip(errors, errors[1:]))
    metrics = {**{f"error_m{m}": e for m, e in zip(bins, errors)}, "error_slope_loglog": slope}
    checks = [Check("error decreases at every doubling of m (1 = yes)", float(decreasing), 1.0, ">="),
              Check(f"error with m = {bins[-1]}", errors[-1], 0.01, "<="),
              Check("error slope on log-log axes", slope, -0.8, "<=")]
    summary = (f"Two sigmoid neurons a·σ(w(x − s)) − a·σ(w(x − s − Δ)) make a bin; {bins[-1]} bins "
               f"({2 * bins[-1]} neurons, built, not trained) approximate g with mean error "
               f"{errors[-1]:.4f}, against {errors[0]:.3f} for {bins[0]} bins. The error falls "
               f"with slope {slope:.2f} on log-log axes: about 1/m, as the piecewise-constant "
               f"construction predicts for a smooth g.")
    return Result(metrics, summary, checks)
