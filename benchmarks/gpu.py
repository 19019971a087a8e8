"""The GPU check: the parity suites on CuPy, then training steps against PyTorch CUDA.

Run on a machine with an NVIDIA GPU, CuPy (``pip install ".[gpu]"``) and a CUDA build of
PyTorch::

    python benchmarks/gpu.py                     # everything (about 5 minutes)
    python benchmarks/gpu.py --skip-parity       # only the timings
    python benchmarks/gpu.py --rounds 5 --markdown

1. **Parity**: the core, nn and optim test suites with ``WONDERLAND_BACKEND=cupy`` (every
   tensor on the GPU, compared with the NumPy and PyTorch CPU references those suites
   already hold), and ``tests/backend/test_gpu_backend.py`` (a training step on CuPy against the
   CPU). Two tests that state CPU facts are deselected, as on the stand-in device.
2. **Speed**: one training step (forward, backward, SGD with momentum) of an MLP
   784-512-512-10 (batch 512), a CNN (28×28×1, conv 32 → pool → conv 64 → pool → linear,
   batch 128) and a transformer (2 pre-norm blocks, d 256, 4 heads, sequence 128,
   batch 32), float32, wonderland on CuPy against PyTorch CUDA eager. Each contender runs
   in its own process, alternating A B A B for ``--rounds`` rounds; clocks stop after the
   device has synchronised; a figure is the median over rounds of each process's median
   step. The goal: at least 0.8× PyTorch's throughput on the matmul-bound steps.

It prints the device, the driver and library versions, each section's outcome and the
table; the exit status is 0 when the parity suites pass.
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
ROOT = os.path.dirname(HERE)
PARITY_SUITES = ["core/test_tensor.py", "ops/test_primitive_grads.py", "core/test_transforms.py",
                 "core/test_engine.py", "nn/test_nn.py", "nn/test_norm.py",
                 "optim/test_optim.py", "ops/test_conv.py", "ops/test_losses.py",
                 "test_linalg.py", "train/test_train.py", "ops/test_torch_parity.py"]
DESELECT = ["tests/core/test_tensor.py::test_attributes_and_conversion",
            "tests/core/test_semantics.py::test_tensor_copies_numpy_input"]
MODELS = {"mlp": 512, "cnn": 128, "transformer": 32}


# ----------------------------------------------------------------------------- wonderland
def _wl_model(name):
    import wonderland as wl
    from wonderland import nn

    if name == "mlp":
        return nn.MLP([784, 512, 512, 10]), lambda b: wl.random.normal((b, 784))
    if name == "cnn":
        return (nn.Sequential(nn.Conv2d(1, 32, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(7 * 7 * 64, 10)),
                lambda b: wl.random.normal((b, 28, 28, 1)))

    class Block(nn.Module):
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
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Block(256, 4), Block(256, 4))
            self.head = nn.Linear(256, 10)

        def forward(self, x):
            return self.head(self.blocks(x).mean(axis=1))

    return Transformer(), lambda b: wl.random.normal((b, 128, 256))


def _time_wonderland(name, batch, steps, warmup, backend="cupy"):
    import wonderland as wl
    from wonderland import nn

    wl.backend.set_backend(backend)
    wl.random.seed(0)
    model, make_x = _wl_model(name)
    opt = wl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = make_x(batch), wl.random.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    wl.device.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        wl.device.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------- torch
def _torch_model(name):
    import torch
    from torch import nn

    if name == "mlp":
        return (nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                              nn.Linear(512, 10)), (784,))
    if name == "cnn":
        return (nn.Sequential(nn.Conv2d(1, 32, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(7 * 7 * 64, 10)), (1, 28, 28))

    class Block(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, d = x.shape
            h = self.heads
            q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
            q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
            att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / (d // h) ** 0.5), dim=-1)
            y = (att @ v).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(y)
            return x + self.down(torch.nn.functional.gelu(self.up(self.norm2(x))))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Block(256, 4), Block(256, 4))
            self.head = nn.Linear(256, 10)

        def forward(self, x):
            return self.head(self.blocks(x).mean(dim=1))

    return Transformer(), (128, 256)


def _time_torch(name, batch, steps, warmup):
    import torch

    torch.manual_seed(0)
    model, shape = _torch_model(name)
    model = model.cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn((batch,) + shape, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------- driver
def _worker(args):
    if args.contender == "wonderland":
        seconds = _time_wonderland(args.model, MODELS[args.model], args.steps, args.warmup,
                                   args.backend)
    else:
        seconds = _time_torch(args.model, MODELS[args.model], args.steps, args.warmup)
    print("RESULT " + json.dumps({"ms": 1e3 * seconds}), flush=True)
    return 0


def _environment():
    lines = []
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        lines.append(f"device: {props['name'].decode()}, CUDA runtime "
                     f"{cupy.cuda.runtime.runtimeGetVersion()}, driver "
                     f"{cupy.cuda.runtime.driverGetVersion()}, CuPy {cupy.__version__}")
    except Exception as exc:                       # reported, then the checks fail clearly
        lines.append(f"CuPy/GPU not usable: {type(exc).__name__}: {exc}")
    try:
        import torch

        lines.append(f"PyTorch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    except ImportError:
        lines.append("PyTorch not installed")
    return lines


def _parity(timeout):
    env = dict(os.environ, WONDERLAND_BACKEND="cupy")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
           *sum((["--deselect", d] for d in DESELECT), []),
           *[os.path.join("tests", s) for s in PARITY_SUITES]]
    start = time.perf_counter()
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"parity suites did not finish within {timeout} s"
    tail = [x for x in run.stdout.splitlines() if x.strip()][-1:] or ["(no output)"]
    print(f"parity suites on CuPy: {tail[0]} ({time.perf_counter() - start:.0f} s)")
    if run.returncode != 0:
        print(run.stdout[-6000:])
    gpu = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-rs", "tests/backend/test_gpu_backend.py"], capture_output=True, text=True,
                         cwd=ROOT, timeout=timeout)
    print("tests/backend/test_gpu_backend.py: " + ([x for x in gpu.stdout.splitlines() if x.strip()]
                                            or ["(no output)"])[-1])
    return run.returncode == 0 and gpu.returncode == 0, ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--contender", choices=("wonderland", "torch"), default="wonderland")
    p.add_argument("--model", choices=tuple(MODELS), default="mlp")
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--backend", default="cupy", help="wonderland's backend in the worker "
                   "(fake-cuda: a dry run of the script on a machine without a GPU)")
    p.add_argument("--skip-parity", action="store_true")
    p.add_argument("--parity-timeout", type=int, default=300)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)
    print("\n".join(_environment()))
    ok = True
    if not args.skip_parity:
        ok, why = _parity(args.parity_timeout)
        if why:
            print(why)
    rows = []
    for model in args.models:
        got = {"wonderland": [], "torch": []}
        for _ in range(args.rounds):
            for contender in got:
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--contender",
                       contender, "--model", model, "--steps", str(args.steps), "--warmup",
                       str(args.warmup)]
                run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
                if run.returncode != 0:
                    print(f"{contender} {model} failed:\n{run.stderr[-3000:]}")
                    got[contender].append(float("nan"))
                    continue
                line = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")][-1]
                got[contender].append(json.loads(line[len("RESULT "):])["ms"])
        wl_ms, torch_ms = statistics.median(got["wonderland"]), statistics.median(got["torch"])
        rows.append((model, str(MODELS[model]), f"{wl_ms:.3f} ms", f"{torch_ms:.3f} ms",
                     f"{torch_ms / wl_ms:.2f}"))
    head = ("step", "batch", "wonderland (CuPy)", "PyTorch CUDA eager", "throughput vs PyTorch")
    if args.markdown:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        for r in [head] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
