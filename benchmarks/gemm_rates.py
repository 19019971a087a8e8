"""Single-threaded float32 matrix products at the shapes the sequence models run, in
GFLOP/s: NumPy's BLAS (the library wonderland calls) against PyTorch's, each in its own
process, alternating for ``--rounds`` rounds (best of each process's repetitions, median
over rounds).

    python benchmarks/gemm_rates.py [--rounds R] [--markdown]

wonderland's products are NumPy's; when PyTorch's BLAS is faster at a shape, every
workload built on that shape inherits the ratio, whatever the rest of the step does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# (name, m, k, n, b transposed): C (m, n) = A (m, k) · B (k, n)
SHAPES = [
    ("transformer: qkv projection", 4096, 256, 768, False),
    ("transformer: feed-forward up", 4096, 256, 1024, False),
    ("transformer: feed-forward down", 4096, 1024, 256, False),
    ("attention L 256, E 32: q kᵀ block", 64, 32, 256, True),
    ("attention L 256, E 32: p v block", 64, 256, 32, False),
    ("attention L 1024, E 64: q kᵀ block", 128, 64, 1024, True),
    ("attention L 1024, E 64: p v block", 128, 1024, 64, False),
    ("LSTM step: 16 rows × (256, 1024)", 16, 256, 1024, False),
    ("LSTM step: 32 rows × (256, 1024)", 32, 256, 1024, False),
    ("square 1024", 1024, 1024, 1024, False),
]


def _measure(contender, seconds=0.2):
    """GFLOP/s per shape in this process: the best of repetitions filling ``seconds``."""
    import numpy as np

    rng = np.random.default_rng(0)
    if contender == "torch":
        import torch
        torch.set_num_threads(1)
    else:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    rates = []
    for _, m, k, n, bt in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if bt else (k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        if contender == "torch":
            a, b, out = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
            bm = b.T if bt else b

            def product():
                torch.matmul(a, bm, out=out)
        else:
            bm = b.T if bt else b

            def product():
                np.matmul(a, bm, out=out)
        product()
        best, end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - t0)
        rates.append(2 * m * k * n / best / 1e9)
    return rates


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--worker", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_measure(args.worker)))
        return
    samples = {"numpy": [], "torch": []}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for c in samples:
            out = subprocess.run([sys.executable, __file__, "--worker", c], capture_output=True,
                                 text=True, check=True)
            samples[c].append(json.loads(out.stdout.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
        print(f"  round {r + 1}/{args.rounds}", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    from table import print_table
    rows = []
    for i, (name, m, k, n, _) in enumerate(SHAPES):
        med = {c: statistics.median(s[i] for s in v) for c, v in samples.items()}
        rows.append([name, f"({m}, {k}) · ({k}, {n})", f"{med['numpy']:.0f}",
                     f"{med['torch']:.0f}", f"{med['numpy'] / med['torch']:.2f}"])
    print_table(["product", "shape", "NumPy GFLOP/s", "PyTorch GFLOP/s", "NumPy/PyTorch"],
                rows, args.markdown)
    print(f"one thread each; load {min(loads):.1f}–{max(loads):.1f}")


if __name__ == "__main__":
    main()
