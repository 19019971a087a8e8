"""Time per element of the elementwise transcendental functions, and their errors.

    python benchmarks/transcendentals.py [--rounds R] [--n N] [--markdown]
    python benchmarks/transcendentals.py --errors

Each (function, contender) pair runs in its own process (``--one``), contenders
alternating wonderland, NumPy/SciPy, PyTorch for ``--rounds`` rounds; a figure is the
median over rounds of each process's median time, divided by the number of elements (a
float32 array of N(0, 9) draws, default 16 × 256 × 1,024 elements: the MLP activations of
the transformer workloads). ``fwd+bwd`` rows time the function and its gradient against a
given cotangent (NumPy/SciPy: the slope by hand). ``--errors`` prints the largest errors of
the float32 kernels against SciPy in float64 over every 1,024th float32 bit pattern, a dense
grid over [-12, 12] and N(0, 9) draws.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

FUNCS = ["erf", "gelu", "gelu fwd+bwd", "gelu_tanh", "gelu_tanh fwd+bwd", "sigmoid", "sigmoid fwd+bwd", "tanh", "tanh fwd+bwd",
         "silu", "silu fwd+bwd", "softplus", "softplus fwd+bwd", "exp", "softmax (rows of 1,024)"]
CONTENDERS = ["wonderland", "numpy", "torch"]


def _wonderland(name, x0, g0):
    import wonderland as wl
    F = wl.nn.functional
    fn = {"erf": wl.erf, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
          "sigmoid": wl.sigmoid, "tanh": wl.tanh, "silu": F.silu,
          "softplus": F.softplus, "exp": wl.exp,
          "softmax": lambda t: F.softmax(t, -1)}[name.split(" ")[0]]
    backward = name.endswith("fwd+bwd")
    x, g = wl.tensor(x0, requires_grad=backward), wl.tensor(g0)
    if not backward:
        return lambda: fn(x)

    def step():
        fn(x).backward(g)
        x.grad = None
    return step


def _numpy(name, x, g):
    from scipy import special as sp
    half, root = np.float32(0.5), np.float32(1 / np.sqrt(2))
    density = np.float32(1 / np.sqrt(2 * np.pi))

    def gelu_both():
        phi = half * (1 + sp.erf(x * root))
        return x * phi, g * (phi + x * density * np.exp(half * -(x * x)))

    c, a = np.float32(np.sqrt(2 / np.pi)), np.float32(0.044715)

    def gelu_tanh():
        return half * x * (1 + np.tanh(c * (x + a * x * x * x)))

    def gelu_tanh_both():
        t = np.tanh(c * (x + a * x * x * x))
        slope = half * (1 + t) + half * x * (1 - t * t) * c * (1 + 3 * a * x * x)
        return half * x * (1 + t), g * slope

    def sig_both():
        s = sp.expit(x)
        return s, g * (s * (1 - s))

    def tanh_both():
        t = np.tanh(x)
        return t, g * (1 - t * t)

    def silu_both():
        s = sp.expit(x)
        return x * s, g * (s * (1 + x * (1 - s)))

    def softplus_both():
        return np.logaddexp(np.float32(0), x), g * sp.expit(x)

    def softmax():
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return {"erf": lambda: sp.erf(x), "gelu": lambda: x * (half * (1 + sp.erf(x * root))),
            "gelu fwd+bwd": gelu_both, "gelu_tanh": gelu_tanh,
            "gelu_tanh fwd+bwd": gelu_tanh_both, "sigmoid": lambda: sp.expit(x), "sigmoid fwd+bwd": sig_both,
            "tanh": lambda: np.tanh(x), "tanh fwd+bwd": tanh_both,
            "silu": lambda: x * sp.expit(x), "silu fwd+bwd": silu_both,
            "softplus": lambda: np.logaddexp(np.float32(0), x), "softplus fwd+bwd": softplus_both,
            "exp": lambda: np.exp(x), "softmax (rows of 1,024)": softmax}[name]


def _torch(name, x0, g0):
    import torch
    fn = {"erf": torch.erf, "gelu": torch.nn.functional.gelu,
          "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
          "sigmoid": torch.sigmoid,
          "tanh": torch.tanh, "silu": torch.nn.functional.silu,
          "softplus": torch.nn.functional.softplus, "exp": torch.exp,
          "softmax": lambda t: torch.softmax(t, -1)}[name.split(" ")[0]]
    backward = name.endswith("fwd+bwd")
    x, g = torch.tensor(x0, requires_grad=backward), torch.tensor(g0)
    if not backward:
        return lambda: fn(x)

    def step():
        fn(x).backward(g)
        x.grad = None
    return step


def one(name, contender, n, iters):
    """Time ``name`` for ``contender`` in this process; the median seconds per element."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 3).astype(np.float32).reshape(-1, 1024)
    g = rng.standard_normal(x.shape).astype(np.float32)
    step = {"wonderland": _wonderland, "numpy": _numpy, "torch": _torch}[contender](name, x, g)
    for _ in range(3):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / x.size


def _gelu_tanh_slope(x):
    """The tanh form's slope in float64: σ(2u) + 2x σ(2u) σ(−2u) u'."""
    from scipy import special as sp
    c = np.sqrt(2 / np.pi)
    u2 = 2 * c * (x + 0.044715 * x ** 3)
    return sp.expit(u2) + 2 * x * sp.expit(u2) * sp.expit(-u2) * c * (1 + 3 * 0.044715 * x * x)


def errors():
    """The largest errors of the float32 kernels against SciPy in float64."""
    from scipy import special as sp

    from wonderland.ops.kernels import special
    allf = np.arange(0, 1 << 32, 1 << 10, dtype=np.uint64).astype(np.uint32).view(np.float32)
    rng = np.random.default_rng(1)
    x = np.concatenate([allf[np.isfinite(allf)], np.linspace(-12, 12, 1000001, dtype=np.float32),
                        (rng.standard_normal(1000000) * 3).astype(np.float32)])
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        s = sp.expit(x64)
        exact = {"erf": sp.erf(x64), "gelu": 0.5 * x64 * sp.erfc(-x64 / np.sqrt(2)),
                 "gelu'": 0.5 * sp.erfc(-x64 / np.sqrt(2)) + x64 * np.exp(-0.5 * x64 * x64)
                 / np.sqrt(2 * np.pi),
                 "gelu_tanh": x64 * sp.expit(2 * np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)),
                 "gelu_tanh'": _gelu_tanh_slope(x64),
                 "sigmoid": s, "silu": x64 * s, "silu'": s * (1 + x64 * sp.expit(-x64)),
                 "softplus": np.logaddexp(0, x64)}
    ones = np.ones_like(x)
    got = {"erf": special.erf(x), "gelu": special.gelu(x), "gelu'": special.gelu_vjp(ones, x),
           "gelu_tanh": special.gelu(x, True), "gelu_tanh'": special.gelu_vjp(ones, x, True),
           "sigmoid": special.sigmoid(x), "silu": special.silu(x),
           "silu'": special.silu_vjp(ones, x), "softplus": special.softplus(x)}
    normal = np.finfo(np.float32).tiny
    gauss = slice(x.size - 1000000, None)
    print("| function | max abs error | where | max rel. error | max abs error, N(0, 9) inputs |")
    print("|---|---|---|---|---|")
    for k, want in exact.items():
        err = np.abs(got[k].astype(np.float64) - want)
        ok = np.isfinite(want)
        i = np.argmax(np.where(ok, err, -1))
        big = ok & (np.abs(want) >= normal) & ~((k in ("gelu", "gelu'", "gelu_tanh'", "silu'")) & (x64 < 0))
        big &= ~((k == "silu") & (x64 < -80))     # σ(x) itself subnormal there
        rel = (err[big] / np.abs(want[big])).max()
        print(f"| {k} | {err[ok].max():.2e} | x = {x[i]:.4g} | {rel:.2e} | {err[gauss].max():.2e} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--n", type=int, default=16 * 256 * 1024)
    ap.add_argument("--functions", help="comma-separated names (default: all)")
    ap.add_argument("--errors", action="store_true", help="print the error table and stop")
    ap.add_argument("--one", nargs=2, metavar=("FUNCTION", "CONTENDER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.errors:
        errors()
        return
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.n, args.iters)))
        return
    names = args.functions.split(",") if args.functions else FUNCS
    samples = {(f, c): [] for f in names for c in CONTENDERS}
    for r in range(args.rounds):
        for f in names:
            for c in CONTENDERS:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", f, c,
                                      "--n", str(args.n), "--iters", str(args.iters)],
                                     capture_output=True, text=True, check=True)
                samples[f, c].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    print("| function | wonderland | NumPy/SciPy | torch | wl/NumPy | wl/torch |")
    print("|---|---|---|---|---|---|")
    for f in names:
        med = {c: statistics.median(samples[f, c]) * 1e9 for c in CONTENDERS}
        print(f"| {f} | {med['wonderland']:.2f} ns | {med['numpy']:.2f} ns | "
              f"{med['torch']:.2f} ns | {med['wonderland'] / med['numpy']:.2f} | "
              f"{med['wonderland'] / med['torch']:.2f} |")


if __name__ == "__main__":
    main()
