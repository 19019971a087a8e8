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

Every contender's process gets the same allocator settings (``--malloc``): wonderland's
own thresholds, given to the others as ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_``, or glibc's defaults for all. Each figure comes with the
fastest and slowest process in parentheses, and each row with the 1-minute load average
seen while it ran.
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


# wonderland raises glibc's allocator thresholds at import (backend/memory.py); the same
# settings as environment variables put every contender's process in the same state
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(512 << 20)}


def contender_env(contender, baseline=None, malloc="same"):
    """The environment of one contender's process: the same allocator settings for all
    (``malloc="same"``) or glibc's defaults for all (``"none"``, wonderland's own tuning
    switched off too)."""
    env = dict(os.environ)
    for key in MALLOC_ENV:
        env.pop(key, None)
    if malloc == "same":
        env.update(MALLOC_ENV)
    else:
        env["WONDERLAND_MALLOC_TUNING"] = "0"
    if contender == "base":
        env["PYTHONPATH"] = os.path.join(baseline, "src")
    return env


def run_pair(workload, contender, iters, baseline=None, warmup=20, malloc="same"):
    env = contender_env(contender, baseline, malloc)
    if contender == "base":
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
    ap.add_argument("--malloc", choices=("same", "none"), default="same",
                    help="allocator settings of every contender's process: wonderland's "
                         "thresholds for all (default) or glibc's defaults for all")
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
        loads = [os.getloadavg()[0]]
        for r in range(args.rounds):
            for c in contenders:
                samples[c].append(run_pair(w, c, args.iters, args.baseline, args.warmup,
                                           args.malloc))
                loads.append(os.getloadavg()[0])
            print(f"  {w}: round {r + 1}/{args.rounds}", file=sys.stderr, end="\r")
        med = {c: statistics.median(v) for c, v in samples.items()}
        spread = {c: (min(v), max(v)) for c, v in samples.items()}
        rows.append((w, med, spread, (min(loads), max(loads))))
        # each workload's medians as soon as they are known: a run cut short keeps them
        print(f"  {w}: " + ", ".join(f"{c} {t * 1e3:.3f} ms ({spread[c][0] * 1e3:.3f}–"
                                     f"{spread[c][1] * 1e3:.3f})" for c, t in med.items())
              + f"; load {min(loads):.1f}–{max(loads):.1f}", file=sys.stderr)
    print(file=sys.stderr)
    others = [c for c in ("base", "pyg", "torch", "torch_channels_last", "torch_loop",
                          "torch_cumsum", "jax", "numpy")
              if any(c in row[1] for row in rows)]
    short = {"base": "base", "pyg": "PyG", "torch": "torch", "torch_channels_last": "torch CL",
             "torch_loop": "torch loop", "torch_cumsum": "torch cumsum", "jax": "JAX jit",
             "numpy": "numpy"}
    header = ["workload", "wonderland"] + [short[c] for c in others] + \
             [f"wl/{short[c]}" for c in others] + ["load"]
    lines = []
    for w, med, spread, load in rows:
        def ms(c):
            if c not in med:
                return "-"
            lo, hi = spread[c]
            return f"{med[c] * 1e3:.3f} ms ({lo * 1e3:.4g}–{hi * 1e3:.4g})"

        def ratio(c):
            return f"{med['wonderland'] / med[c]:.2f}" if c in med and "wonderland" in med else "-"
        lines.append([w, ms("wonderland")] + [ms(c) for c in others] + [ratio(c) for c in others]
                     + [f"{load[0]:.1f}–{load[1]:.1f}"])
    print_table(header, lines, args.markdown)
    if not torch_ok:
        print("(torch is not installed: its column is empty)")


if __name__ == "__main__":
    main()
