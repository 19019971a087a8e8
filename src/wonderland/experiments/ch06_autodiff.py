"""Chapter 6: automatic differentiation — accuracy against finite differences, the cost
of forward and reverse mode, and what checkpointing saves."""

from __future__ import annotations

import time

import numpy as np

import wonderland as wl

from .base import Check, Result
from .plotting import COLORS, plain_ticks


def _f(x):
    return wl.sin(x) * wl.exp(x) / (1.0 + x * x)


def _df_exact(x):
    return (np.cos(x) * np.exp(x) + np.sin(x) * np.exp(x)) / (1 + x * x) - \
        np.sin(x) * np.exp(x) * 2 * x / (1 + x * x) ** 2


def _accuracy(ctx):
    x0 = 0.7
    exact = _df_exact(x0)
    steps = np.logspace(-1, -15, 57)
    fwd_err, ctr_err = [], []
    f = lambda v: _f(wl.tensor(np.float64(v))).item()  # noqa: E731
    for h in steps:
        fwd_err.append(abs((f(x0 + h) - f(x0)) / h - exact))
        ctr_err.append(abs((f(x0 + h) - f(x0 - h)) / (2 * h) - exact))
    ad = wl.grad(_f)(wl.tensor(np.float64(x0))).item()
    return steps, np.array(fwd_err), np.array(ctr_err), abs(ad - exact)


def _applications(fn):
    """Primitive applications (and VJP rule runs) ``fn`` makes, counted by the profiler:
    the work of a pass, whatever the machine's load."""
    with wl.profile() as prof:
        fn()
    return sum(calls for calls, _ in prof.totals.values())


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _forward_passes(f, x):
    """The Jacobian column by column: one JVP per input (forward mode's cost model)."""
    basis = np.eye(x.size)
    return [wl.jvp(f, (x,), (wl.tensor(e.reshape(x.shape)),))[1] for e in basis]


def _reverse_passes(f, x):
    """The Jacobian row by row: one forward pass, then one VJP per output element."""
    out, pullback = wl.vjp(f, x)
    basis = np.eye(out.size)
    return [pullback(wl.tensor(e.reshape(out.shape)))[0] for e in basis]


def _cost(ctx):
    """Each way of building the Jacobian, twice: its primitive applications counted (the
    claims), and its median time (reported)."""
    sizes = ctx.pick([2, 4, 8, 16, 32, 64], [2, 8, 32])
    repeats = ctx.pick(5, 3)
    rng = np.random.default_rng(ctx.seed)
    ways = ("fwd", "rev", "jacfwd", "jacrev")
    many_in = {w: [] for w in ways}
    many_out = {w: [] for w in ways}
    counts_in = {w: [] for w in ways}
    counts_out = {w: [] for w in ways}
    for n in sizes:
        w = wl.tensor(rng.standard_normal((n, n)) / np.sqrt(n))
        x = wl.tensor(rng.standard_normal(n))
        scalar_out = lambda v: wl.tanh(w @ wl.tanh(w @ v)).sum()  # noqa: E731  R^n -> R
        c = wl.tensor(rng.standard_normal(n))
        scalar_in = lambda s: wl.tanh(w @ wl.tanh(c * s))  # noqa: E731          R -> R^n
        s0 = wl.tensor(np.float64(0.3))
        for data, counts, f, arg in [(many_in, counts_in, scalar_out, x),
                                     (many_out, counts_out, scalar_in, s0)]:
            build = {"fwd": lambda: _forward_passes(f, arg), "rev": lambda: _reverse_passes(f, arg),
                     "jacfwd": lambda: wl.jacfwd(f)(arg), "jacrev": lambda: wl.jacrev(f)(arg)}
            for way in ways:
                counts[way].append(_applications(build[way]))
                data[way].append(_median_time(build[way], repeats))
    return sizes, many_in, many_out, counts_in, counts_out


BLOCKS, LAYERS = 16, 4


def _checkpoint_memory(ctx):
    """Saved bytes and counted primitive applications of 16 blocks of 4 tanh layers, plain
    and with every block checkpointed (only its input kept; its inside recomputed during
    the backward pass)."""
    rng = np.random.default_rng(ctx.seed)
    ws = [wl.tensor(rng.standard_normal((64, 64)) / 8, requires_grad=True) for _ in range(BLOCKS)]
    x = wl.tensor(rng.standard_normal((256, 64)))

    def block(h, w):
        for _ in range(LAYERS):
            h = wl.tanh(h @ w)
        return h

    def net(ckpt):
        h = x
        fn = wl.checkpoint(block) if ckpt else block
        for w in ws:
            h = fn(h, w)
        return (h * h).sum()

    plain = wl.autograd.saved_bytes(net(False))
    ckpt = wl.autograd.saved_bytes(net(True))
    g_plain = wl.autograd.grad(net(False), ws)
    g_ckpt = wl.autograd.grad(net(True), ws)
    same = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(g_plain, g_ckpt))
    forward = _applications(lambda: net(False))
    extra = _applications(lambda: wl.autograd.grad(net(True), ws)) - \
        _applications(lambda: wl.autograd.grad(net(False), ws))
    return plain, ckpt, same, extra / forward


def run(ctx) -> Result:
    ctx.status("finite differences against autodiff")
    steps, fwd_err, ctr_err, ad_err = _accuracy(ctx)
    ctx.status("cost of forward and reverse mode")
    sizes, many_in, many_out, counts_in, counts_out = _cost(ctx)
    ctx.status("checkpointing")
    plain_bytes, ckpt_bytes, ckpt_diff, recompute = _checkpoint_memory(ctx)

    fig = ctx.figure("accuracy", "Error of the derivative of sin(x)·eˣ/(1+x²) at x = 0.7: "
                     "finite differences trade truncation for round-off as the step shrinks; "
                     "autodiff is exact to machine precision.")
    ax = fig.add_subplot(111)
    ax.loglog(steps, np.maximum(fwd_err, 1e-17), "-", color=COLORS[0], label="forward difference")
    ax.loglog(steps, np.maximum(ctr_err, 1e-17), "-", color=COLORS[1], label="central difference")
    ax.axhline(max(ad_err, 1e-17), color=COLORS[2], ls="--", label="autodiff (reverse mode)")
    ax.set_xlabel("step h")
    ax.set_ylabel("absolute error")
    ax.invert_xaxis()
    ax.legend()
    ctx.save(fig)

    fig = ctx.figure("cost", "Building a full Jacobian. Top: primitive applications counted "
                     "by the profiler; bottom: time (median of repeats). Left: f: ℝⁿ→ℝ, reverse "
                     "mode needs one pass, forward mode n. Right: f: ℝ→ℝⁿ, the roles swap. "
                     "Dashed: the same passes vectorised into one by vmap (jacfwd, jacrev), "
                     "which hides the count of passes but not their work.")
    fig.set_size_inches(9, 6.4)
    axes = fig.subplots(2, 2)
    panels = [(axes[0, 0], counts_in, "n inputs, 1 output", "primitive applications"),
              (axes[0, 1], counts_out, "1 input, n outputs", "primitive applications"),
              (axes[1, 0], many_in, "n inputs, 1 output", "seconds"),
              (axes[1, 1], many_out, "1 input, n outputs", "seconds")]
    for ax, data, title, ylabel in panels:
        ax.loglog(sizes, data["fwd"], "-o", color=COLORS[0], label="forward: one JVP per input")
        ax.loglog(sizes, data["rev"], "-o", color=COLORS[1], label="reverse: one VJP per output")
        ax.loglog(sizes, data["jacfwd"], "--", color=COLORS[0], label="jacfwd (vmapped)")
        ax.loglog(sizes, data["jacrev"], "--", color=COLORS[1], label="jacrev (vmapped)")
        ax.set_xscale("log", base=2)
        plain_ticks(ax, sizes)
        ax.set_xlabel("n")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
    ctx.save(fig)

    best_ctr = float(np.min(ctr_err))
    n = sizes[-1]
    count_in = counts_in["fwd"][-1] / counts_in["rev"][-1]
    count_out = counts_out["rev"][-1] / counts_out["fwd"][-1]
    time_in = many_in["fwd"][-1] / many_in["rev"][-1]
    time_out = many_out["rev"][-1] / many_out["fwd"][-1]
    metrics = {"autodiff_abs_error": ad_err, "best_central_difference_error": best_ctr,
               "best_forward_difference_error": float(np.min(fwd_err)),
               "jacobian_sizes": list(sizes),
               "primitive_applications_n_inputs": counts_in,
               "primitive_applications_n_outputs": counts_out,
               f"forward_over_reverse_applications_n{n}_inputs": count_in,
               f"reverse_over_forward_applications_n{n}_outputs": count_out,
               f"jacfwd_over_jacrev_time_n{n}_inputs": time_in,
               f"jacrev_over_jacfwd_time_n{n}_outputs": time_out,
               f"vmapped_jacfwd_over_jacrev_time_n{n}_inputs":
                   many_in["jacfwd"][-1] / many_in["jacrev"][-1],
               f"vmapped_jacrev_over_jacfwd_time_n{n}_outputs":
                   many_out["jacrev"][-1] / many_out["jacfwd"][-1],
               "saved_bytes_plain": plain_bytes, "saved_bytes_checkpoint": ckpt_bytes,
               "checkpoint_grad_max_diff": ckpt_diff,
               "checkpoint_extra_applications_over_forward": recompute}
    # one pass per input (forward) or per output (reverse): the count ratio grows like n;
    # n/4 leaves room for the one-off forward pass and the rules' own sizes
    checks = [Check("autodiff derivative error", ad_err, 1e-13, "<="),
              Check("best central difference is worse than autodiff", best_ctr, ad_err, ">"),
              Check(f"ℝ^{n}→ℝ: forward mode applies more primitives than reverse mode "
                    f"(ratio of counted applications, at least n/4)", count_in, n / 4, ">="),
              Check(f"ℝ→ℝ^{n}: reverse mode applies more primitives than forward mode "
                    f"(ratio of counted applications, at least n/4)", count_out, n / 4, ">="),
              # each block keeps its input instead of its 4 layers' activations: about 1/4
              Check(f"checkpointing {BLOCKS} blocks of {LAYERS} layers keeps less than half the "
                    f"memory for the backward pass (fraction of plain)",
                    ckpt_bytes / plain_bytes, 0.5, "<"),
              Check("checkpointing pays with one more forward pass: extra primitive applications "
                    "of its backward over those of a forward pass (at most 1.25)", recompute,
                    1.25, "<="),
              Check("... and at least 0.9 of a forward pass (the blocks are recomputed, not "
                    "skipped)", recompute, 0.9, ">="),
              Check("checkpointed gradients equal plain ones", ckpt_diff, 1e-12, "<=")]
    summary = (f"Autodiff gives the derivative to {ad_err:.1e}; the best central difference only "
               f"reaches {best_ctr:.1e} (at a step near 1e-5), and the best one-sided difference "
               f"{np.min(fwd_err):.1e}: shrinking the step further lets round-off win. Building a "
               f"Jacobian of f: ℝ^{n}→ℝ pass by pass, forward mode (one JVP per input) applies "
               f"{counts_in['fwd'][-1]:,} primitives against reverse mode's {counts_in['rev'][-1]:,} "
               f"(one VJP), {count_in:.0f}× as many, and took {time_in:.0f}× as long here; for "
               f"f: ℝ→ℝ^{n} reverse mode applies {count_out:.0f}× as many as forward mode "
               f"({counts_out['rev'][-1]:,} against {counts_out['fwd'][-1]:,}) and took "
               f"{time_out:.0f}× as long. Vectorising the passes "
               f"with vmap (jacfwd, jacrev) runs them as one batched pass, which on problems "
               f"this small hides their number (the work is still there). "
               f"Checkpointing each of {BLOCKS} blocks of {LAYERS} tanh layers cuts the memory held "
               f"for the backward pass from {plain_bytes / 1e6:.1f} MB to "
               f"{ckpt_bytes / 1e6:.1f} MB, with identical gradients, at the price of "
               f"recomputing the blocks: its backward pass applies {recompute:.2f} forward "
               f"passes' worth of primitives more than the plain one.")
    return Result(metrics, summary, checks)
