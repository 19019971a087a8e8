"""Run benchmarks side by side and print ratios.

    python benchmarks/run.py [WORKLOAD ...] [--rounds R] [--iters N] [--markdown]
                             [--baseline CHECKOUT]

Every (workload, contender) pair runs in its own process, so that NumPy's and
PyTorch's thread pools never compete inside one process; contenders alternate
(A B C A B C ...) for ``--rounds`` rounds and each figure is the median over rounds of
the per-process median step time. Ratios are wonderland's time over the others'
(below 1.00 means wonderland is faster). ``--baseline CHECKOUT`` adds a column for the
wonderland of another checkout (its ``src`` put first on ``PYTHONPATH``), timed in the
same alternation, so a change can be measured before and after in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from table import print_table  # noqa: E402
from workloads import WORKLOADS  # noqa: E402

DEFAULT = ["op_add", "op_multiply", "op_matmul", "mlp_step", "digits_mlp_epoch", "adam_mlp_params",
           "adam_many_small", "conv2d", "cnn_step"]


def _have(module) -> bool:
    try:
        import importlib.util
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _have_torch() -> bool:
    return _have("torch")


def run_pair(workload, contender, iters, baseline=None, warmup=20):
    env = None
    if contender == "base":
        env = dict(os.environ, PYTHONPATH=os.path.join(baseline, "src"))
        contender = "wonderland"
    out = subprocess.run([sys.executable, os.path.join(HERE, "worker.py"), workload,
                          contender, "--iters", str(iters), "--warmup", str(warmup)],
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"run.py: {workload} for {contender} failed (exit {out.returncode}):\n"
                         f"{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=DEFAULT,
                    help=f"workloads to run (default: {' '.join(DEFAULT)}; available: "
                         f"{', '.join(sorted(WORKLOADS))})")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    ap.add_argument("--iters", type=int, default=200, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps per process first")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--contenders", metavar="NAMES",
                    help="comma-separated contenders to time (default: every one the "
                         "workload has; 'base' is the --baseline checkout)")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="also time the wonderland of another checkout (column 'base')")
    args = ap.parse_args(argv)
    if args.baseline and not os.path.isdir(os.path.join(args.baseline, "src", "wonderland")):
        ap.error(f"--baseline: {args.baseline} has no src/wonderland")
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; available: {sorted(WORKLOADS)}")
    torch_ok, jax_ok = _have_torch(), _have("jax")
    rows = []
    for w in args.workloads:
        contenders = [c for c in WORKLOADS[w][1]
                      if not (c.startswith("torch") or c == "pyg") or torch_ok]
        contenders = [c for c in contenders if c != "jax" or jax_ok]
        if args.baseline and "wonderland" in contenders:
            contenders.insert(1, "base")
        if args.contenders:
            chosen = set(args.contenders.split(","))
            contenders = [c for c in contenders if c in chosen]
        samples = {c: [] for c in contenders}
        for r in range(args.rounds):
            for c in contenders:
                samples[c].append(run_pair(w, c, args.iters, args.baseline, args.warmup))
            print(f"  {w}: round {r + 1}/{args.rounds}", file=sys.stderr, end="\r")
        med = {c: statistics.median(v) for c, v in samples.items()}
        rows.append((w, med))
        # each workload's medians as soon as they are known: a run cut short keeps them
        print(f"  {w}: " + ", ".join(f"{c} {t * 1e3:.3f} ms" for c, t in med.items()),
              file=sys.stderr)
    print(file=sys.stderr)
    others = [c for c in ("base", "pyg", "torch", "torch_channels_last", "torch_loop",
                          "torch_cumsum", "jax", "numpy")
              if any(c in med for _, med in rows)]
    short = {"base": "base", "pyg": "PyG", "torch": "torch", "torch_channels_last": "torch CL",
             "torch_loop": "torch loop", "torch_cumsum": "torch cumsum", "jax": "JAX jit",
             "numpy": "numpy"}
    header = ["workload", "wonderland"] + [short[c] for c in others] + \
             [f"wl/{short[c]}" for c in others]
    lines = []
    for w, med in rows:
        def ms(c):
            return f"{med[c] * 1e3:.3f} ms" if c in med else "-"

        def ratio(c):
            return f"{med['wonderland'] / med[c]:.2f}" if c in med else "-"
        lines.append([w, ms("wonderland")] + [ms(c) for c in others] + [ratio(c) for c in others])
    print_table(header, lines, args.markdown)
    if not torch_ok:
        print("(torch is not installed: its column is empty)")


if __name__ == "__main__":
    main()
