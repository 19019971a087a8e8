"""Chapter 11: transformers in practice — an encoder–decoder translating numbers into
words (greedy and beam search), the cost of attention (KV caching, memory-efficient
attention, linear attention), vision transformers and mixers on digits next to a CNN,
and an audio transformer tested on an accent it never heard."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
from matplotlib.ticker import NullFormatter
from threadpoolctl import threadpool_limits

import wonderland as wl
from wonderland import nn
from wonderland.ops.attention import attention

from .base import Check, Result, seeds
from .ch07_convolutions import digits_images, make_cnn
from .common import accuracy
from .counting import count_products
from .plotting import COLORS, explained, plain_ticks, value_labels

# ----------------------------------------------------------------------------- numbers → words
ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = ("_ _ twenty thirty forty fifty sixty seventy eighty ninety").split()
WORDS = ["<pad>", "<bos>", "<eos>"] + ONES + TENS[2:] + ["hundred", "thousand"]
WORD_ID = {w: i for i, w in enumerate(WORDS)}


def number_words(n: int) -> list:
    """English words for 0 ≤ n < 10⁶ ("three hundred forty two")."""
    if n < 20:
        return [ONES[n]]
    if n < 100:
        return [TENS[n // 10]] + ([ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    return number_words(n // 1000) + ["thousand"] + (number_words(n % 1000) if n % 1000 else [])


def number_batch(nums):
    """Source digit ids (3 + digit), decoder input (bos + words) and output (words + eos)."""
    src = [[3 + int(c) for c in str(int(n))] for n in nums]
    tgt = [[WORD_ID[w] for w in number_words(int(n))] for n in nums]
    S, T = max(map(len, src)), max(map(len, tgt)) + 1
    s = np.zeros((len(nums), S), np.int64)
    ti = np.zeros((len(nums), T), np.int64)
    to = np.zeros((len(nums), T), np.int64)
    for i, (a, b) in enumerate(zip(src, tgt)):
        s[i, :len(a)] = a
        ti[i, 0] = 1
        ti[i, 1:len(b) + 1] = b
        to[i, :len(b)] = b
        to[i, len(b)] = 2
    return s, ti, to, tgt


def translation(ctx):
    g = np.random.default_rng(ctx.seed)
    nums = g.permutation(1000)
    test, train = nums[:200], nums[200:]
    wl.random.seed(ctx.seed)
    model = wl.models.Seq2SeqTransformer(13, len(WORDS), d_model=64, nhead=4, num_encoder_layers=2,
                                         num_decoder_layers=2, dim_feedforward=128)
    steps = ctx.pick(800, 300)
    opt = wl.optim.AdamW(model.parameters(), 4e-3, weight_decay=0.01)
    # loss and gradients from a wl.jit program, one per batch shape (the batches' lengths vary)
    trainer = wl.train.Trainer(model, opt, compute_loss=lambda m, batch: m.loss(*batch),
                               step_scheduler=wl.optim.CosineAnnealingLR(opt, steps),
                               progress=False, jit=True)
    for step in range(steps):
        s, ti, to, _ = number_batch(train[g.integers(0, len(train), 64)])
        trainer.train_step((s, ti, to))
        if step % 50 == 0:
            ctx.status(f"translation step {step}/{steps}")
    s, _, _, truth = number_batch(test)
    greedy = model.greedy_decode(s, 12)
    beam = model.beam_search(s, 4, 12)
    exact_g = float(np.mean([a == b for a, b in zip(greedy, truth)]))
    exact_b = float(np.mean([a == b for a, b in zip(beam, truth)]))
    examples = [(int(n), " ".join(WORDS[t] for t in b)) for n, b in zip(test[:4], beam[:4])]
    return exact_g, exact_b, examples, steps


# ----------------------------------------------------------------------------- costs
def kv_cache_cost(ctx):
    """Greedy generation of n tokens with the KV cache and recomputing the prefix at
    every step: the multiply-adds of each, counted (the claim), and the time of each, the
    best of a few repeats (reported: a timing is at the mercy of whatever else the
    machine is doing)."""
    wl.random.seed(ctx.seed)
    lengths = [32, 64, 128, 256]
    model = wl.models.GPT(64, max(lengths) + 1, 2, 4, 64)
    prompt = np.array([[1]])
    rows = []
    for n in lengths:
        with count_products() as cached:
            a = model.generate(prompt, n, top_k=1, use_cache=True)
        with count_products() as full:
            b = model.generate(prompt, n, top_k=1, use_cache=False)
        cache_s = recompute_s = np.inf
        for _ in range(ctx.pick(3, 2)):
            t0 = time.perf_counter()
            model.generate(prompt, n, top_k=1, use_cache=True)
            t1 = time.perf_counter()
            model.generate(prompt, n, top_k=1, use_cache=False)
            t2 = time.perf_counter()
            cache_s, recompute_s = min(cache_s, t1 - t0), min(recompute_s, t2 - t1)
        rows.append({"tokens": n, "cache_macs": cached.macs, "recompute_macs": full.macs,
                     "cache_applications": cached.calls, "recompute_applications": full.calls,
                     "cache_s": cache_s, "recompute_s": recompute_s,
                     "same_tokens": bool((a.numpy() == b.numpy()).all())})
    return rows


def _time_attention(L, impl, causal=True, repeat=2):
    rng = np.random.default_rng(0)
    q, k, v, g = (wl.tensor(rng.standard_normal((1, 2, L, 32)).astype(np.float32), requires_grad=True)
                  for _ in range(4))
    best = np.inf
    for _ in range(repeat):
        tracemalloc.start()
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        out = attention(q, k, v, None, 0 if causal else None, None, impl)
        out.backward(g.detach())
        best = min(best, time.perf_counter() - t0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        grads = q.grad.numpy().copy()
        q.grad = k.grad = v.grad = None
    return best, peak, out.numpy(), grads


def memory_efficient(ctx):
    rows = []
    for L in ctx.pick([256, 512, 1024, 2048, 4096], [256, 512, 1024, 2048]):
        tp, mp, op, gp = _time_attention(L, "plain")
        tf, mf, of, gf = _time_attention(L, "flash")
        err = float(max(np.abs(op - of).max(), np.abs(gp - gf).max() / max(np.abs(gp).max(), 1e-30)))
        rows.append({"length": L, "plain_s": tp, "flash_s": tf, "plain_peak_mb": mp / 2 ** 20,
                     "flash_peak_mb": mf / 2 ** 20, "max_difference": err})
    return rows


def linear_vs_softmax(ctx):
    """Softmax against linear attention at growing lengths: the multiply-adds of each,
    counted (the claim), and the best of three forward times (reported)."""
    rng = np.random.default_rng(1)
    rows = []
    for L in ctx.pick([256, 512, 1024, 2048, 4096], [256, 512, 1024, 2048]):
        q, k, v = (wl.tensor(rng.standard_normal((1, 2, L, 32)).astype(np.float32)) for _ in range(3))
        row = {"length": L}
        for name, fn in (("softmax", lambda: nn.functional.scaled_dot_product_attention(q, k, v)),
                         ("linear", lambda: nn.functional.linear_attention(q, k, v))):
            with count_products() as counted:
                fn()
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            row[f"{name}_macs"], row[f"{name}_s"] = counted.macs, best
        rows.append(row)
    return rows


def _slope(xs, ys):
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


# ----------------------------------------------------------------------------- vision
def vision(ctx):
    x_tr, x_te, y_tr, y_te = digits_images(ctx.seed)
    epochs = ctx.pick(15, 8)
    makers = {"CNN (chapter 7)": make_cnn,
              "ViT": lambda: wl.models.ViT(8, 2, 1, 10, 32, 2, 4),
              "MLP-Mixer": lambda: wl.models.MLPMixer(8, 2, 1, 10, 32, 2, 32, 64)}
    if not ctx.quick:
        makers["PoolFormer"] = lambda: wl.models.MetaFormer(8, 2, 1, 10, 32, 2, mixer="pooling")
        makers["FNet (Fourier)"] = lambda: wl.models.MetaFormer(8, 2, 1, 10, 32, 2, mixer="fourier")
    acc, params = {}, {}
    for name, make in makers.items():
        ctx.status(f"digits: {name}")
        wl.random.seed(ctx.seed)
        model = make()
        loader = wl.data.DataLoader(wl.data.TensorDataset(x_tr, y_tr), 32, shuffle=True,
                                    generator=wl.random.Generator(ctx.seed),
                                    transform=wl.data.RandomTranslate(1, generator=wl.random.Generator(ctx.seed)))
        opt = wl.optim.AdamW(model.parameters(), 3e-3, weight_decay=0.05)
        trainer = wl.train.Trainer(model, opt, nn.functional.cross_entropy,
                                   scheduler=wl.optim.CosineAnnealingLR(opt, epochs), progress=False,
                                   jit=True)
        trainer.fit(loader, epochs)
        acc[name] = accuracy(model, x_te, y_te)
        params[name] = sum(p.size for p in model.parameters())
    return acc, params, epochs


# ----------------------------------------------------------------------------- audio
def corrupt(audio, g, snr_db=5.0, max_shift=1000):
    """White noise at ``snr_db`` and a random shift of up to ``max_shift`` samples
    (±0.125 s at 8 kHz), as in the shared data's baseline."""
    out = np.empty_like(audio)
    for i, a in enumerate(audio):
        s = int(g.integers(-max_shift, max_shift + 1))
        a = np.roll(a, s)
        if s > 0:
            a[:s] = 0
        elif s < 0:
            a[s:] = 0
        power = float(np.mean(a ** 2)) + 1e-12
        snr = snr_db if np.isscalar(snr_db) else snr_db[i]
        out[i] = a + g.standard_normal(a.shape) * np.sqrt(power / 10 ** (snr / 10))
    return out.astype(np.float32)


def _chunk_features(audio):
    spec = wl.models.log_spectrogram(wl.tensor(audio)).numpy()
    chunks = np.array_split(spec, 8, axis=1)
    return np.concatenate([c.mean(1) for c in chunks], axis=1)


def _baseline(x_tr, y_tr, tests):
    f_tr = _chunk_features(x_tr)
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-6
    wl.random.seed(0)
    model = wl.models.SoftmaxRegression(f_tr.shape[1], 10)
    opt = wl.optim.Adam(model.parameters(), 1e-2, weight_decay=1e-3)
    xt, yt = wl.tensor(((f_tr - mu) / sd).astype(np.float32)), wl.tensor(y_tr)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    out = []
    for x in tests:
        with wl.no_grad():
            pred = model(wl.tensor(((_chunk_features(x) - mu) / sd).astype(np.float32))).numpy()
        out.append(pred.argmax(-1))
    return out


def audio(ctx):
    d = wl.data.load_spoken_digits()
    held_out = "en-gb-scotland"
    train_rows = d["accent"] != held_out
    x, y = d["audio"], d["label"]
    x_tr, y_tr, x_te, y_te = x[train_rows], y[train_rows], x[~train_rows], y[~train_rows]
    noisy = corrupt(x_te, np.random.default_rng(ctx.seed + 1))
    base = [float((p == y_te).mean()) for p in _baseline(x_tr, y_tr, (x_te, noisy))]
    epochs = ctx.pick(15, 8)
    results = {}
    for aug in (False, True):
        ctx.status(f"audio transformer, augmentation={aug}")
        wl.random.seed(ctx.seed)
        model = wl.models.AudioTransformer(10, 48, depth=2, heads=4)
        opt = wl.optim.AdamW(model.parameters(), 2e-3, weight_decay=0.05)
        g = np.random.default_rng(ctx.seed)
        per_epoch = (len(y_tr) + 31) // 32
        trainer = wl.train.Trainer(model, opt, nn.functional.cross_entropy, progress=False,
                                   step_scheduler=wl.optim.CosineAnnealingLR(opt, epochs * per_epoch),
                                   jit=True)
        for _ in range(epochs):
            perm = g.permutation(len(y_tr))
            for i in range(0, len(perm), 32):
                b = perm[i:i + 32]
                xb = x_tr[b]
                if aug:        # half of each batch noisy (0–20 dB) and shifted, drawn afresh
                    noisy_b = corrupt(xb, g, snr_db=g.uniform(0, 20, len(b)))
                    xb = np.where(g.random((len(b), 1)) < 0.5, noisy_b, xb).astype(np.float32)
                trainer.train_step(wl.tensor(xb), wl.tensor(y_tr[b]))
        model.eval()
        with wl.no_grad():
            results[aug] = tuple(float((model(wl.tensor(t)).numpy().argmax(-1) == y_te).mean())
                                 for t in (x_te, noisy))
    tokens = model.tokenize(wl.tensor(x_te[:1])).shape[1]
    return {"baseline": tuple(base), "plain": results[False], "augmented": results[True],
            "held_out": held_out, "train_clips": int(len(y_tr)), "test_clips": int(len(y_te)),
            "tokens": tokens, "samples": x.shape[1], "epochs": epochs}


# ----------------------------------------------------------------------------- run
def run(ctx) -> Result:
    with threadpool_limits(1, user_api="blas"):
        return _run(ctx)


def _run(ctx) -> Result:
    ctx.status("numbers to words")
    exact_g, exact_b, examples, steps = translation(ctx)
    ctx.status("KV cache")
    kv = kv_cache_cost(ctx)
    ctx.status("memory-efficient attention")
    mem = memory_efficient(ctx)
    ctx.status("linear attention")
    lin = linear_vs_softmax(ctx)
    vis_acc, vis_params, vis_epochs = vision(ctx)
    ctx.status("audio")
    aud = audio(ctx)

    fig = ctx.figure("costs", "The cost of attention. Top left: multiply-adds (counted) of "
                     "generating n tokens greedily with a KV cache against recomputing the whole "
                     "prefix at every step (same tokens); bottom left: their times. Middle: peak "
                     "memory (top) and time (bottom) of attention forward+backward, plain "
                     "(quadratic memory) against the FlashAttention-style kernel (linear). "
                     "Right: multiply-adds (top, counted) and forward time (bottom) of softmax "
                     "against linear attention.")
    fig.set_size_inches(11, 6.4)
    panels = [(1, kv, "tokens", ("cache_macs", "recompute_macs"), ("KV cache", "recompute"),
               "generated tokens", "multiply-adds"),
              (4, kv, "tokens", ("cache_s", "recompute_s"), ("KV cache", "recompute"),
               "generated tokens", "seconds"),
              (2, mem, "length", ("flash_peak_mb", "plain_peak_mb"), ("flash", "plain"),
               "sequence length", "peak MiB (tracemalloc)"),
              (5, mem, "length", ("flash_s", "plain_s"), ("flash", "plain"),
               "sequence length", "seconds (forward+backward)"),
              (3, lin, "length", ("linear_macs", "softmax_macs"), ("linear", "softmax"),
               "sequence length", "multiply-adds (forward)"),
              (6, lin, "length", ("linear_s", "softmax_s"), ("linear", "softmax"),
               "sequence length", "seconds (forward)")]
    for pos, rows_, x_key, keys, labels, xlabel, ylabel in panels:
        ax = fig.add_subplot(2, 3, pos)
        xs = [r[x_key] for r in rows_]
        for key, label, color, marker in zip(keys, labels, (COLORS[0], COLORS[1]), ("o-", "s-")):
            ax.loglog(xs, [r[key] for r in rows_], marker, color=color, label=label)
        ax.set_xscale("log", base=2)
        plain_ticks(ax, xs)
        lo, hi = ax.get_ylim()
        if hi / lo > 10:                 # whole decades labelled: no crowded minor labels
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    ctx.save(fig)

    fig = ctx.figure("models", f"Left: test accuracy on the 8×8 digits after {vis_epochs} epochs "
                     f"(same optimiser and augmentation; one bar per model, value above). Right: "
                     f"spoken digits from an accent held out of training ({aud['held_out']}), "
                     f"clean and with 5 dB noise plus shifts of up to ±0.125 s. Both axes start "
                     f"at 0.")
    fig.set_size_inches(10, 4.0)
    ax = fig.add_subplot(1, 2, 1)
    names = list(vis_acc)
    accs = [vis_acc[n] for n in names]
    explained(ax.bar(range(len(names)), accs, color=COLORS[:len(names)]), "one bar per model")
    value_labels(ax, range(len(names)), accs, fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=7, rotation=15)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("model")
    ax.set_ylabel("test accuracy (8×8 digits)")
    ax = fig.add_subplot(1, 2, 2)
    labels = ["baseline\n(logistic)", "transformer", "transformer\n+ augmentation"]
    vals = [aud["baseline"], aud["plain"], aud["augmented"]]
    xs = np.arange(3)
    for shift, k, color, label in ((-0.2, 0, COLORS[0], "clean"), (0.2, 1, COLORS[1], "noise + shift")):
        ax.bar(xs + shift, [v[k] for v in vals], 0.4, color=color, label=label)
        value_labels(ax, xs + shift, [v[k] for v in vals], fmt="{:.0%}", fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("model")
    ax.set_ylabel("test accuracy, held-out accent")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ctx.save(fig)

    kv_same = float(all(r["same_tokens"] for r in kv))
    kv_macs_ratio = kv[-1]["recompute_macs"] / kv[-1]["cache_macs"]
    kv_speedup = kv[-1]["recompute_s"] / kv[-1]["cache_s"]
    mem_ratio = mem[-1]["flash_peak_mb"] / mem[0]["flash_peak_mb"]
    len_ratio = mem[-1]["length"] / mem[0]["length"]
    plain_ratio = mem[-1]["plain_peak_mb"] / mem[0]["plain_peak_mb"]
    max_diff = max(r["max_difference"] for r in mem)
    lengths = [r["length"] for r in lin]
    soft_macs_slope = _slope(lengths, [r["softmax_macs"] for r in lin])
    lin_macs_slope = _slope(lengths, [r["linear_macs"] for r in lin])
    soft_slope = _slope(lengths, [r["softmax_s"] for r in lin])
    lin_slope = _slope(lengths, [r["linear_s"] for r in lin])
    metrics = {"translation_exact_greedy": exact_g, "translation_exact_beam": exact_b,
               "translation_steps": steps, "kv_cache": kv, "kv_cache_speedup_longest": kv_speedup,
               "kv_cache_macs_ratio_longest": kv_macs_ratio,
               "memory_efficient": mem, "flash_memory_growth": mem_ratio,
               "plain_memory_growth": plain_ratio, "flash_max_difference": max_diff,
               "linear_vs_softmax": lin, "softmax_time_slope": soft_slope,
               "linear_time_slope": lin_slope, "softmax_macs_slope": soft_macs_slope,
               "linear_macs_slope": lin_macs_slope,
               **{f"digits_accuracy_{k}": v for k, v in vis_acc.items()},
               **{f"digits_parameters_{k}": v for k, v in vis_params.items()},
               "audio": aud}
    checks = [
        ctx.check("numbers → words, exact match on unseen numbers (greedy)", exact_g, 0.70, 0.42,
                  seeds=(seeds(0.785, 0.905, 0.852, 0.051), seeds(0.57, 0.755, 0.664, 0.079))),
        ctx.check("beam search (4 beams) exact match is at least greedy's minus 2 points",
                  exact_b, exact_g - 0.02,
                  seeds=(seeds(0.785, 0.905, 0.852, 0.051, "threshold: greedy's exact match in "
                               "the same run − 0.02"),
                         seeds(0.565, 0.765, 0.668, 0.087, "threshold: greedy's exact match in "
                               "the same run − 0.02"))),
        Check("KV-cache decoding gives the same tokens as recomputation", kv_same, 1.0, ">="),
        # with the cache each step multiplies one new position (and attends over the
        # cached keys); recomputing multiplies all t of them: the ratio grows like n/2
        Check(f"{kv[-1]['tokens']} tokens: recomputing the prefix does more multiply-adds "
              f"than decoding with the KV cache (ratio, counted; at least n/4)",
              kv_macs_ratio, kv[-1]["tokens"] / 4, ">="),
        Check("flash and plain attention agree (max difference)", max_diff, 1e-4, "<="),
        Check(f"flash attention's peak memory grows at most linearly ({len_ratio:.0f}× length)",
              mem_ratio, len_ratio * 1.2, "<="),
        Check("plain attention's peak memory grows faster than linearly", plain_ratio, len_ratio * 2, ">="),
        # softmax attention multiplies L×L scores (slope 2), linear attention E×Ev states (1)
        Check("softmax attention's multiply-adds grow faster with length than linear "
              "attention's (log-log slope difference, counted)", soft_macs_slope - lin_macs_slope,
              0.8, ">="),
        ctx.check("ViT on digits, test accuracy", vis_acc["ViT"], 0.59, 0.33,
                  seeds=(seeds(0.683, 0.803, 0.741, 0.050), seeds(0.463, 0.628, 0.532, 0.066))),
        ctx.check("MLP-Mixer on digits, test accuracy", vis_acc["MLP-Mixer"], 0.88, 0.75,
                  seeds=(seeds(0.920, 0.938, 0.929, 0.0075, "threshold 0.88, below mean − 3 sd"),
                         seeds(0.856, 0.900, 0.878, 0.016, "threshold 0.75, below mean − 3 sd"))),
        ctx.check("the chapter-7 CNN stays ahead of the transformer-style models on small images",
                  vis_acc["CNN (chapter 7)"], max(vis_acc["ViT"], vis_acc["MLP-Mixer"]),
                  seeds=(seeds(0.984, 0.991, 0.99, 0.003, "threshold: the better of ViT and "
                               "MLP-Mixer in the same run"),
                         seeds(0.982, 0.996, 0.989, 0.0048, "threshold: the better of ViT and "
                               "MLP-Mixer in the same run"))),
        ctx.check("audio transformer on a held-out accent, clean clips", aud["augmented"][0],
                  0.86, 0.8,
                  seeds=(seeds(0.90, 0.95, 0.927, 0.019),
                         seeds(0.883, 0.933, 0.903, 0.022, "threshold 0.8, below mean − 3 sd"))),
        ctx.check("augmentation lifts the noisy held-out accuracy over the plain baseline's "
                  "(points)", aud["augmented"][1] - aud["baseline"][1], 0.2,
                  seeds=(seeds(0.75, 0.80, 0.777, 0.019, "threshold 0.2, far below mean − 3 sd"),
                         seeds(0.683, 0.767, 0.727, 0.030, "threshold 0.2, far below mean − 3 sd"))),
    ]
    ex = "; ".join(f"{n} → “{w}”" for n, w in examples)
    summary = (
        f"An encoder–decoder transformer trained for {steps} steps to write numbers below 1,000 "
        f"as English words gets {exact_g:.0%} of 200 numbers it never saw exactly right with greedy "
        f"decoding and {exact_b:.0%} with beam search (4 beams), e.g. {ex}. Generating "
        f"{kv[-1]['tokens']} tokens with a KV cache does {kv_macs_ratio:.0f}× fewer multiply-adds "
        f"than recomputing the prefix at every step ({kv[-1]['cache_macs'] / 1e6:.0f} M against "
        f"{kv[-1]['recompute_macs'] / 1e6:.0f} M), with the same tokens; both apply about as many "
        f"primitives ({kv[-1]['cache_applications']:,} against "
        f"{kv[-1]['recompute_applications']:,}), and at this size the per-step overhead weighs on "
        f"the times: {kv[-1]['cache_s']:.2f} s against {kv[-1]['recompute_s']:.2f} s here. "
        f"From length {mem[0]['length']} to {mem[-1]['length']} the FlashAttention-style kernel's "
        f"peak memory grows {mem_ratio:.1f}× ({mem[-1]['flash_peak_mb']:.1f} MiB at the longest) "
        f"while plain attention's grows {plain_ratio:.1f}× ({mem[-1]['plain_peak_mb']:.1f} MiB), "
        f"with values agreeing to {max_diff:.1e}; times {mem[-1]['flash_s']:.2f} s against "
        f"{mem[-1]['plain_s']:.2f} s. Softmax attention's multiply-adds grow as "
        f"L^{soft_macs_slope:.2f} and linear attention's as L^{lin_macs_slope:.2f}; their times "
        f"as L^{soft_slope:.2f} and L^{lin_slope:.2f}. On the 8×8 digits: "
        + ", ".join(f"{k} {v:.1%} ({vis_params[k]:,} parameters)" for k, v in vis_acc.items())
        + f" — with 1,347 training images the CNN's built-in locality wins. An audio transformer "
        f"whose 1-D convolutional tokeniser turns {aud['samples']:,} samples into {aud['tokens']} "
        f"tokens, trained on {aud['train_clips']} clips of six accents, recognises the held-out "
        f"accent ({aud['held_out']}, {aud['test_clips']} clips) at {aud['plain'][0]:.0%} clean and "
        f"{aud['plain'][1]:.0%} with 5 dB noise and shifts; trained with the same corruptions as "
        f"augmentation, {aud['augmented'][0]:.0%} and {aud['augmented'][1]:.0%}. The plain "
        f"baseline (chunked log-spectrogram, logistic regression) gets {aud['baseline'][0]:.0%} and "
        f"{aud['baseline'][1]:.0%}.")
    return Result(metrics, summary, checks)
