"""Chapter 5: fully-connected models — XOR, an MLP on digits, activations compared."""

from __future__ import annotations

import numpy as np

import wonderland as wl

from .base import Check, Result, seeds
from .common import accuracy, split_standardized, train_classifier
from .plotting import COLORS, explained


def _xor(ctx):
    x, y = wl.data.make_xor(400, noise=0.1, generator=wl.random.Generator(ctx.seed))
    wl.random.seed(ctx.seed)
    linear = wl.models.SoftmaxRegression(2, 2)
    acc_linear, _ = train_classifier(linear, x, y, x, y, 60, lr=0.05, batch_size=32, seed=ctx.seed)
    wl.random.seed(ctx.seed)
    mlp = wl.nn.MLP([2, 16, 2], activation="tanh")
    acc_mlp, _ = train_classifier(mlp, x, y, x, y, 60, lr=0.05, batch_size=32, seed=ctx.seed)
    return x, y, linear, mlp, acc_linear, acc_mlp


def run(ctx) -> Result:
    ctx.status("XOR: linear model against MLP")
    x_xor, y_xor, linear, mlp, acc_linear, acc_mlp = _xor(ctx)

    ctx.status("MLP on digits")
    x, y = wl.data.load_digits()
    x_tr, x_te, y_tr, y_te = split_standardized(x, y, seed=ctx.seed)
    wl.random.seed(ctx.seed)
    net = wl.nn.MLP([64, 256, 256, 10], activation="relu", dropout=0.2)
    acc_digits, _ = train_classifier(net, x_tr, y_tr, x_te, y_te, ctx.pick(40, 30), lr=1e-3,
                                     batch_size=64, weight_decay=1e-4, seed=ctx.seed)

    ctx.status("activations compared")
    names = ["relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "tanh", "sigmoid"]
    epochs = ctx.pick(15, 8)
    curves = {}
    for name in names:
        wl.random.seed(ctx.seed)
        model = wl.nn.MLP([64, 64, 64, 10], activation=name)
        _, curves[name] = train_classifier(model, x_tr, y_tr, x_te, y_te, epochs, lr=1e-3,
                                           batch_size=64, seed=ctx.seed, record=True)

    fig = ctx.figure("xor", "XOR: a linear classifier cannot separate the classes (left); an "
                     "MLP with one hidden layer of 16 tanh units can (right). Points: the training data, "
                     "coloured by class; shading: the predicted probability of class 1 (colour bar).")
    fig.set_size_inches(9, 4)
    fig.set_layout_engine("constrained")            # room for the colour bar
    grid = np.linspace(-0.5, 1.5, 150)
    gx, gy = np.meshgrid(grid, grid)
    pts = wl.tensor(np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32))
    for ax, model, title in zip(fig.subplots(1, 2), [linear, mlp],
                                [f"linear: {acc_linear:.0%}", f"MLP: {acc_mlp:.0%}"]):
        with wl.no_grad():
            p = wl.softmax(model(pts)).numpy()[:, 1].reshape(gx.shape)
        shading = explained(ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 21), cmap="RdBu_r",
                                        alpha=0.6), "shading")
        explained(ax.scatter(x_xor.numpy()[:, 0], x_xor.numpy()[:, 1], c=y_xor.numpy(),
                             cmap="RdBu_r", s=6, edgecolors="k", linewidths=0.2), "points")
        ax.set_title(title)
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        ax.set_aspect("equal")
    fig.colorbar(shading, ax=fig.axes, shrink=0.8, label="P(class 1)", ticks=[0, 0.5, 1])
    ctx.save(fig)

    fig = ctx.figure("activations", "Test accuracy on digits per epoch for a 64-64-64-10 MLP "
                     "with each activation (same data, seed and optimiser): every curve in "
                     "full (left) and the top of the range enlarged (right).")
    fig.set_size_inches(10, 4)
    full, zoom = fig.subplots(1, 2)
    for (name, curve), c in zip(curves.items(), COLORS):
        for ax in (full, zoom):
            ax.plot(range(1, epochs + 1), curve, "-o", ms=2, color=c,
                    label=f"{name} ({curve[-1]:.1%})")
    top = max(max(curve) for curve in curves.values())
    full.set_ylim(0.0, 1.0)
    zoom.set_ylim(top - 0.1, min(1.0, top + 0.01))
    for ax, title in ((full, "all epochs and activations"), (zoom, "enlarged: the best 10 points")):
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.set_title(title, fontsize=10)
    full.legend(fontsize=7, ncol=2, loc="lower right")
    ctx.save(fig)

    final = {k: v[-1] for k, v in curves.items()}
    metrics = {"xor_linear_accuracy": acc_linear, "xor_mlp_accuracy": acc_mlp,
               "mlp_digits_test_accuracy": acc_digits,
               **{f"activation_{k}_test_accuracy": v for k, v in final.items()}}
    checks = [Check("MLP solves XOR (training accuracy)", acc_mlp, 1.0, ">="),
              ctx.check("a linear model cannot (training accuracy)", acc_linear, 0.85, op="<",
                        seeds=seeds(0.443, 0.685, 0.575, 0.088, "threshold: mean + 3 sd")),
              ctx.check("MLP on digits, test accuracy", acc_digits, 0.97, 0.96,
                        seeds=(seeds(0.980, 0.989, 0.984, 0.004, "threshold 0.97, below mean − 3 sd"),
                               seeds(0.976, 0.989, 0.983, 0.0049)))]
    best = max(final, key=final.get)
    worst = min(final, key=final.get)
    summary = (f"XOR is not linearly separable: softmax regression stays at {acc_linear:.0%} "
               f"training accuracy while an MLP with 16 hidden tanh units reaches {acc_mlp:.0%}. "
               f"An MLP 64-256-256-10 with ReLU and dropout 0.2 reaches {acc_digits:.1%} test "
               f"accuracy on the digits. Comparing activations on the same network and budget, "
               f"{best} ends highest ({final[best]:.1%}) and {worst} lowest ({final[worst]:.1%}): "
               f"saturating functions learn more slowly.")
    return Result(metrics, summary, checks)


__all__ = ["run", "accuracy"]
