"""Data-parallel scaling on this machine: 1 rank against 2 ranks, and the all-reduce cost.

::

    python benchmarks/scaling.py                      # CNN and transformer, 3 rounds
    python benchmarks/scaling.py --rounds 5 --steps 30 --markdown

For each model the driver launches, alternately (A B C A B C ...), in fresh processes
with one thread per rank (``WONDERLAND_NUM_THREADS=1``, BLAS on one thread):

* ``1 rank``   — ``mpiexec -n 1``: one training step on a batch of B per rank;
* ``2 ranks``  — ``mpiexec -n 2`` with ``DistributedDataParallel``: each rank a batch of B
  (global 2B), gradients averaged every step;
* ``2 local``  — ``mpiexec -n 2`` with each rank training its own model and no
  communication: the compute under the same contention (two processes on two cores);
* ``allreduce`` — inside the 2-rank job, a blocking all-reduce of the model's gradient
  size (float32) on its own.

Weak-scaling efficiency is ``t(1 rank) / t(2 ranks)`` (each rank has the same work, so 1.00
is perfect); the all-reduce overhead per step is ``t(2 ranks) - t(2 local)``. Each figure
is the median over rounds of each process's median step time. The machine's load average
is recorded before and after every run and printed with the results: on a shared machine
the numbers are only as good as that load.
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


# ----------------------------------------------------------------------------- worker
def _models():
    import wonderland as wl
    from wonderland import nn

    class Block(nn.Module):
        """A pre-norm transformer block: multi-head self-attention and a GELU MLP."""

        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, d = x.shape
            h = self.heads
            q, k, v = wl.split(self.qkv(self.norm1(x)), 3, axis=-1)
            q, k, v = (z.reshape(b, t, h, d // h).transpose(0, 2, 1, 3) for z in (q, k, v))
            att = wl.softmax(wl.matmul(q, k.transpose(0, 1, 3, 2)) * (1.0 / (d // h) ** 0.5),
                             axis=-1)
            y = wl.matmul(att, v).transpose(0, 2, 1, 3).reshape(b, t, d)
            x = x + self.proj(y)
            return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))

    class Transformer(nn.Module):
        def __init__(self, d=128, heads=4, depth=2, classes=10):
            super().__init__()
            self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(depth)])
            self.head = nn.Linear(d, classes)

        def forward(self, x):
            return self.head(self.blocks(x).mean(axis=1))

    def cnn():
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(7 * 7 * 64, 10))

    return {
        "cnn": (cnn, lambda g, b: g.normal((b, 28, 28, 1)), 32,
                "CNN 28×28×1 → conv 32 → pool → conv 64 → pool → linear 10"),
        "transformer": (Transformer, lambda g, b: g.normal((b, 64, 128)), 16,
                        "2 pre-norm blocks, d 128, 4 heads, sequence 64"),
    }


def worker(args):
    import numpy as np

    import wonderland as wl
    from wonderland import distributed as dist
    from wonderland import nn

    rank, world = dist.init()
    build, make_x, batch, _ = _models()[args.model]
    wl.random.seed(0)
    model = build()
    if args.mode == "ddp":
        model = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    opt = wl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = wl.random.Generator(rank + 1)
    xs = [make_x(g, batch) for _ in range(4)]
    ys = [g.randint(0, 10, (batch,)) for _ in range(4)]

    def step(i):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs[i % 4]), ys[i % 4]).backward()
        opt.step()

    for i in range(args.warmup):
        step(i)
    times = []
    dist.barrier()
    for i in range(args.steps):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    result = {"step_ms": 1e3 * statistics.median(times), "world": world, "mode": args.mode,
              "params": sum(p.size for p in model.parameters())}
    if world > 1 and args.mode == "ddp":
        buf = np.ones(result["params"], dtype=np.float32)
        ar = []
        for _ in range(max(10, args.steps)):
            dist.barrier()
            t0 = time.perf_counter()
            dist.iall_reduce(buf, "sum", check=False).wait()     # the bare reduction
            ar.append(time.perf_counter() - t0)
        result["allreduce_ms"] = 1e3 * statistics.median(ar)
    # every rank's median; the slowest sets the pace
    rows = dist.all_gather_object(result)
    if rank == 0:
        print("RESULT " + json.dumps({"step_ms": max(r["step_ms"] for r in rows),
                                      "allreduce_ms": rows[0].get("allreduce_ms"),
                                      "params": rows[0]["params"]}), flush=True)


# ----------------------------------------------------------------------------- driver
def _mpiexec():
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else "mpiexec"


def launch(model, mode, ranks, args):
    env = dict(os.environ, WONDERLAND_NUM_THREADS="1", WONDERLAND_BLAS_THREADS="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", WONDERLAND_DIST_TIMEOUT="120")
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
           "--model", model, "--mode", mode, "--steps", str(args.steps), "--warmup",
           str(args.warmup), "--bucket-mb", str(args.bucket_mb)]
    load_before = os.getloadavg()[0]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    load_after = os.getloadavg()[0]
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    line = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    out["load"] = (load_before + load_after) / 2
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", choices=("cnn", "transformer"), default=None)
    p.add_argument("--mode", choices=("ddp", "local"), default="ddp")
    p.add_argument("--models", nargs="*", default=["cnn", "transformer"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bucket-mb", type=float, default=4.0)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    descriptions = {k: v[3] for k, v in _models().items()}
    batches = {k: v[2] for k, v in _models().items()}
    contenders = [("1 rank", "ddp", 1), ("2 ranks", "ddp", 2), ("2 local", "local", 2)]
    rows = []
    for model in args.models:
        got = {name: [] for name, _, _ in contenders}
        for _ in range(args.rounds):
            for name, mode, ranks in contenders:
                got[name].append(launch(model, mode, ranks, args))
        med = {name: statistics.median(r["step_ms"] for r in runs) for name, runs in got.items()}
        ar = statistics.median(r["allreduce_ms"] for r in got["2 ranks"])
        loads = [r["load"] for runs in got.values() for r in runs]
        rows.append({
            "model": model, "description": descriptions[model], "batch": batches[model],
            "params": got["1 rank"][0]["params"], "t1": med["1 rank"], "t2": med["2 ranks"],
            "t2_local": med["2 local"], "efficiency": med["1 rank"] / med["2 ranks"],
            "overhead": med["2 ranks"] - med["2 local"], "allreduce": ar,
            "load": (min(loads), max(loads))})
    head = ("model", "params", "batch/rank", "1 rank", "2 ranks (DDP)", "2 ranks, no comm",
            "efficiency", "comm overhead/step", "all-reduce alone", "load avg")
    lines = []
    for r in rows:
        lines.append((r["model"], f"{r['params']:,}", str(r["batch"]), f"{r['t1']:.1f} ms",
                      f"{r['t2']:.1f} ms", f"{r['t2_local']:.1f} ms", f"{r['efficiency']:.2f}",
                      f"{r['overhead']:.2f} ms", f"{r['allreduce']:.2f} ms",
                      f"{r['load'][0]:.1f}–{r['load'][1]:.1f}"))
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in lines:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(x[i]) for x in lines + [head]) for i in range(len(head))]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for row in lines:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
