"""What ``wl.jit`` and its fusion of elementwise chains save on sequence models.

For each model, the loss and gradients of one batch are computed three ways in one
process, interleaved round by round: eagerly (``wl.value_and_grad``), through ``wl.jit``
with fusion off, and through ``wl.jit`` with fusion on. Prints the median time of each
and how many steps the program has without and with fusion.

    python benchmarks/fusion.py                 # all models, 30 rounds
    python benchmarks/fusion.py gpt mamba --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

MODELS = ("gpt", "mamba", "rwkv", "transformer", "s4d", "linear attention")


def _case(name, rng):
    """``(function, params, batch)`` for the language model ``name``: 2 layers, width 64
    (the GPT: 128), 16 sequences of 128 tokens."""
    import wonderland as wl
    from wonderland.experiments.ch13_recurrent import TokenModel

    nn, F = wl.nn, wl.nn.functional
    wl.random.seed(0)
    if name == "gpt":
        vocab, model = 80, wl.models.GPT(80, 128, 2, 4, 128)
    else:
        vocab, model = 64, TokenModel(name, 64, 64, 2, max_len=128)
    ids = rng.integers(0, vocab, (16, 129))
    x, y = wl.tensor(ids[:, :-1]), wl.tensor(ids[:, 1:].reshape(-1))

    def loss_and_grads(params, xb, yb):
        return wl.value_and_grad(lambda p: F.cross_entropy(
            nn.functional_call(model, p, xb).reshape(-1, vocab), yb))(params)
    return loss_and_grads, dict(model.named_parameters()), (x, y)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=list(MODELS),
                    help=f"models to time (default: all of {', '.join(MODELS)})")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    args = ap.parse_args(argv)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; available: {', '.join(MODELS)}")
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    import wonderland as wl

    rng = np.random.default_rng(0)
    print("| model | eager | jit, no fusion | jit, fused | steps (fused loops) |")
    print("|---|---|---|---|---|")
    for name in args.models:
        fn, params, batch = _case(name, rng)
        ways = {"eager": fn, "plain": wl.jit(fn, fuse=False), "fused": wl.jit(fn)}
        for f in ways.values():                  # trace, checked replay, one more
            for _ in range(3):
                f(params, *batch)
        times = {k: [] for k in ways}
        for _ in range(args.rounds):
            for k, f in ways.items():
                t0 = time.perf_counter()
                f(params, *batch)
                times[k].append(time.perf_counter() - t0)
        ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        names = ways["fused"].last_program.names
        n_fused = sum(n.startswith("fused(") for n in names)
        print(f"| {name} | {ms['eager']:.1f} ms | {ms['plain']:.1f} ms | {ms['fused']:.1f} ms "
              f"| {len(ways['plain'].last_program)} → {len(names)} ({n_fused}) |", flush=True)


if __name__ == "__main__":
    main()
