"""Chapter 7: convolutional layers — a CNN on digits, its filters, how the receptive
field grows with depth, and translation equivariance/invariance measured."""

from __future__ import annotations

import numpy as np

import wonderland as wl
from wonderland import nn

from .base import Check, Result, seeds
from .common import accuracy
from .plotting import COLORS, explained, plt


def digits_images(seed):
    x, y = wl.data.load_digits()
    x = (x / 16.0).reshape(-1, 8, 8, 1)
    return wl.data.train_test_split(x, y, test_size=0.25, stratify=y, generator=wl.random.Generator(seed))


def make_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 2 * 2, 10))


def train_cnn(ctx, epochs):
    x_tr, x_te, y_tr, y_te = digits_images(ctx.seed)
    wl.random.seed(ctx.seed)
    model = make_cnn()
    loader = wl.data.DataLoader(wl.data.TensorDataset(x_tr, y_tr), 32, shuffle=True,
                                generator=wl.random.Generator(ctx.seed),
                                transform=wl.data.RandomTranslate(1, generator=wl.random.Generator(ctx.seed)))
    opt = wl.optim.AdamW(model.parameters(), 3e-3, weight_decay=1e-3)
    trainer = wl.train.Trainer(model, opt, nn.functional.cross_entropy,
                               scheduler=wl.optim.CosineAnnealingLR(opt, epochs), progress=False)
    trainer.fit(loader, epochs)
    return model, accuracy(model, x_te, y_te), x_te


def empirical_receptive_field(layers, size=33):
    """Width of the input region that influences the centre output, by autodiff."""
    wl.random.seed(0)
    net = nn.Sequential(*layers).double()
    x = wl.zeros((1, size, size, 1), dtype=wl.float64)
    out = net(x)
    c = out.shape[1] // 2
    g = wl.grad(lambda v: net(v)[0, c, c].sum())(x + 0.1)
    rows = np.flatnonzero(np.abs(g.numpy()[0, :, :, 0]).sum(1) > 0)
    return int(rows.max() - rows.min() + 1)


def run(ctx) -> Result:
    ctx.status("training a CNN on digits")
    model, acc, x_te = train_cnn(ctx, ctx.pick(25, 12))

    ctx.status("receptive fields")
    depths = list(range(1, 9))
    stacks = {
        "3×3 convolutions": lambda d: [nn.Conv2d(1, 1, 3) for _ in range(d)],
        "3×3 + 2×2 pooling every 2 layers": lambda d: sum(
            ([nn.Conv2d(1, 1, 3)] + ([nn.MaxPool2d(2)] if i % 2 == 1 else []) for i in range(d)), []),
        "3×3 dilated 1, 2, 4, …": lambda d: [nn.Conv2d(1, 1, 3, dilation=2 ** i) for i in range(d)],
    }
    analytic = {k: [nn.receptive_field(nn.Sequential(*f(d)))[-1]["receptive_field"][0] for d in depths]
                for k, f in stacks.items()}
    measured = [empirical_receptive_field([nn.Conv2d(1, 1, 3) for _ in range(d)] + [nn.Tanh()])
                for d in range(1, 6)]
    rf_match = all(m == a for m, a in zip(measured, analytic["3×3 convolutions"]))

    ctx.status("equivariance and invariance")
    rng = np.random.default_rng(ctx.seed)
    img = np.zeros((1, 16, 16, 1), np.float32)
    img[0, 4:8, 3:8, 0] = rng.random((4, 5))
    shifted = np.roll(img, (3, 2), axis=(1, 2))
    conv = model[0]
    model.eval()
    with wl.no_grad():
        a = conv(wl.tensor(img)).numpy()
        b = conv(wl.tensor(shifted)).numpy()
        feats = model[:7]                      # conv-bn-relu-conv-bn-relu-(pool)
        fa = nn.functional.global_avg_pool(feats[:6](wl.tensor(img))).numpy()
        fb = nn.functional.global_avg_pool(feats[:6](wl.tensor(shifted))).numpy()
        pa = feats(wl.tensor(img)).numpy()
        pb = feats(wl.tensor(np.roll(img, (1, 1), axis=(1, 2)))).numpy()
    equi = float(np.abs(np.roll(a, (3, 2), axis=(1, 2)) - b).max())
    inv = float(np.abs(fa - fb).max())
    pool_change = float(np.abs(pa - pb).max())

    fig = ctx.figure("filters", "The 32 learned 3×3 filters of the first layer (red positive, "
                     "blue negative) and the responses of eight of them (after batch norm and "
                     "ReLU) to one test digit, shown as the input digit in grey.")
    fig.set_size_inches(10, 3.6)
    left, right = fig.subfigures(1, 2, width_ratios=[1.4, 1])
    w = model[0].weight.numpy()[:, :, 0, :]
    lim = np.abs(w).max()
    left_axes = left.subplots(4, 8).ravel()
    for i, ax in enumerate(left_axes):
        weights = ax.imshow(w[:, :, i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.axis("off")
    left.colorbar(weights, ax=left_axes.tolist(), shrink=0.8, label="filter weight")
    left.suptitle("first-layer filters", fontsize=9)
    with wl.no_grad():
        maps = model[:3](x_te[:1]).numpy()[0]
    top = float(maps[:, :, :8].max()) or 1.0
    axes = right.subplots(3, 3).ravel()
    explained(axes[0].imshow(x_te.numpy()[0, :, :, 0], cmap="gray_r"), "input digit")
    axes[0].set_title("input", fontsize=8)
    for i, ax in enumerate(axes[1:]):
        response = ax.imshow(maps[:, :, i], cmap="viridis", vmin=0, vmax=top)
    for ax in axes:
        ax.axis("off")
    right.colorbar(response, ax=axes.tolist(), shrink=0.8, label="response")
    right.suptitle("feature maps after layer 1", fontsize=9)
    ctx.save(fig)

    fig = ctx.figure("receptive", "Receptive field of one output against depth: linear growth "
                     "for stacked 3×3 convolutions, faster with pooling, exponential with "
                     "doubling dilations. Circles: measured by differentiating the centre "
                     "output with respect to the input.")
    ax = fig.add_subplot(111)
    for (name, values), c in zip(analytic.items(), COLORS):
        ax.plot(depths, values, "-", color=c, label=name)
    ax.plot(range(1, 6), measured, "o", color=COLORS[0], mfc="none", label="measured (autodiff)")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("layers")
    ax.set_ylabel("receptive field (pixels)")
    ax.legend(fontsize=8)
    ctx.save(fig)
    plt.close("all")

    metrics = {"cnn_digits_test_accuracy": acc, "receptive_field_8_plain": analytic["3×3 convolutions"][-1],
               "receptive_field_8_pooling": analytic["3×3 + 2×2 pooling every 2 layers"][-1],
               "receptive_field_8_dilated": analytic["3×3 dilated 1, 2, 4, …"][-1],
               "equivariance_max_abs_error": equi, "global_pool_invariance_max_abs_error": inv,
               "max_pool_change_under_shift": pool_change}
    checks = [ctx.check("CNN on digits, test accuracy", acc, 0.97,
                        seeds=(seeds(0.985, 0.998, 0.991, 0.0057),
                               seeds(0.985, 0.996, 0.989, 0.0052))),
              Check("measured receptive fields equal the formula (1 = yes)", float(rf_match), 1.0, ">="),
              Check("convolution commutes with translation (max abs error)", equi, 1e-5, "<="),
              Check("global pooling is invariant to translation (max abs error)", inv, 1e-5, "<=")]
    summary = (f"A small CNN (three 3×3 convolution layers with batch norm, two 2×2 max-poolings, "
               f"dropout, a linear head) reaches {acc:.1%} test accuracy on the 8×8 digits. Eight "
               f"stacked 3×3 convolutions see {analytic['3×3 convolutions'][-1]} pixels; with pooling "
               f"every second layer {analytic['3×3 + 2×2 pooling every 2 layers'][-1]}; with doubling "
               f"dilations {analytic['3×3 dilated 1, 2, 4, …'][-1]} — and differentiating the centre "
               f"output with respect to the input measures exactly the predicted width. Shifting "
               f"an image shifts the convolution's output by the same amount (error {equi:.1e}), "
               f"and global average pooling of the features does not change (error {inv:.1e}); a "
               f"2×2 max-pooling layer, by contrast, changes by up to {pool_change:.2f} under a "
               f"one-pixel shift: it is only locally invariant.")
    return Result(metrics, summary, checks)
