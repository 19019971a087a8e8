"""Chapter 1: the power of scaling — one family of character-level transformers trained
on *Alice* at several sizes with the same data budget; validation loss against
parameters and compute on log-log axes, with a fitted power law."""

from __future__ import annotations

import math
import time

import numpy as np
from matplotlib.ticker import FormatStrFormatter
from threadpoolctl import threadpool_limits

import wonderland as wl

from .base import Check, Result
from .ch10_transformers import bits_per_char, char_data, train_lm, unigram_bits
from .plotting import COLORS


def fit_power_law(x, y):
    """Least squares on logs: ``y ≈ a · x^(−alpha)``; returns (a, alpha, R²)."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    slope, intercept = np.polyfit(lx, ly, 1)
    pred = intercept + slope * lx
    ss_res = float(((ly - pred) ** 2).sum())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    return math.exp(intercept), -slope, 1.0 - ss_res / ss_tot if ss_tot else 0.0


def run(ctx) -> Result:
    with threadpool_limits(1, user_api="blas"):
        return _run(ctx)


def _run(ctx) -> Result:
    tok, train, valid = char_data()
    sizes = ctx.pick([(16, 2), (32, 2), (64, 2), (128, 2)], [(16, 1), (32, 1), (64, 1), (128, 1)])
    ctx_len, batch = 32, 32
    steps = ctx.pick(400, 160)
    tokens = steps * ctx_len * batch
    rows = []
    for d, layers in sizes:
        ctx.status(f"training d={d}, {layers} layer(s)")
        wl.random.seed(ctx.seed)
        model = wl.models.GPT(len(tok), ctx_len, layers, 4, d)
        start = time.perf_counter()
        train_lm(model, train, steps, ctx_len, batch, 3e-3, ctx.seed)
        seconds = time.perf_counter() - start
        n = model.num_parameters(embeddings=False)
        bits = bits_per_char(model, valid, ctx_len, max_chars=ctx.pick(8000, 4000))
        rows.append({"d_model": d, "layers": layers, "parameters": model.num_parameters(),
                     "non_embedding_parameters": n, "compute_flops": 6.0 * n * tokens,
                     "valid_bits_per_char": bits, "train_seconds": seconds})
    params = [r["non_embedding_parameters"] for r in rows]
    compute = [r["compute_flops"] for r in rows]
    bits = [r["valid_bits_per_char"] for r in rows]
    a, alpha, r2 = fit_power_law(params, bits)
    ac, alpha_c, r2_c = fit_power_law(compute, bits)
    uni = unigram_bits(train, valid, len(tok))
    falls = sum(b2 < b1 for b1, b2 in zip(bits, bits[1:]))

    fig = ctx.figure("scaling", f"Validation bits per character of character-level transformers "
                     f"of {len(rows)} sizes, each trained on the same {tokens:,} characters of "
                     f"Alice: loss falls as a power law of the parameters (left) and of the "
                     f"training compute (right, 6·N·tokens). Dashed: the fitted power laws.")
    fig.set_size_inches(9, 3.6)
    for i, (xs, (aa, al, rr), label) in enumerate([
            (params, (a, alpha, r2), "non-embedding parameters N"),
            (compute, (ac, alpha_c, r2_c), "training compute C (FLOPs)")]):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.loglog(xs, bits, "o", color=COLORS[i])
        grid = np.geomspace(min(xs) / 1.3, max(xs) * 1.3, 50)
        ax.loglog(grid, aa * grid ** (-al), "--", color="#444444",
                  label=f"{aa:.2f}·x^(−{al:.3f}), R² = {rr:.2f}")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.1f"))
        ax.set_xlabel(label)
        ax.set_ylabel("validation bits / character")
        ax.legend(fontsize=8)
    ctx.save(fig)

    metrics = {"sizes": rows, "power_law_alpha_params": alpha, "power_law_r2_params": r2,
               "power_law_alpha_compute": alpha_c, "power_law_r2_compute": r2_c,
               "unigram_bits_per_char": uni, "training_characters": tokens}
    checks = [
        Check("validation loss falls with every increase in size (steps that fall)", falls,
              len(rows) - 1, ">="),
        Check("fitted power-law exponent in parameters is positive", alpha, 0.0, ">"),
        Check("power law in parameters fits the points (R² of the log-log fit)", r2,
              ctx.pick(0.85, 0.75), ">="),
        Check("the largest model beats the unigram model by a margin (bits/char)", bits[-1],
              uni - ctx.pick(1.5, 1.0), "<="),
    ]
    table = ", ".join(f"{r['non_embedding_parameters']:,} → {r['valid_bits_per_char']:.2f}"
                      for r in rows)
    summary = (f"{len(rows)} character-level GPTs (same recipe; width {sizes[0][0]}–{sizes[-1][0]}, "
               f"{sizes[0][1]}–{sizes[-1][1]} layers), each trained on {tokens:,} characters of "
               f"Alice, reach validation bits per character (non-embedding parameters → bits): "
               f"{table}. A power law L = {a:.2f}·N^(−{alpha:.3f}) fits with R² = {r2:.2f}; in "
               f"compute, L ∝ C^(−{alpha_c:.3f}). Bigger models learn more from the same data — "
               f"the predictable improvement with scale that chapter 1 describes — here over a "
               f"range of {params[-1] / params[0]:.0f}× in parameters, with a unigram model at "
               f"{uni:.2f} bits as the floor to beat.")
    return Result(metrics, summary, checks)
