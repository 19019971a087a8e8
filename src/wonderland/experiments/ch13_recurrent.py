"""Chapter 13: recurrent models — vanishing gradients in a vanilla RNN against an LSTM,
digits read pixel by pixel, the Mamba paper's synthetic tasks, character language models
at equal size, and what each way of computing a linear recurrence costs."""

from __future__ import annotations

import math
import os
import time

import numpy as np

import wonderland as wl
from wonderland import nn
from wonderland.nn import functional as F

from .base import Check, Result, seeds
from .counting import count_products
from .plotting import COLORS, plain_ticks


# ----------------------------------------------------------------------------- models
class CausalSelfAttention(nn.Module):
    """A minimal causal multi-head softmax attention (the transformer of the comparison)."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.d = heads, d
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        h, k = self.heads, d // self.heads
        q, kk, v = (z.reshape(b, t, h, k).transpose(0, 2, 1, 3)
                    for z in wl.split(self.qkv(x), 3, axis=-1))
        scores = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(k)
        mask = wl.tensor(np.triu(np.ones((t, t), bool), 1))
        att = wl.softmax(wl.where(mask, -1e9, scores), axis=-1)
        return self.out((att @ v).transpose(0, 2, 1, 3).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm residual block around one sequence mixer (and an MLP where the mixer has
    none of its own)."""

    def __init__(self, kind, d, layer, n_layers, max_len):
        super().__init__()
        self.kind = kind
        if kind == "rwkv":
            self.mixer = nn.RWKVBlock(d, layer, n_layers, hidden=2 * d)
            return
        self.norm = nn.LayerNorm(d)
        self.mixer = {"s4d": lambda: nn.S4D(d, d_state=32, init="legs"),
                      "mamba": lambda: nn.Mamba(d, d_state=16, expand=2),
                      "linear attention": lambda: nn.LinearAttention(d, num_heads=2),
                      "transformer": lambda: CausalSelfAttention(d, 2)}[kind]()
        self.mlp = None
        if kind in ("s4d", "linear attention", "transformer"):
            self.norm2 = nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        if self.kind == "rwkv":
            return self.mixer(x)
        x = x + self.mixer(self.norm(x))
        return x + self.mlp(self.norm2(x)) if self.mlp is not None else x


class TokenModel(nn.Module):
    """Embedding, a stack of one kind of sequence layer, and a linear read-out."""

    def __init__(self, kind, vocab, d, n_layers, max_len=256):
        super().__init__()
        self.kind = kind
        self.embed = nn.Embedding(vocab, d)
        if kind == "lstm":
            self.rnn = nn.LSTM(d, d, num_layers=n_layers)
        else:
            self.blocks = nn.ModuleList([Block(kind, d, i, n_layers, max_len)
                                         for i in range(n_layers)])
        if kind == "transformer":
            self.pos = nn.Parameter(np.random.default_rng(0).normal(0, 0.02, (max_len, d))
                                    .astype(np.float32))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        x = self.embed(ids)
        if self.kind == "lstm":
            x, _ = self.rnn(x)
        else:
            if self.kind == "transformer":
                x = x + self.pos[:ids.shape[1]]
            for blk in self.blocks:
                x = blk(x)
        return self.head(self.norm(x))


class DigitSequenceModel(nn.Module):
    """Pixels in, one class out: the last state of an LSTM/GRU, or the time average of two
    S4D blocks."""

    def __init__(self, kind, hidden):
        super().__init__()
        self.kind = kind
        if kind == "lstm":
            self.rnn = nn.LSTM(1, hidden)
        elif kind == "gru":
            self.rnn = nn.GRU(1, hidden)
        else:
            self.inp = nn.Linear(1, hidden)
            self.ssm = nn.ModuleList([nn.S4D(hidden, d_state=32) for _ in range(2)])
            self.mix = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(2)])
            self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(2)])
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        if self.kind in ("lstm", "gru"):
            _, state = self.rnn(x)
            h = state[0] if self.kind == "lstm" else state
            return self.head(h[-1])
        h = self.inp(x)
        for ssm, mix, norm in zip(self.ssm, self.mix, self.norms):
            h = norm(h + mix(F.gelu(ssm(h))))
        return self.head(h.mean(axis=1))


def _sequence_loss(model, batch):
    x, y, where = batch
    logits = model(x)
    if where is not None:
        logits = logits[:, where]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _train(model, batches, steps, lr, ctx=None, label=""):
    """Adam with a cosine schedule and gradient clipping; each batch's loss and gradients
    come from a ``wl.jit`` program (traced on the first batch)."""
    opt = wl.optim.Adam(model.parameters(), lr)
    trainer = wl.train.Trainer(model, opt, compute_loss=_sequence_loss, clip_grad_norm=1.0,
                               step_scheduler=wl.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
                               progress=False, jit=True)
    start = time.perf_counter()
    for step in range(steps):
        trainer.train_step(batches(step))
        if ctx is not None and step % 50 == 0:
            ctx.status(f"{label} step {step}/{steps}")
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- vanishing gradients
def _vanishing(ctx):
    wl.random.seed(ctx.seed)
    T, n = 60, 16
    x0 = np.random.default_rng(ctx.seed).standard_normal((n, T, 8)).astype(np.float32)
    models = {"vanilla RNN (tanh)": nn.RNN(8, 32), "LSTM": nn.LSTM(8, 32)}
    lstm1 = nn.LSTM(8, 32)
    lstm1.bias_ih_l0.data[32:64] = 1.0          # forget-gate bias 1 (Jozefowicz et al. 2015)
    models["LSTM, forget bias 1"] = lstm1
    curves = {}
    for name, layer in models.items():
        x = wl.tensor(x0, requires_grad=True)
        out, _ = layer(x)
        out[:, -1].sum().backward()
        norms = np.linalg.norm(x.grad.numpy(), axis=(0, 2))[::-1]     # index: steps back
        curves[name] = norms / norms[0]
    return curves


# ----------------------------------------------------------------------------- digits
def _digits(ctx):
    x, y = wl.data.load_digits()
    x = (np.asarray(x.numpy(), np.float32).reshape(-1, 64, 1) - 5.0) / 6.0   # about zero mean, unit scale
    y = np.asarray(y.numpy(), np.int64)
    perm = np.random.default_rng(ctx.seed).permutation(len(y))
    cut = int(0.75 * len(y))
    tr, te = perm[:cut], perm[cut:]
    results = {}
    settings = {"lstm": (64, 1e-2), "gru": (64, 1e-2), "s4d": (48, 1e-2)}
    epochs = ctx.pick(30, 3)
    for kind, (hidden, lr) in settings.items():
        wl.random.seed(ctx.seed)
        model = DigitSequenceModel(kind, hidden)
        g = np.random.default_rng(ctx.seed)
        per_epoch = len(tr) // 64
        order = np.concatenate([g.permutation(tr) for _ in range(epochs)])

        def batches(step):
            idx = order[step * 64:(step + 1) * 64]
            return wl.tensor(x[idx]), wl.tensor(y[idx]), None

        seconds = _train(model, batches, epochs * per_epoch, lr, ctx, f"digits {kind}")
        model.eval()
        with wl.no_grad():
            acc = wl.metrics.accuracy(model(wl.tensor(x[te])), wl.tensor(y[te]))
        results[kind] = (acc, seconds, model.num_parameters())
    return results


# ----------------------------------------------------------------------------- synthetic tasks
def selective_copying_batch(g, n, content=40, k=4, symbols=4):
    """Blank (0) sequences with ``k`` data tokens (2..) at random places, then ``k``
    markers (1): the model must output the data tokens in order at the markers."""
    ids = np.zeros((n, content + k), np.int64)
    targets = g.integers(2, 2 + symbols, (n, k))
    for i in range(n):
        pos = np.sort(g.choice(content, k, replace=False))
        ids[i, pos] = targets[i]
    ids[:, content:] = 1
    return ids, targets


def induction_batch(g, n, length=20, symbols=8):
    """Random tokens (1..symbols) with a trigger (0) followed by a token somewhere, and the
    trigger again at the end: predict the token that followed it the first time."""
    ids = g.integers(1, symbols + 1, (n, length))
    pos = g.integers(1, length - 3, n)
    target = ids[np.arange(n), pos + 1]
    ids[np.arange(n), pos] = 0
    ids[:, -1] = 0
    return ids, target[:, None]


def _synthetic(ctx, task):
    # quick mode keeps the three recurrent layers the chapter's claim is about
    kinds = ctx.pick(["lstm", "s4d", "mamba", "linear attention", "transformer"],
                     ["lstm", "s4d", "mamba"])
    make = selective_copying_batch if task == "copy" else induction_batch
    vocab = 6 if task == "copy" else 9
    k = 4 if task == "copy" else 1
    # 300 steps: at 250 the selective model reached 0.90 (seed 0) and 0.71 (seeds 1, 2)
    steps = ctx.pick(300, 40) if task == "copy" else ctx.pick(150, 20)
    test_ids, test_y = make(np.random.default_rng(ctx.seed + 99), 512)
    out = {}
    for kind in kinds:
        wl.random.seed(ctx.seed)
        model = TokenModel(kind, vocab, 32, 2, max_len=48)
        g = np.random.default_rng(ctx.seed)

        def batches(step):
            ids, y = make(g, 32)
            return wl.tensor(ids), wl.tensor(y), slice(ids.shape[1] - k, None)

        seconds = _train(model, batches, steps, 1e-2 if kind != "transformer" else 3e-3, ctx,
                         f"{task} {kind}")
        model.eval()
        with wl.no_grad():
            logits = model(wl.tensor(test_ids)).numpy()[:, -k:]
        out[kind] = (float((logits.argmax(-1) == test_y).mean()), seconds)
    return out


# ----------------------------------------------------------------------------- character models
def _alice(ctx):
    """alice.txt from $WONDERLAND_DATA (or the shared folder beside the project); Python's
    documentation text otherwise."""
    folders = [ctx.options.get("data"), os.environ.get("WONDERLAND_DATA")]
    here = os.path.dirname(os.path.abspath(__file__))
    folders.append(os.path.abspath(os.path.join(here, "..", "..", "..", "..", "shared", "data")))
    folders.append(os.path.join(here, "..", "data", "files"))
    for folder in folders:
        if folder and os.path.exists(os.path.join(folder, "alice.txt")):
            return wl.data.read_text(os.path.join(folder, "alice.txt")), "alice.txt"
    return wl.data.default_text(150_000), "Python's documentation text (alice.txt not found)"


def _char_models(ctx):
    text, source = _alice(ctx)
    vocab = wl.data.CharVocab(text)
    ids = np.asarray(vocab.encode(text))
    cut = int(0.9 * len(ids))
    train, valid = ids[:cut], ids[cut:]
    counts = np.bincount(train, minlength=len(vocab)) + 1
    p = counts / counts.sum()
    unigram = float(-(np.log2(p[valid])).mean())
    V = len(vocab)
    configs = {"lstm": dict(d=96, n_layers=1), "mamba": dict(d=64, n_layers=2),
               "rwkv": dict(d=64, n_layers=2)}
    steps, length, batch = ctx.pick(300, 20), 64, 32
    g0 = np.random.default_rng(ctx.seed)
    out = {}
    for kind, cfg in configs.items():
        wl.random.seed(ctx.seed)
        model = TokenModel(kind, V, cfg["d"], cfg["n_layers"])
        g = np.random.default_rng(ctx.seed)

        def batches(step):
            starts = g.integers(0, len(train) - length - 1, batch)
            seg = np.stack([train[a:a + length + 1] for a in starts])
            return wl.tensor(seg[:, :-1]), wl.tensor(seg[:, 1:]), None

        seconds = _train(model, batches, steps, 4e-3, ctx, f"characters {kind}")
        model.eval()
        with wl.no_grad():
            n_eval = ctx.pick(8000, 2000)
            chunk = valid[:n_eval - n_eval % length + 1]
            x = chunk[:-1].reshape(-1, length)
            y = chunk[1:].reshape(-1, length)
            logits = model(wl.tensor(x))
            nll = F.cross_entropy(logits.reshape(-1, V), wl.tensor(y.reshape(-1))).item()
        out[kind] = (nll / math.log(2), seconds, model.num_parameters())
    del g0
    return source, unigram, out


# ----------------------------------------------------------------------------- cost and memory
STEP_LOOP, SEQUENTIAL_SCAN, DOUBLING_SCAN, FFT_CONVOLUTION = (
    "step loop", "sequential scan", "doubling scan", "FFT convolution")
LOOP_STEPS_TIMED = 64          # the step loop is timed over this many steps and scaled to L
TIMING_REPEATS = 3             # each time is the best of this many calls, after a warm-up


def _best_time(fn, repeats=TIMING_REPEATS):
    """The shortest of ``repeats`` timed calls of ``fn``, after one untimed call: whatever
    else the machine is doing only ever adds time."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _cost(ctx):
    """One S4D layer over growing lengths in each of its forms. Counted (the claim): the
    primitives the step loop and the FFT convolution apply, each a dispatch that runs
    after the one before; timed (reported, the best of a few calls): every form, the step
    loop over its first 64 steps and scaled to the length, its cost being linear in L."""
    lengths = ctx.pick([64, 256, 1024, 4096], [64, 256])
    d = 64
    layer = nn.S4D(d, d_state=64)
    times = {STEP_LOOP: [], SEQUENTIAL_SCAN: [], DOUBLING_SCAN: [], FFT_CONVOLUTION: []}
    counts = {STEP_LOOP: [], FFT_CONVOLUTION: []}
    with wl.no_grad():
        for L in lengths:
            x = wl.tensor(np.random.default_rng(0).standard_normal((4, L, d)).astype(np.float32))
            for name, mode in ((STEP_LOOP, "recurrent"), (FFT_CONVOLUTION, "conv")):
                with count_products() as counted:
                    layer(x, mode=mode)
                counts[name].append(counted.calls)
            head = x[:, :LOOP_STEPS_TIMED]
            forms = {STEP_LOOP: lambda: layer(head, mode="recurrent"),
                     SEQUENTIAL_SCAN: lambda: layer(x, mode="scan"),
                     DOUBLING_SCAN: lambda: layer(x, mode="scan", method="parallel"),
                     FFT_CONVOLUTION: lambda: layer(x, mode="conv")}
            for name, fn in forms.items():
                scale = L / LOOP_STEPS_TIMED if name == STEP_LOOP else 1.0
                times[name].append(_best_time(fn) * scale)
    return lengths, times, counts


def state_memory(d_model=768, n_layers=12, lengths=(1024, 16384, 131072), bytes_per=2):
    """Bytes kept per sequence for generation: a transformer's KV cache grows with the
    length, a recurrent state does not (GPT-2-small-sized models, 16-bit numbers)."""
    d_inner, n = 2 * d_model, 16
    fixed = {"LSTM (h, c)": 2 * d_model * n_layers,
             "Mamba (conv + SSM state)": (3 * d_inner + d_inner * n) * n_layers,
             "RWKV-4 (x, num, den, max; x)": 5 * d_model * n_layers,
             "S4D, 64 states": d_model * 64 * n_layers}
    table = {name: [size * bytes_per] * len(lengths) for name, size in fixed.items()}
    table["transformer KV cache"] = [2 * L * d_model * n_layers * bytes_per for L in lengths]
    return lengths, table


def _growth_words(growth, length_ratio):
    """How each form's measured time grew against the length, in words: in proportion to
    it, faster, or more slowly (within a factor 1.5 of the length's growth counts as
    proportional); forms that grew alike are named together."""
    groups = {"about in proportion to the length": [], "faster than the length": [],
              "more slowly than the length (fixed costs still weigh)": []}
    for name, g in growth.items():
        if g > 1.5 * length_ratio:
            groups["faster than the length"].append(f"the {name}")
        elif g < length_ratio / 1.5:
            groups["more slowly than the length (fixed costs still weigh)"].append(f"the {name}")
        else:
            groups["about in proportion to the length"].append(f"the {name}")
    parts = []
    for how, names in groups.items():
        if names:
            listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
            parts.append(f"{listed} grew {how}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- run
# selective copying at full size, Mamba's accuracy minus S4D's over tour seeds 0–4:
# lowest, highest, mean, standard deviation (the check's note and the summary quote them)
COPY_GAP_SEEDS = (0.052, 0.359, 0.169, 0.117)


def run(ctx) -> Result:
    t0 = time.perf_counter()
    wl.ops.warm_up(dtypes=(np.float32, np.complex64))     # what this chapter's models run
    compile_s = time.perf_counter() - t0
    ctx.status("vanishing gradients")
    curves = _vanishing(ctx)
    ctx.status("digits as pixel sequences")
    digits = _digits(ctx)
    ctx.status("selective copying")
    copying = _synthetic(ctx, "copy")
    ctx.status("induction heads")
    induction = _synthetic(ctx, "induction")
    ctx.status("character models")
    source, unigram, chars = _char_models(ctx)
    ctx.status("cost against length")
    lengths, times, counts = _cost(ctx)
    mem_lengths, memory = state_memory()

    fig = ctx.figure("vanishing", "Gradient norm of the last output with respect to the input "
                     "k steps back, relative to k = 0 (16 random sequences, 32 units, "
                     "PyTorch's initialisation). The vanilla RNN's falls geometrically; the "
                     "LSTM's cell path keeps more, much more with the forget gate biased "
                     "open.")
    ax = fig.add_subplot(111)
    for i, (name, c) in enumerate(curves.items()):
        ax.semilogy(np.arange(len(c)), c, color=COLORS[i], label=name)
    ax.set_xlabel("k (steps back)")
    ax.set_ylabel(r"$\Vert\partial y_T / \partial x_{T-k}\Vert\ /\ "
                  r"\Vert\partial y_T / \partial x_T\Vert$")
    ax.legend(fontsize=8)
    ctx.save(fig)

    fig = ctx.figure("cost", "One S4D layer (4 sequences, 64 channels, 64 states) against "
                     "the sequence length. Left: primitives applied (counted), the Python loop "
                     "of steps against the FFT convolution. Right: forward time (the best of "
                     f"{TIMING_REPEATS} calls) of the loop of steps, the fused sequential scan, "
                     "the log-depth doubling scan and the FFT convolution; the step loop's time "
                     f"is that of its first {LOOP_STEPS_TIMED} steps, measured and scaled to the "
                     "length (its cost is linear in it).")
    fig.set_size_inches(9, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, cs) in enumerate(counts.items()):
        ax1.loglog(lengths, cs, "o-", color=COLORS[0 if i == 0 else 3], label=name)
    ax1.set_xlabel("sequence length")
    ax1.set_ylabel("primitive applications")
    ax1.legend(fontsize=8)
    for i, (name, ts) in enumerate(times.items()):
        ax2.loglog(lengths, np.array(ts) * 1e3, "o-", color=COLORS[i], label=name)
    ax2.set_xlabel("sequence length")
    ax2.set_ylabel("forward time (ms)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        plain_ticks(ax, lengths)
    ctx.save(fig)

    fig = ctx.figure("memory", "Memory kept per sequence for generation, for models of "
                     "GPT-2-small size (12 layers, width 768, 16-bit numbers): a recurrent "
                     "state is constant, a transformer's key-value cache grows with the "
                     "context.")
    ax = fig.add_subplot(111)
    for i, (name, sizes) in enumerate(memory.items()):
        ax.loglog(mem_lengths, np.array(sizes) / 2 ** 20, "o-", color=COLORS[i % len(COLORS)],
                  label=name)
    ax.set_xscale("log", base=2)
    plain_ticks(ax, mem_lengths, fmt=lambda n: f"{n:,}")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("MiB per sequence")
    ax.legend(fontsize=8)
    ctx.save(fig)

    # the step loop's time is 64 steps measured and scaled: its growth is the length's by
    # construction, so only the three forms timed whole are compared with the length
    growth = {name: ts[-1] / ts[0] for name, ts in times.items() if name != STEP_LOOP}
    k40 = 40
    ratio = float(curves["LSTM, forget bias 1"][k40] / curves["vanilla RNN (tanh)"][k40])
    metrics = {"gradient_ratio_rnn_k40": float(curves["vanilla RNN (tanh)"][k40]),
               "gradient_ratio_lstm_k40": float(curves["LSTM"][k40]),
               "gradient_ratio_lstm_forget1_k40": float(curves["LSTM, forget bias 1"][k40]),
               "kernel_compile_seconds": compile_s, "text_source": source,
               "unigram_bits_per_char": unigram}
    for kind, (acc, sec, n_par) in digits.items():
        metrics[f"digits_{kind}_accuracy"] = acc
        metrics[f"digits_{kind}_seconds"] = sec
        metrics[f"digits_{kind}_parameters"] = n_par
    for task, res in (("copying", copying), ("induction", induction)):
        for kind, (acc, sec) in res.items():
            metrics[f"{task}_{kind.replace(' ', '_')}_accuracy"] = acc
            metrics[f"{task}_{kind.replace(' ', '_')}_seconds"] = sec
    for kind, (bits, sec, n_par) in chars.items():
        metrics[f"chars_{kind}_bits_per_char"] = bits
        metrics[f"chars_{kind}_seconds"] = sec
        metrics[f"chars_{kind}_parameters"] = n_par
    for name, ts in times.items():
        metrics[f"cost_{name}"] = dict(zip(map(str, lengths), ts))
    for name, cs in counts.items():
        metrics[f"applications_{name}"] = dict(zip(map(str, lengths), cs))
    metrics["state_bytes"] = {name: dict(zip(map(str, mem_lengths), s)) for name, s in memory.items()}
    metrics["time_growth_longest_over_shortest"] = growth

    params = [n for _, _, n in chars.values()]
    checks = [
        Check("LSTM (forget bias 1) keeps ≥1000× more gradient 40 steps back than the RNN",
              ratio, 1e3, ">="),
        Check("vanilla RNN gradient 40 steps back, relative (vanishes)",
              float(curves["vanilla RNN (tanh)"][k40]), 1e-6, "<="),
    ]
    # (full, quick) thresholds and the seeds 0–4 they come from; quick mode trains 3 epochs
    digit_thresholds = {
        "lstm": (0.87, 0.21, seeds(0.898, 0.944, 0.920, 0.017), seeds(0.358, 0.502, 0.416, 0.066)),
        "gru": (0.85, 0.38, seeds(0.887, 0.940, 0.916, 0.022), seeds(0.422, 0.476, 0.452, 0.022)),
        "s4d": (0.90, 0.21, seeds(0.980, 0.987, 0.982, 0.003, "threshold 0.90, below mean − 3 sd"),
                seeds(0.349, 0.607, 0.497, 0.095))}
    for kind, (full, quick, basis_full, basis_quick) in digit_thresholds.items():
        checks.append(ctx.check(f"pixel-by-pixel digits, {kind.upper()} test accuracy",
                                digits[kind][0], full, quick, seeds=(basis_full, basis_quick)))
    if not ctx.quick:
        # after 40 steps (quick mode) no model is past chance on this task: checked at full
        # size only. The gap between the selective and the time-invariant model varies
        # widely with the seed at this budget, so it is checked against the lowest seed's
        checks += [
            ctx.check("selective copying: Mamba (selective) accuracy", copying["mamba"][0], 0.56,
                      seeds=seeds(0.727, 0.973, 0.845, 0.093)),
            ctx.check("selective copying: Mamba at least as accurate as the time-invariant S4D "
                      "(accuracy difference)", copying["mamba"][0] - copying["s4d"][0], 0.0,
                      seeds=seeds(*COPY_GAP_SEEDS, "threshold: lowest − 0.05 (mean − 3 sd is "
                                  "below zero: the gap is real but its size is not stable at "
                                  "this budget)")),
        ]
    checks.append(Check("character models within 25% of each other in parameters",
                        max(params) / min(params), 1.25, "<="))
    char_seeds = {"lstm": (seeds(2.41, 2.44, 2.43, 0.011, "threshold far above mean + 3 sd"),
                           seeds(3.63, 3.64, 3.64, 0.005, "threshold above mean + 3 sd")),
                  "mamba": (seeds(2.38, 2.44, 2.40, 0.024, "threshold far above mean + 3 sd"),
                            seeds(4.06, 4.19, 4.13, 0.054, "threshold above mean + 3 sd")),
                  "rwkv": (seeds(2.37, 2.39, 2.38, 0.010, "threshold far above mean + 3 sd"),
                           seeds(4.00, 4.12, 4.06, 0.049, "threshold above mean + 3 sd"))}
    for kind, (bits, _, _) in chars.items():
        checks.append(ctx.check(f"character {kind}: bits/char below the unigram model's "
                                f"({unigram:.2f}) minus a margin", bits, unigram - 1.0,
                                unigram - 0.25, "<=", seeds=char_seeds.get(kind)))
    # the loop applies a step's primitives L times over, the convolution a fixed number
    # whatever L: the ratio grows like L (L/16 leaves room for the kernel's own ops)
    loop_apps, conv_apps = counts[STEP_LOOP][-1], counts[FFT_CONVOLUTION][-1]
    checks.append(Check(f"S4D at length {lengths[-1]}: the step loop applies more primitives, "
                        f"one after another, than the FFT convolution (ratio, counted; at least "
                        f"L/16)", loop_apps / conv_apps, lengths[-1] / 16, ">="))

    def row(res):
        return ", ".join(f"{k} {v[0]:.0%}" for k, v in res.items())

    summary = (
        f"Gradients through time: 40 steps back, the gradient of a vanilla tanh RNN's last "
        f"output has shrunk to {curves['vanilla RNN (tanh)'][k40]:.1e} of its size at the last "
        f"step; an LSTM keeps {curves['LSTM'][k40]:.1e} with PyTorch's initialisation and "
        f"{curves['LSTM, forget bias 1'][k40]:.1e} with its forget gate biased open — the "
        f"additive cell path is what carries it. Reading each 8×8 digit as 64 pixels in a row, "
        f"the LSTM reaches {digits['lstm'][0]:.1%}, the GRU {digits['gru'][0]:.1%} and a two-block "
        f"S4D {digits['s4d'][0]:.1%} test accuracy. On the Mamba paper's synthetic tasks at toy "
        f"scale (two layers of width 32, no more than a few hundred steps), selective copying: "
        f"{row(copying)}; induction heads: {row(induction)}. "
        + (f"After only {ctx.pick(300, 40)} steps the models are near chance (1 in 4) on "
           f"selective copying, so quick mode does not check it. " if ctx.quick else
           f"The selective scan, whose transition depends on the input, can pick the data "
           f"tokens out wherever they fall; the time-invariant S4D applies one convolution to "
           f"every sequence. Here Mamba "
           f"{'leads' if copying['mamba'][0] >= copying['s4d'][0] else 'trails'} S4D by "
           f"{abs(copying['mamba'][0] - copying['s4d'][0]) * 100:.0f} points; over tour seeds 0–4 "
           f"the lead ranged from {COPY_GAP_SEEDS[0] * 100:.0f} to {COPY_GAP_SEEDS[1] * 100:.0f} "
           f"points at this budget of steps. ")
        + f"Character models on {source} at about "
        f"{np.mean(params) / 1e3:.0f}k parameters each: "
        + ", ".join(f"{k.upper()} {v[0]:.2f} bits/char in {v[1]:.0f} s" for k, v in chars.items())
        + f" (unigram {unigram:.2f}). For one S4D layer at length {lengths[-1]}, the loop of "
        f"steps applies {loop_apps:,} primitives one after another, the FFT convolution {conv_apps} "
        f"whatever the length ({times[STEP_LOOP][-1] * 1e3:.0f} ms against "
        f"{times[FFT_CONVOLUTION][-1] * 1e3:.1f} ms here, each the best of {TIMING_REPEATS} "
        f"calls; the loop's time is {LOOP_STEPS_TIMED} steps measured and scaled). From length "
        f"{lengths[0]} to {lengths[-1]} ({lengths[-1] // lengths[0]}× longer) the measured "
        f"forward times grew "
        + ", ".join(f"{growth[name]:.0f}× for the {name}" for name in growth)
        + f": {_growth_words(growth, lengths[-1] / lengths[0])}. For "
        f"generation a recurrent state stays a few kilobytes per layer where a transformer's "
        f"key-value cache reaches {memory['transformer KV cache'][-1] / 2 ** 30:.1f} GiB at "
        f"{mem_lengths[-1]:,} tokens. (Compiling the recurrent kernels took {compile_s:.1f} s, "
        f"once: they are cached on disk.)")
    return Result(metrics, summary, checks)
