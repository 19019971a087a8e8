"""How much a competing process slows a training step down.

    python benchmarks/contention.py [WORKLOAD] [--competitors 1 2] [--rounds R]
                                    [--iters N] [--config NAME ...] [--markdown]

For each configuration the workload (default ``cnn_step``: one Adam step of a small CNN)
runs in its own process (``worker.py``), first alone and then next to ``k`` busy
processes (each a pure-Python ``while True: pass`` loop), alternating for ``--rounds``
rounds. Reported per case: the median over rounds of the mean wall time per step, the
CPU time per step (all threads of the worker) and the slowdown ratio against running
alone. On ``c`` cores a process that shares them fairly with ``k`` competitors should
slow down by about ``(k + threads) / c`` at most (≈ 1.5–2× with one competitor on two
cores); spinning waits make it many times worse.

Configurations (environment given to the worker):

* ``default``: wonderland's policy (one pool, BLAS at one thread);
* ``blas-all-cores``: BLAS may use every core outside the pool, idle BLAS threads sleep
  at once (``WONDERLAND_BLAS_THREADS=<cores>``, ``OPENBLAS_THREAD_TIMEOUT=4``);
* ``blas-spinning``: as before the single pool existed — BLAS on every core and
  OpenBLAS's default spin time (``WONDERLAND_BLAS_THREADS=<cores>``,
  ``OPENBLAS_THREAD_TIMEOUT`` unset);
* ``one-thread``: everything on one thread (``WONDERLAND_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from table import print_table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BUSY = "while True:\n    pass\n"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def config_env(name: str) -> dict:
    """The environment of the worker for one named configuration."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                        "WONDERLAND_NUM_THREADS", "WONDERLAND_BLAS_THREADS")}
    n = str(cores())
    extra = {"default": {},
             "blas-all-cores": {"WONDERLAND_BLAS_THREADS": n, "OPENBLAS_THREAD_TIMEOUT": "4"},
             "blas-spinning": {"WONDERLAND_BLAS_THREADS": n},
             "one-thread": {"WONDERLAND_NUM_THREADS": "1"}}
    if name not in extra:
        raise SystemExit(f"contention.py: unknown configuration {name!r}; known: {sorted(extra)}")
    env.update(extra[name])
    return env


def run_worker(workload, iters, env) -> dict:
    out = subprocess.run([sys.executable, os.path.join(HERE, "worker.py"), workload, "wonderland",
                          "--iters", str(iters), "--warmup", "3"],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def with_competitors(k, fn):
    """Run ``fn()`` while ``k`` busy-loop processes compete for the cores."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(k)]
    try:
        time.sleep(0.3)                      # let them start spinning
        return fn()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def measure(workload, config, competitors, rounds, iters):
    """``{k: (wall, cpu)}`` medians over rounds, k = 0 (alone) and each competitor count."""
    env = config_env(config)
    samples = {k: [] for k in [0, *competitors]}
    for r in range(rounds):
        for k in samples:
            res = with_competitors(k, lambda: run_worker(workload, iters, env))
            samples[k].append((res["mean_wall_s"], res["mean_cpu_s"]))
        print(f"  {config}: round {r + 1}/{rounds} done", file=sys.stderr)
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for k, v in samples.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", nargs="?", default="cnn_step")
    ap.add_argument("--competitors", type=int, nargs="+", default=[1],
                    help="numbers of busy processes to run beside it (default: 1)")
    ap.add_argument("--config", nargs="+", default=["default", "blas-spinning"],
                    help="configurations to compare (default: default blas-spinning)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20, help="timed steps per process")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    print(f"{cores()} cores available; load average before the run "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; workload {args.workload}, "
          f"{args.iters} steps per process, median of {args.rounds} rounds", flush=True)
    header = ["configuration", "competitors", "wall / step", "CPU / step", "slowdown"]
    lines = []
    for config in args.config:
        res = measure(args.workload, config, args.competitors, args.rounds, args.iters)
        alone = res[0][0]
        for k, (wall, cpu) in res.items():
            lines.append([config, str(k), f"{wall * 1e3:.1f} ms", f"{cpu * 1e3:.1f} ms",
                          f"{wall / alone:.2f}×"])
    print_table(header, lines, args.markdown)


if __name__ == "__main__":
    main()
