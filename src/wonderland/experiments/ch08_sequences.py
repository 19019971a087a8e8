"""Chapter 8: convolutions beyond images — forecasting a real recording with a causal
dilated CNN, classifying variable-length signals with masks, and a character-level
causal CNN that writes text."""

from __future__ import annotations

import os
import re

import numpy as np

import wonderland as wl
from wonderland import nn

from .base import Result, seeds
from .plotting import COLORS


# ----------------------------------------------------------------------------- forecasting
def _forecast(ctx):
    series = wl.data.load_membrane_potential(downsample=4).numpy().astype(np.float64)
    split, horizon, lags = 1800, 10, 64
    mu, sd = series[:split].mean(), series[:split].std()
    z = ((series - mu) / sd).astype(np.float32)
    test_idx = np.arange(split, len(z) - horizon)
    naive = float(np.mean((z[test_idx] - z[test_idx + horizon]) ** 2))

    def design(idx):
        return np.stack([z[i - lags + 1:i + 1] for i in idx])

    train_idx = np.arange(lags, split - horizon)
    w, b = wl.models.least_squares(design(train_idx), z[train_idx + horizon], l2=1.0)
    linear_pred = design(test_idx) @ w.numpy() + b.item()
    linear = float(np.mean((linear_pred - z[test_idx + horizon]) ** 2))

    wl.random.seed(ctx.seed)
    model = wl.models.WaveNet(1, 1, channels=ctx.pick(24, 16), dilations=(1, 2, 4, 8, 16, 32))
    rf = model.receptive_field
    g = wl.random.Generator(ctx.seed)
    opt = wl.optim.Adam(model.parameters(), 2e-3)
    length = 128
    steps = ctx.pick(500, 250)
    for step in range(steps):
        starts = g.randint(0, split - length - horizon, (16,)).numpy()
        seg = np.stack([z[a:a + length + horizon] for a in starts])[..., None]
        opt.zero_grad()
        pred = model(wl.tensor(seg[:, :length]))
        loss = nn.functional.mse_loss(pred[:, rf:], wl.tensor(seg[:, horizon:])[:, rf:])
        loss.backward()
        opt.step()
        if step % 50 == 0:
            ctx.status(f"forecaster step {step}/{steps}")
    model.eval()
    with wl.no_grad():
        full = model(wl.tensor(z[None, :, None])).numpy()[0, :, 0]
    cnn = float(np.mean((full[test_idx] - z[test_idx + horizon]) ** 2))
    return z, test_idx, horizon, full, linear_pred, naive, linear, cnn, rf


# ----------------------------------------------------------------------------- variable lengths
def _signals(n, generator):
    """Noisy sinusoids of random length (10–100 steps), frequency and phase, padded with
    zeros to a common length; the target is each signal's amplitude. Averaging the
    padding in scales every pooled feature by length / padded length, which no linear
    read-out can undo: only the masked mean sees the amplitude as it is."""
    lengths = generator.randint(10, 101, (n,)).numpy()
    amplitudes = generator.uniform((n,), 0.5, 1.5).numpy()
    seqs = []
    for length, amplitude in zip(lengths, amplitudes):
        freq = generator.uniform((), 0.05, 0.2).item()
        phase = generator.uniform((), 0, 2 * np.pi).item()
        t = np.arange(length)
        s = amplitude * np.sin(2 * np.pi * freq * t + phase) + 0.1 * generator.normal((length,)).numpy()
        seqs.append(s[:, None].astype(np.float32))
    x, mask = wl.data.pad_sequences(seqs)
    return x, mask, wl.tensor(amplitudes[:, None].astype(np.float32))


class _SignalNet(nn.Module):
    def __init__(self, masked):
        super().__init__()
        self.masked = masked
        self.conv1 = nn.Conv1d(1, 16, 5, padding="same")
        self.conv2 = nn.Conv1d(16, 16, 5, padding="same", dilation=2)
        self.head = nn.Linear(16, 1)

    def forward(self, batch):
        x, mask = batch
        h = nn.functional.relu(self.conv2(nn.functional.relu(self.conv1(x))))
        pooled = nn.functional.masked_global_avg_pool(h, mask) if self.masked else h.mean(1)
        return self.head(pooled)


def _variable_length(ctx):
    """Test MSE and R² of the amplitude regression with and without the mask."""
    g = wl.random.Generator(ctx.seed + 5)
    x, mask, y = _signals(ctx.pick(800, 500), g)
    xt, mt, yt = _signals(400, g)
    scores = {}
    for masked in (True, False):
        wl.random.seed(ctx.seed)
        net = _SignalNet(masked)
        opt = wl.optim.Adam(net.parameters(), 5e-3)
        order = wl.random.Generator(ctx.seed)
        for epoch in range(ctx.pick(25, 15)):
            perm = order.permutation(len(y)).numpy()
            for i in range(0, len(perm), 50):
                idx = perm[i:i + 50]
                opt.zero_grad()
                loss = nn.functional.mse_loss(net((x[idx], mask[idx])), y[idx])
                loss.backward()
                opt.step()
        with wl.no_grad():
            mse = nn.functional.mse_loss(net((xt, mt)), yt).item()
        scores[masked] = (mse, 1.0 - mse / float(np.var(yt.numpy())))
    return scores[True], scores[False]


# ----------------------------------------------------------------------------- text
MIN_TEXT_CHARS = 2_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def check_text(path) -> str:
    """The text in ``path`` if the character model can learn from it; otherwise a clear
    ``ValueError`` (not UTF-8, binary, or shorter than :data:`MIN_TEXT_CHARS`)."""
    text = wl.data.read_text(path)
    control = len(_CONTROL.findall(text))
    if control > 0.01 * len(text):
        raise ValueError(f"{path} does not look like text: {control:,} of its {len(text):,} "
                         f"characters are control characters")
    if len(text) < MIN_TEXT_CHARS:
        raise ValueError(f"{path} has {len(text):,} characters; the character model needs at "
                         f"least {MIN_TEXT_CHARS:,} (a tenth of them is held out)")
    return text


def _text(ctx):
    path = ctx.options.get("text")
    if path:
        text, source = check_text(path), os.path.basename(path)
    else:
        text, source = wl.data.default_text(), "Python's built-in documentation (pydoc_data)"
    text = text[:ctx.pick(300_000, 120_000)]
    vocab = wl.data.CharVocab(text)
    ids = vocab.encode(text)
    cut = int(0.9 * len(ids))
    train, valid = ids[:cut], ids[cut:]
    counts = np.bincount(train, minlength=len(vocab)) + 1
    p = counts / counts.sum()
    unigram_bits = float(-(np.log2(p[valid])).mean())

    wl.random.seed(ctx.seed)
    model = wl.models.CharCNN(len(vocab), embedding_dim=24, channels=ctx.pick(48, 32),
                              dilations=(1, 2, 4, 8, 16, 32))
    rf = model.receptive_field
    opt = wl.optim.Adam(model.parameters(), 3e-3)
    g = wl.random.Generator(ctx.seed)
    length, steps = 160, ctx.pick(400, 150)
    for step in range(steps):
        starts = g.randint(0, len(train) - length - 1, (16,)).numpy()
        seg = np.stack([train[a:a + length + 1] for a in starts])
        opt.zero_grad()
        logits = model(wl.tensor(seg[:, :-1]))
        loss = nn.functional.cross_entropy(logits[:, rf // 2:], wl.tensor(seg[:, 1 + rf // 2:]))
        loss.backward()
        opt.step()
        if step % 50 == 0:
            ctx.status(f"character model step {step}/{steps}")
    model.eval()
    with wl.no_grad():
        chunk = valid[:20000]
        logits = model(wl.tensor(chunk[None, :-1]))
        nll = nn.functional.cross_entropy(logits[0, rf:], wl.tensor(chunk[1 + rf:])).item()
    bits = nll / np.log(2)
    prime = "The "
    sample = vocab.decode(model.generate(vocab.encode(prime), ctx.pick(300, 120), temperature=0.8,
                                         generator=wl.random.Generator(ctx.seed)))
    return source, len(text), len(vocab), unigram_bits, bits, prime + sample, rf


def run(ctx) -> Result:
    ctx.status("forecasting the membrane potential")
    z, test_idx, horizon, full, linear_pred, naive, linear, cnn, rf = _forecast(ctx)
    ctx.status("variable-length signals")
    (mse_masked, r2_masked), (mse_unmasked, r2_unmasked) = _variable_length(ctx)
    ctx.status("character-level text model")
    source, n_chars, vocab_size, unigram_bits, bits, sample, rf_text = _text(ctx)

    fig = ctx.figure("forecast", f"Forecasting a neuron's membrane potential {horizon} steps "
                     f"ahead on held-out data: the causal dilated CNN (receptive field {rf}) "
                     f"anticipates spikes that the linear model smooths and the naive copy lags.")
    fig.set_size_inches(9, 3.6)
    ax = fig.add_subplot(111)
    span = slice(test_idx[0] + 200, test_idx[0] + 360)
    t = np.arange(len(z))
    ax.plot(t[span], z[span], color="#222222", lw=1.2, label="recording")
    shift = test_idx[0]
    ax.plot(t[span], full[span.start - horizon:span.stop - horizon], color=COLORS[1], lw=1, label="CNN forecast")
    ax.plot(t[span], linear_pred[span.start - horizon - shift:span.stop - horizon - shift],
            color=COLORS[0], lw=1, alpha=0.8, label="linear forecast")
    ax.plot(t[span], z[span.start - horizon:span.stop - horizon], color=COLORS[2], lw=0.8, ls="--",
            label="naive (value h steps ago)")
    ax.set_xlabel(f"time step (×4 samples), forecasting {horizon} steps ahead")
    ax.set_ylabel("membrane potential (standardised)")
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    ctx.save(fig)

    metrics = {"forecast_mse_naive": naive, "forecast_mse_linear": linear, "forecast_mse_cnn": cnn,
               "forecast_horizon": horizon, "forecast_receptive_field": rf,
               "variable_length_mse_masked": mse_masked, "variable_length_r2_masked": r2_masked,
               "variable_length_mse_unmasked": mse_unmasked,
               "variable_length_r2_unmasked": r2_unmasked,
               "text_chars": n_chars, "text_vocabulary": vocab_size,
               "text_unigram_bits_per_char": unigram_bits, "text_cnn_bits_per_char": bits}
    checks = [ctx.check("causal CNN forecast beats the naive forecast (test MSE over the naive "
                        "forecast's)", cnn / naive, 1.0, 1.2, "<",
                        seeds=(seeds(0.723, 0.859, 0.781, 0.051, "threshold 1, above mean + 3 sd"),
                               seeds(0.727, 0.983, 0.878, 0.099, "threshold: mean + 3 sd (after "
                                     "250 steps the forecaster is not always ahead)"))),
              # the threshold is the linear model's MSE measured in the same run
              ctx.check("causal CNN forecast beats the linear model (test MSE)", cnn, linear, op="<",
                        seeds=(seeds(0.608, 0.723, 0.657, 0.043, "threshold: the linear model's "
                                     "test MSE in the same run"),
                               seeds(0.611, 0.827, 0.739, 0.083, "threshold: the linear model's "
                                     "test MSE in the same run"))),
              ctx.check("variable-length amplitude regression with masked pooling, test R²",
                        r2_masked, 0.9,
                        seeds=(seeds(0.974, 0.987, 0.978, 0.0051, "threshold 0.9, below mean − 3 sd"),
                               seeds(0.957, 0.973, 0.963, 0.0066, "threshold 0.9, below mean − 3 sd"))),
              ctx.check("ignoring the mask: test MSE without it over the masked test MSE",
                        mse_unmasked / mse_masked, 3.0,
                        seeds=(seeds(14.5, 17.8, 16.3, 1.26, "threshold 3, below mean − 3 sd"),
                               seeds(9.38, 14.8, 11.7, 2.27, "threshold 3, below mean − 3 sd"))),
              ctx.check("character CNN bits/char below the unigram model minus 1", bits,
                        unigram_bits - 1.0, op="<=",
                        seeds=(seeds(2.11, 2.19, 2.15, 0.030, f"threshold: unigram "
                                     f"({unigram_bits:.2f}) − 1, above mean + 3 sd"),
                               seeds(3.16, 3.23, 3.19, 0.026, f"threshold: unigram "
                                     f"({unigram_bits:.2f}) − 1, above mean + 3 sd")))]
    summary = (f"On a recorded neuron membrane potential (matplotlib's sample data), forecasting "
               f"{horizon} steps ahead on the held-out last part, a causal dilated CNN (receptive "
               f"field {rf}) reaches test MSE {cnn:.3f} against {linear:.3f} for a 64-lag linear "
               f"model and {naive:.3f} for repeating the last value (standardised units). A 1-D "
               f"CNN reading the amplitude of noisy sinusoids of 10–100 steps, zero-padded to a "
               f"common length, reaches test R² {r2_masked:.3f} (MSE {mse_masked:.4f}) with masked "
               f"global average pooling; averaging the padding in drops it to R² "
               f"{r2_unmasked:.3f} (MSE {mse_unmasked:.4f}, {mse_unmasked / mse_masked:.1f}× "
               f"worse), because every pooled feature is scaled by the signal's share of the "
               f"padded length, which the linear read-out cannot undo. A character-level causal "
               f"CNN trained with teacher "
               f"forcing on {n_chars:,} characters of {source} reaches {bits:.2f} bits per "
               f"character on held-out text (a unigram model: {unigram_bits:.2f}). Sampled one "
               f"character at a time it writes: “{sample.strip()[:220]}…”")
    return Result(metrics, summary, checks)
