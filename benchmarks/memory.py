"""Activation memory held for the backward pass: wonderland against PyTorch.

    python benchmarks/memory.py [--markdown] [--baseline CHECKOUT]

For three networks — an MLP, a small CNN and a pre-norm transformer block (written with
the same composite operations in both libraries: layer norm, linear projections,
softmax attention, GELU MLP, residuals) — it measures, each library in its own process:

* ``saved``: bytes of activations the recorded graph holds after the forward pass —
  for wonderland ``wl.autograd.saved_bytes(loss)``, for PyTorch the tensors its autograd
  graph saves (counted with ``torch.autograd.graph.saved_tensors_hooks``, each storage
  once, parameters and inputs excluded);
* ``peak`` (wonderland only, NumPy reports its allocations to ``tracemalloc``): the
  highest memory above the parameters and inputs during forward and backward, and the
  memory still allocated at the moment the backward sweep reaches its last node (which
  shows memory being released during the sweep).

With ``--baseline CHECKOUT`` the wonderland of another checkout is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from table import print_table  # noqa: E402

NETS = ["mlp", "cnn", "transformer_block"]


# ----------------------------------------------------------------------------- wonderland
def _wl_net(name):
    import numpy as np

    import wonderland as wl
    import wonderland.nn.functional as F

    rng = np.random.default_rng(0)

    def p(*shape, scale=0.05):
        return wl.tensor((rng.standard_normal(shape) * scale).astype(np.float32),
                         requires_grad=True)

    if name == "mlp":
        ws = [p(784, 512), p(512), p(512, 512), p(512), p(512, 10), p(10)]
        x = wl.tensor(rng.standard_normal((128, 784)).astype(np.float32))

        def loss():
            h = wl.relu(F.linear(x, ws[0], ws[1]))
            h = wl.relu(F.linear(h, ws[2], ws[3]))
            return F.linear(h, ws[4], ws[5]).logsumexp(-1).sum()
        return loss
    if name == "cnn":
        w1, b1, w2, b2 = p(3, 3, 1, 32), p(32), p(3, 3, 32, 64), p(64)
        wf, bf = p(7 * 7 * 64, 10), p(10)
        x = wl.tensor(rng.standard_normal((64, 28, 28, 1)).astype(np.float32))

        def loss():
            h = F.max_pool2d(wl.relu(F.conv2d(x, w1, b1, padding=1)), 2)
            h = F.max_pool2d(wl.relu(F.conv2d(h, w2, b2, padding=1)), 2)
            return F.linear(h.reshape(64, -1), wf, bf).logsumexp(-1).sum()
        return loss
    d, heads, t, b = 256, 8, 128, 16
    g1, e1, g2, e2 = p(d), p(d), p(d), p(d)
    wq, wk, wv, wo, w1, w2 = p(d, d), p(d, d), p(d, d), p(d, d), p(d, 4 * d), p(4 * d, d)
    x = wl.tensor(rng.standard_normal((b, t, d)).astype(np.float32))

    def loss():
        h = F.layer_norm(x, (d,), g1, e1)
        q, k, v = (wl.reshape(h @ w, (b, t, heads, d // heads)).swapaxes(1, 2)
                   for w in (wq, wk, wv))
        att = wl.softmax(q @ k.swapaxes(-1, -2) * (1.0 / np.sqrt(d // heads)), -1)
        y = x + wl.reshape((att @ v).swapaxes(1, 2), (b, t, d)) @ wo
        z = F.layer_norm(y, (d,), g2, e2)
        return (y + F.gelu(z @ w1) @ w2).sum()
    return loss


def measure_wonderland(name):
    import gc
    import tracemalloc

    import wonderland as wl

    loss_fn = _wl_net(name)
    loss_fn()                                         # warm caches
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    loss = loss_fn()
    saved = wl.autograd.saved_bytes(loss)
    after_forward = tracemalloc.get_traced_memory()[0] - base
    loss.backward()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return {"saved": saved, "after_forward": after_forward, "peak": peak}


# ----------------------------------------------------------------------------- torch
def _torch_net(name):
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def p(*shape, scale=0.05):
        return torch.tensor((rng.standard_normal(shape) * scale).astype(np.float32),
                            requires_grad=True)

    if name == "mlp":
        ws = [p(784, 512), p(512), p(512, 512), p(512), p(512, 10), p(10)]
        x = torch.tensor(rng.standard_normal((128, 784)).astype(np.float32))

        def loss():
            h = torch.relu(x @ ws[0] + ws[1])
            h = torch.relu(h @ ws[2] + ws[3])
            return torch.logsumexp(h @ ws[4] + ws[5], -1).sum()
        return loss, ws + [x]
    if name == "cnn":
        w1, b1, w2, b2 = p(32, 1, 3, 3), p(32), p(64, 32, 3, 3), p(64)
        wf, bf = p(7 * 7 * 64, 10), p(10)
        x = torch.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))

        def loss():
            h = F.max_pool2d(torch.relu(F.conv2d(x, w1, b1, padding=1)), 2)
            h = F.max_pool2d(torch.relu(F.conv2d(h, w2, b2, padding=1)), 2)
            return torch.logsumexp(h.reshape(64, -1) @ wf + bf, -1).sum()
        return loss, [w1, b1, w2, b2, wf, bf, x]
    d, heads, t, b = 256, 8, 128, 16
    g1, e1, g2, e2 = p(d), p(d), p(d), p(d)
    wq, wk, wv, wo, w1, w2 = p(d, d), p(d, d), p(d, d), p(d, d), p(d, 4 * d), p(4 * d, d)
    x = torch.tensor(rng.standard_normal((b, t, d)).astype(np.float32))

    def loss():
        h = F.layer_norm(x, (d,), g1, e1)
        q, k, v = ((h @ w).reshape(b, t, heads, d // heads).transpose(1, 2) for w in (wq, wk, wv))
        att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / np.sqrt(d // heads)), -1)
        y = x + (att @ v).transpose(1, 2).reshape(b, t, d) @ wo
        z = F.layer_norm(y, (d,), g2, e2)
        return (y + F.gelu(z @ w1) @ w2).sum()
    return loss, [g1, e1, g2, e2, wq, wk, wv, wo, w1, w2, x]


def measure_torch(name):
    import torch

    loss_fn, held = _torch_net(name)
    excluded = {t.untyped_storage().data_ptr() for t in held}
    storages = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in excluded:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    return {"saved": sum(storages.values())}


# ----------------------------------------------------------------------------- driver
def _child(contender, name, baseline=None):
    env = None
    if contender == "base":
        env = dict(os.environ, PYTHONPATH=os.path.join(baseline, "src"))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                          "torch" if contender == "torch" else "wonderland", name],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--baseline", metavar="CHECKOUT")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        contender, name = args.child
        fn = measure_torch if contender == "torch" else measure_wonderland
        print(json.dumps(fn(name)))
        return
    rows = []
    for name in NETS:
        row = {"net": name, "wl": _child("wl", name)}
        try:
            row["torch"] = _child("torch", name)
        except subprocess.CalledProcessError:
            row["torch"] = None
        if args.baseline:
            row["base"] = _child("base", name, args.baseline)
        rows.append(row)
        print(f"  {name} done", file=sys.stderr)
    mb = lambda v: f"{v / 1e6:.2f} MB"  # noqa: E731
    header = ["network", "wl saved", "torch saved", "wl/torch", "wl peak fwd+bwd",
              "wl held after forward"]
    if args.baseline:
        header += ["base saved", "wl/base"]
    lines = []
    for r in rows:
        wl_, t = r["wl"], r["torch"]
        line = [r["net"], mb(wl_["saved"]), mb(t["saved"]) if t else "-",
                f"{wl_['saved'] / t['saved']:.2f}" if t else "-", mb(wl_["peak"]),
                mb(wl_["after_forward"])]
        if args.baseline:
            line += [mb(r["base"]["saved"]), f"{wl_['saved'] / r['base']['saved']:.2f}"]
        lines.append(line)
    print_table(header, lines, args.markdown)


if __name__ == "__main__":
    main()
