"""Chapter 4: linear models — least squares (closed form and gradient descent), ridge,
logistic and softmax regression, and the common losses."""

from __future__ import annotations

import numpy as np

import wonderland as wl

from .base import Check, Result, seeds
from .common import split_standardized, train_classifier
from .plotting import COLORS, explained


def _least_squares(ctx):
    x, y = wl.data.load_diabetes()
    x_tr, x_te, y_tr, y_te = split_standardized(x.astype(wl.float64), y.astype(wl.float64),
                                                seed=ctx.seed, stratify=False)
    w, b = wl.models.least_squares(x_tr, y_tr)
    model = wl.models.LinearRegression(x_tr.shape[1]).double()
    opt = wl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(ctx.pick(3000, 2000)):
        opt.zero_grad()
        wl.nn.functional.mse_loss(model(x_tr), y_tr).backward()
        opt.step()
    w_gd = model.linear.weight.numpy()[:, 0]
    diff = float(np.abs(w_gd - w.numpy()).max() / np.abs(w.numpy()).max())
    r2 = wl.metrics.r2_score(x_te @ w + b, y_te)
    lams = np.geomspace(1e-2, 1e4, 25)
    path = np.stack([wl.models.least_squares(x_tr, y_tr, l2=lam)[0].numpy() for lam in lams])
    ridge_r2 = [wl.metrics.r2_score(x_te @ wl.tensor(p) + y_tr.mean(), y_te) for p in path]
    return diff, r2, lams, path, ridge_r2


def run(ctx) -> Result:
    ctx.status("least squares: closed form and gradient descent")
    diff, r2, lams, path, ridge_r2 = _least_squares(ctx)

    ctx.status("logistic regression on breast cancer")
    x, y = wl.data.load_breast_cancer()
    x_tr, x_te, y_tr, y_te = split_standardized(x, y, seed=ctx.seed)
    wl.random.seed(ctx.seed)
    logreg = wl.models.LogisticRegression(x.shape[1])
    bce = lambda z, t: wl.nn.functional.binary_cross_entropy_with_logits(z, t.astype(z.dtype))  # noqa: E731
    acc_logistic, _ = train_classifier(logreg, x_tr, y_tr, x_te, y_te, ctx.pick(60, 40), lr=1e-2,
                                       batch_size=32, weight_decay=1e-3, seed=ctx.seed, loss=bce)

    ctx.status("softmax regression on digits")
    x, y = wl.data.load_digits()
    x_tr, x_te, y_tr, y_te = split_standardized(x, y, seed=ctx.seed)
    wl.random.seed(ctx.seed)
    softreg = wl.models.SoftmaxRegression(64, 10)
    acc_softmax, _ = train_classifier(softreg, x_tr, y_tr, x_te, y_te, ctx.pick(40, 25), lr=1e-2,
                                      batch_size=64, weight_decay=1e-4, seed=ctx.seed)

    fig = ctx.figure("ridge", "Ridge regression on the diabetes data: coefficients shrink "
                     "towards zero as λ grows (left: one line per coefficient of the 10 features); test R² "
                     "(right).")
    fig.set_size_inches(9, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    explained(ax1.semilogx(lams, path, lw=1), "one line per coefficient")
    ax1.set_xlabel("λ")
    ax1.set_ylabel("coefficient")
    explained(ax2.semilogx(lams, ridge_r2, color=COLORS[1]), "test R²")
    ax2.set_xlabel("λ")
    ax2.set_ylabel("test R²")
    ctx.save(fig)

    fig = ctx.figure("losses", "Regression losses as a function of the error, and the "
                     "classification losses as a function of the margin y·f(x).")
    fig.set_size_inches(9, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    e = wl.linspace(-3, 3, 301, dtype=wl.float64)
    zeros = wl.zeros_like(e)
    F = wl.nn.functional
    for (name, val), c in zip([("squared", F.mse_loss(e, zeros, "none")),
                               ("absolute", F.l1_loss(e, zeros, "none")),
                               ("Huber δ=1", F.huber_loss(e, zeros, "none", 1.0))], COLORS):
        ax1.plot(e.numpy(), val.numpy(), color=c, label=name)
    ax1.set_ylim(0, 4)
    ax1.set_xlabel("error e = y − f(x)")
    ax1.set_ylabel("loss")
    ax1.set_title("regression", fontsize=10)
    ax1.legend()
    ones = wl.ones_like(e)
    for (name, val), c in zip([("hinge", F.hinge_loss(e, ones, reduction="none")),
                               ("logistic", F.binary_cross_entropy_with_logits(e, ones, reduction="none")),
                               ("0-1", (e <= 0).astype(wl.float64))], COLORS):
        ax2.plot(e.numpy(), val.numpy(), color=c, label=name)
    ax2.set_xlabel("margin y·f(x)")
    ax2.set_ylabel("loss")
    ax2.set_title("classification (y = ±1)", fontsize=10)
    ax2.legend()
    ctx.save(fig)

    metrics = {"closed_vs_gd_max_rel_diff": diff, "least_squares_test_r2": r2,
               "logistic_breast_cancer_test_accuracy": acc_logistic,
               "softmax_digits_test_accuracy": acc_softmax}
    checks = [Check("closed-form and gradient-descent weights agree (max relative difference)", diff, 1e-4, "<="),
              ctx.check("logistic regression, breast cancer, test accuracy", acc_logistic, 0.92,
                        seeds=(seeds(0.951, 0.993, 0.973, 0.017),
                               seeds(0.958, 0.986, 0.972, 0.014, "threshold as a full run's, "
                                     "below mean − 3 sd"))),
              ctx.check("softmax regression, digits, test accuracy", acc_softmax, 0.93,
                        seeds=(seeds(0.956, 0.976, 0.968, 0.0075, "threshold 0.93, below mean − 3 sd"),
                               seeds(0.962, 0.969, 0.967, 0.0027, "threshold 0.93, below mean − 3 sd")))]
    summary = (f"On the diabetes data, least squares solved in closed form (SVD, no inverse) and "
               f"by gradient descent agree to a relative {diff:.1e}; the fit explains R² = {r2:.2f} "
               f"of the test variance. Logistic regression on the breast-cancer data reaches "
               f"{acc_logistic:.1%} test accuracy and softmax regression on the 8×8 digits "
               f"{acc_softmax:.1%}: linear models, trained with the stable cross-entropy on logits.")
    return Result(metrics, summary, checks)
