"""Chapter 1: the power of scaling — one family of character-level transformers trained
on *Alice* on a grid of model sizes × training characters. Validation loss against
parameters and data, the law L(N, D) = E + A/N^α + B/D^β fitted to the grid, the
compute-optimal frontier it implies, and a held-out corner of the grid predicted from
the rest."""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

import wonderland as wl

from .base import Check, Result, seeds
from .ch10_transformers import bits_per_char, char_data, unigram_bits
from .plotting import COLORS, explained, plain_ticks


# ----------------------------------------------------------------------------- the law
def scaling_law(params, n, d):
    """L(N, D) = E + A/N^α + B/D^β with ``params = (E, log A, α, log B, β)``."""
    e, log_a, alpha, log_b, beta = params
    return e + np.exp(log_a - alpha * np.log(n)) + np.exp(log_b - beta * np.log(d))


def fit_scaling_law(n, d, loss):
    """Least squares on the grid (several starts; the best kept): returns
    ``(E, A, α, B, β)`` and the root-mean-square error of the fit (in the loss's units)."""
    n, d, loss = (np.asarray(v, dtype=np.float64) for v in (n, d, loss))
    floor = float(loss.min())

    def residual(p):
        return scaling_law(p, n, d) - loss

    best = None
    for e0 in (0.0, 0.5 * floor, 0.9 * floor):
        for a0, b0 in ((0.3, 0.3), (0.6, 0.3), (0.3, 0.6)):
            start = np.array([e0, math.log(max(floor, 0.1)) + a0 * math.log(n.min()), a0,
                              math.log(max(floor, 0.1)) + b0 * math.log(d.min()), b0])
            fit = least_squares(residual, start, bounds=([0.0, -20, 0.0, -20, 0.0],
                                                         [floor, 40, 2.0, 40, 2.0]))
            if best is None or fit.cost < best.cost:
                best = fit
    e, log_a, alpha, log_b, beta = best.x
    rmse = float(np.sqrt(np.mean(residual(best.x) ** 2)))
    return (float(e), math.exp(log_a), float(alpha), math.exp(log_b), float(beta)), rmse


def compute_optimal(law, compute):
    """For training compute C = 6·N·D: the N that minimises L(N, C/(6N)) and that loss.
    With L = E + A/N^α + B/D^β the optimum is N* = G·(C/6)^(β/(α+β)),
    G = (αA/(βB))^(1/(α+β))."""
    e, a, alpha, b, beta = law
    c = np.asarray(compute, dtype=np.float64) / 6.0
    if alpha <= 0 or beta <= 0:
        return np.full_like(c, np.nan), np.full_like(c, np.nan)
    g = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta))
    n_opt = g * c ** (beta / (alpha + beta))
    d_opt = c / n_opt
    return n_opt, e + a / n_opt ** alpha + b / d_opt ** beta


# ----------------------------------------------------------------------------- training
def _train_and_evaluate(model, train, valid, checkpoints, ctx_len, batch, lr, seed, eval_chars):
    """AdamW with a short warm-up and then a constant rate (so that the loss after k
    steps stands for a run of k steps); validation bits per character at each of
    ``checkpoints`` (steps)."""
    g = np.random.default_rng(seed)
    opt = wl.optim.AdamW(model.parameters(), lr, weight_decay=0.01)
    warm = 20
    sched = wl.optim.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    out, steps = {}, max(checkpoints)
    for step in range(1, steps + 1):
        starts = g.integers(0, len(train) - ctx_len - 1, batch)
        x = np.stack([train[a:a + ctx_len] for a in starts])
        y = np.stack([train[a + 1:a + ctx_len + 1] for a in starts])
        opt.zero_grad()
        model.loss(x, y).backward()
        wl.optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step in checkpoints:
            out[step] = bits_per_char(model, valid, ctx_len, max_chars=eval_chars)
    return out


def run(ctx) -> Result:
    with threadpool_limits(1, user_api="blas"):
        return _run(ctx)


def _run(ctx) -> Result:
    tok, train, valid = char_data()
    layers = ctx.pick(2, 1)
    widths = [16, 32, 64, 128]
    checkpoints = ctx.pick([25, 50, 100, 200, 400], [20, 40, 80, 160])
    ctx_len, batch = 32, 32
    per_step = ctx_len * batch
    eval_chars = ctx.pick(8000, 4000)
    rows, seconds = [], {}
    for d in widths:
        ctx.status(f"training d={d}, {layers} layer(s)")
        wl.random.seed(ctx.seed)
        model = wl.models.GPT(len(tok), ctx_len, layers, 4, d)
        start = time.perf_counter()
        bits = _train_and_evaluate(model, train, valid, set(checkpoints), ctx_len, batch, 3e-3,
                                   ctx.seed, eval_chars)
        seconds[d] = time.perf_counter() - start
        n = model.num_parameters(embeddings=False)
        for k in checkpoints:
            rows.append({"d_model": d, "layers": layers, "non_embedding_parameters": n,
                         "training_characters": k * per_step, "compute_flops": 6.0 * n * k * per_step,
                         "valid_bits_per_char": bits[k]})
    N = np.array([r["non_embedding_parameters"] for r in rows], dtype=np.float64)
    D = np.array([r["training_characters"] for r in rows], dtype=np.float64)
    L = np.array([r["valid_bits_per_char"] for r in rows])
    law, rmse = fit_scaling_law(N, D, L)
    e_fit, a_fit, alpha, b_fit, beta = law
    # the corner of the grid that needs the most compute, predicted from the other points
    corner = int(np.argmax(N * D))
    rest = np.arange(len(rows)) != corner
    law_rest, _ = fit_scaling_law(N[rest], D[rest], L[rest])
    predicted = float(scaling_law((law_rest[0], math.log(law_rest[1]), law_rest[2],
                                   math.log(law_rest[3]), law_rest[4]), N[corner], D[corner]))
    corner_error = abs(predicted - L[corner])
    uni = unigram_bits(train, valid, len(tok))
    sizes = sorted(set(N))
    at_most_data = [L[(N == n) & (D == D.max())][0] for n in sizes]
    at_largest = [L[(N == N.max()) & (D == dd)][0] for dd in sorted(set(D))]
    falls_size = sum(b2 < b1 for b1, b2 in zip(at_most_data, at_most_data[1:]))
    falls_data = sum(b2 < b1 for b1, b2 in zip(at_largest, at_largest[1:]))
    exponent = beta / (alpha + beta) if alpha + beta > 0 else float("nan")
    c_top = float((6.0 * N * D).max())
    n_top, l_top = (float(v[0]) for v in compute_optimal(law, [c_top]))

    fig = ctx.figure("scaling", f"Validation bits per character of character-level "
                     f"transformers ({layers} layer{'s' if layers > 1 else ''}, width "
                     f"{widths[0]}–{widths[-1]}) on Alice, on a grid of {len(widths)} sizes × "
                     f"{len(checkpoints)} amounts of training ({D.min():,.0f}–{D.max():,.0f} "
                     f"characters). Dots: measured; lines: the law L(N, D) = E + A/N^α + B/D^β "
                     f"fitted to all {len(rows)} points. Left: against parameters, one colour per "
                     f"amount of data. Middle: against data, one colour per size. Right: "
                     f"against training compute C = 6·N·D, each size's dots joined; dashed: the "
                     f"compute-optimal frontier of the fitted law (the best size for each "
                     f"compute), dotted where its best size or data lie outside the grid.")
    fig.set_size_inches(12, 3.9)
    ax = fig.add_subplot(1, 3, 1)
    grid_n = np.geomspace(N.min() / 1.5, N.max() * 1.5, 60)
    fitted = (e_fit, math.log(a_fit), alpha, math.log(b_fit), beta)
    for i, dd in enumerate(sorted(set(D))):
        sel = D == dd
        color = COLORS[i % len(COLORS)]
        ax.loglog(N[sel], L[sel], "o", color=color, label=f"D = {_thousands(dd)}")
        explained(ax.loglog(grid_n, scaling_law(fitted, grid_n, dd), "-", color=color, lw=0.8),
                  "lines")
    plain_ticks(ax, sizes, fmt=_thousands)
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel("validation bits / character")
    ax.legend(fontsize=7, title="characters seen", title_fontsize=7)
    _bits_axis(ax, L)
    ax = fig.add_subplot(1, 3, 2)
    grid_d = np.geomspace(D.min() / 1.5, D.max() * 1.5, 60)
    for i, n in enumerate(sizes):
        sel = N == n
        color = COLORS[i % len(COLORS)]
        ax.loglog(D[sel], L[sel], "o", color=color, label=f"N = {_thousands(n)}")
        explained(ax.loglog(grid_d, scaling_law(fitted, n, grid_d), "-", color=color, lw=0.8),
                  "lines")
    plain_ticks(ax, sorted(set(D))[::2] if len(set(D)) > 4 else sorted(set(D)), fmt=_thousands)
    ax.set_xlabel("training characters D")
    ax.set_ylabel("validation bits / character")
    ax.legend(fontsize=7, title="parameters", title_fontsize=7)
    _bits_axis(ax, L)
    ax = fig.add_subplot(1, 3, 3)
    C = 6.0 * N * D
    for i, n in enumerate(sizes):
        sel = N == n
        ax.loglog(C[sel], L[sel], "o-", color=COLORS[i % len(COLORS)], ms=4, lw=0.8,
                  label=f"N = {_thousands(n)}")
    grid_c = np.geomspace(C.min(), C.max() * 2, 80)
    n_opt, l_opt = compute_optimal(law, grid_c)
    inside = (n_opt >= N.min()) & (n_opt <= N.max()) & (grid_c / (6 * n_opt) >= D.min()) & \
        (grid_c / (6 * n_opt) <= D.max())
    name = f"frontier: $N^* \\propto C^{{{exponent:.2f}}}$" if math.isfinite(exponent) else "frontier"
    if inside.any():
        ax.loglog(np.where(inside, grid_c, np.nan), l_opt, "--", color="#333333", label=name)
    if not inside.all():
        ax.loglog(np.where(inside, np.nan, grid_c), l_opt, ":", color="#333333",
                  label="beyond the grid" if inside.any() else f"{name}, beyond the grid")
    ax.set_xlabel("training compute C = 6·N·D (FLOPs)")
    ax.set_ylabel("validation bits / character")
    ax.legend(fontsize=7)
    _bits_axis(ax, L)
    ctx.save(fig)

    metrics = {"grid": rows, "train_seconds": {f"d{d}": s for d, s in seconds.items()},
               "fit_E": e_fit, "fit_A": a_fit, "fit_alpha": alpha, "fit_B": b_fit,
               "fit_beta": beta, "fit_rmse_bits": rmse,
               "compute_optimal_parameter_exponent": exponent,
               "compute_optimal_at_largest_budget": {"compute_flops": c_top, "parameters": n_top,
                                                     "characters": c_top / 6 / n_top,
                                                     "predicted_bits": l_top},
               "corner_measured_bits": float(L[corner]), "corner_predicted_bits": predicted,
               "corner_prediction_error_bits": corner_error,
               "unigram_bits_per_char": uni}
    largest = at_most_data[-1]
    checks = [
        Check(f"with the most data ({D.max():,.0f} characters), validation loss falls with "
              f"every increase in size (steps that fall)", falls_size, len(sizes) - 1, ">="),
        Check("the largest model's validation loss falls with every increase in data (steps "
              "that fall)", falls_data, len(at_largest) - 1, ">="),
        ctx.check(f"L(N, D) = E + A/N^α + B/D^β fits the {len(rows)} points: root-mean-square "
                  f"error (bits)", rmse, 0.12, 0.19, "<=",
                  seeds=(seeds(0.067, 0.093, 0.081, 0.011, "threshold: mean + 3 sd"),
                         seeds(0.073, 0.146, 0.108, 0.026, "threshold: mean + 3 sd"))),
        ctx.check("predictable: the grid's most expensive corner (largest model, most data), "
                  "predicted by the law fitted to the other points (|error|, bits)",
                  corner_error, 0.07, 0.16, "<=",
                  seeds=(seeds(0.002, 0.045, 0.018, 0.017, "threshold: mean + 3 sd"),
                         seeds(0.034, 0.096, 0.068, 0.028, "threshold: mean + 3 sd"))),
        ctx.check("the largest model beats the unigram model by a margin (bits/char)", largest,
                  uni - 1.5, uni - 0.95, "<=",
                  seeds=(seeds(2.67, 2.69, 2.68, 0.009, f"threshold: unigram ({uni:.2f}) − 1.5, "
                               f"above mean + 3 sd"),
                         seeds(3.08, 3.38, 3.22, 0.14, f"threshold: unigram ({uni:.2f}) − 0.95, "
                               f"above mean + 3 sd"))),
    ]
    table = ", ".join(f"{n:,.0f} → {b:.2f}" for n, b in zip(sizes, at_most_data))
    summary = (f"{len(widths)} character-level GPTs of one recipe ({layers} transformer "
               f"layer{'s' if layers > 1 else ''}, width {widths[0]} to {widths[-1]}), each "
               f"evaluated after {', '.join(f'{k}' for k in checkpoints)} steps of "
               f"{per_step:,} characters of Alice: {len(rows)} points of model size N × "
               f"training data D. With the most data, validation bits per character fall with "
               f"size (non-embedding parameters → bits): {table}. The law L(N, D) = E + A/N^α + "
               f"B/D^β fitted to the grid has α = {alpha:.2f} (parameters) and β = {beta:.2f} "
               f"(data), E = {e_fit:.2f} bits, and fits with a root-mean-square error of "
               f"{rmse:.3f} bits. Fitted to every point but the most expensive one (N = "
               f"{N[corner]:,.0f}, D = {D[corner]:,.0f}), it predicts that point's loss as "
               f"{predicted:.3f} bits; measured: {L[corner]:.3f}. For a compute budget C = 6·N·D "
               f"the fitted law puts the best model size at N* ∝ C^{exponent:.2f} (and the "
               f"data at D* ∝ C^{1 - exponent:.2f}); for the grid's largest budget "
               f"({c_top:.1e} FLOPs) its best model has N* ≈ {n_top:,.0f} parameters trained on "
               f"D* ≈ {c_top / 6 / n_top:,.0f} characters{_beyond(n_top, c_top / 6 / n_top, N, D)}, "
               f"predicted at {l_top:.2f} bits against "
               f"the {L[corner]:.2f} measured for the grid's largest model: the predictable improvement with "
               f"parameters, data and compute that chapter 1 describes, at toy scale "
               f"({D.max() / len(train):.1f} passes over Alice's {len(train):,} training "
               f"characters at the largest D; a unigram model gets {uni:.2f} bits).")
    return Result(metrics, summary, checks)


def _beyond(n, d, N, D):
    """Words for an allocation outside the measured grid (an extrapolation of the law)."""
    out = [what for what, v, grid in (("parameters", n, N), ("data", d, D))
           if not grid.min() <= v <= grid.max()]
    return f" (its {' and '.join(out)} outside the grid: an extrapolation)" if out else ""


def _thousands(v):
    return f"{v / 1e3:.1f}k" if v < 1e4 else f"{v / 1e3:,.0f}k"


def _bits_axis(ax, values):
    """Plain tick labels on the log-scaled loss axis (a narrow range of values)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    ticks = [t for t in np.arange(0.5, 8.01, 0.5) if lo * 0.9 <= t <= hi * 1.1] or [round(lo, 1)]
    if len(ticks) > 6:
        ticks = ticks[::2]
    plain_ticks(ax, ticks, axis="y", fmt=lambda t: f"{t:.1f}")
