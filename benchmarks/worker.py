"""Time one workload for one contender in this process and print JSON: the median
step time, and the mean wall and CPU time (all threads of the process) per step.

    python benchmarks/worker.py WORKLOAD CONTENDER [--iters N] [--warmup N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workloads import WORKLOADS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("contender")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    build, contenders = WORKLOADS[args.workload]
    if args.contender not in contenders:
        ap.error(f"workload {args.workload} has contenders {contenders}")
    step = build(args.contender)
    for _ in range(args.warmup):
        step()
    times = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    times.sort()
    print(json.dumps({"workload": args.workload, "contender": args.contender,
                      "median_s": times[len(times) // 2], "min_s": times[0],
                      "mean_wall_s": wall / args.iters, "mean_cpu_s": cpu / args.iters,
                      "iters": args.iters}))


if __name__ == "__main__":
    main()
