"""Chapter 3: maximum likelihood and MAP, the generalisation gap, Bayesian regression."""

from __future__ import annotations

import numpy as np

import wonderland as wl

from .base import Result, seeds
from .plotting import COLORS, explained


def _poly(x, degree):
    return np.stack([x ** k for k in range(1, degree + 1)], 1)


def _target(x):
    return np.sin(2 * np.pi * x)


def run(ctx) -> Result:
    rng = np.random.default_rng(ctx.seed + 3)
    n_train = 12
    x_tr = np.sort(rng.uniform(0, 1, n_train))
    y_tr = _target(x_tr) + 0.2 * rng.standard_normal(n_train)
    x_te = rng.uniform(x_tr.min(), x_tr.max(), 500)       # interpolation, no extrapolation
    y_te = _target(x_te) + 0.2 * rng.standard_normal(500)

    ctx.status("train/test error against model size")
    degrees = list(range(0, 12))
    train_err, test_err = [], []
    for d in degrees:
        if d == 0:
            pred_tr, pred_te = np.full(n_train, y_tr.mean()), np.full(500, y_tr.mean())
        else:
            w, b = wl.models.least_squares(_poly(x_tr, d), y_tr)
            pred_tr = _poly(x_tr, d) @ w.numpy() + b.item()
            pred_te = _poly(x_te, d) @ w.numpy() + b.item()
        train_err.append(float(np.mean((pred_tr - y_tr) ** 2)))
        test_err.append(float(np.mean((pred_te - y_te) ** 2)))

    ctx.status("MLE against MAP")
    degree = 9
    w_mle, b_mle = wl.models.least_squares(_poly(x_tr, degree), y_tr)
    lam = 1e-3                       # Gaussian prior on w: ridge with lambda = alpha / beta
    w_map, b_map = wl.models.least_squares(_poly(x_tr, degree), y_tr, l2=lam)
    mse = lambda w, b: float(np.mean((_poly(x_te, degree) @ w.numpy() + b.item() - y_te) ** 2))  # noqa: E731
    mle_test, map_test = mse(w_mle, b_mle), mse(w_map, b_map)

    ctx.status("Bayesian linear regression")
    alpha, beta = 0.5, 1 / 0.2 ** 2
    centres = np.linspace(0, 1, 12)
    feats = lambda x: np.exp(-0.5 * ((x[:, None] - centres) / 0.08) ** 2)  # noqa: E731  RBF features
    x_gap = np.concatenate([rng.uniform(0.0, 0.35, 10), rng.uniform(0.65, 1.0, 10)])
    y_gap = _target(x_gap) + 0.2 * rng.standard_normal(20)
    blr = wl.models.BayesianLinearRegression(alpha, beta).fit(feats(x_gap), y_gap)
    grid = np.linspace(-0.05, 1.05, 300)
    mu, sd = blr.predict(feats(grid), return_std=True)
    mu, sd = mu.numpy(), sd.numpy()
    mu_te, sd_te = (t.numpy() for t in blr.predict(feats(x_te), return_std=True))
    coverage = float(np.mean(np.abs(y_te - mu_te) <= 2 * sd_te))
    sd_gap = float(sd[np.argmin(np.abs(grid - 0.5))])
    sd_data = float(sd[np.argmin(np.abs(grid - 0.15))])

    fig = ctx.figure("gap", "Training error keeps falling as the polynomial degree grows, "
                     "while the test error turns up: the generalisation gap.")
    ax = fig.add_subplot(111)
    ax.semilogy(degrees, train_err, "-o", color=COLORS[0], label="train MSE")
    ax.semilogy(degrees, test_err, "-o", color=COLORS[1], label="test MSE")
    ax.set_xlabel("polynomial degree (model size)")
    ax.set_ylabel("mean squared error")
    ax.legend()
    ctx.save(fig)

    fig = ctx.figure("bayes", "Bayesian linear regression (12 Gaussian bump features): predictive mean "
                     "and ±2 standard deviations, with five posterior samples (thin lines); the band widens "
                     "where there are no data.")
    ax = fig.add_subplot(111)
    ax.fill_between(grid, mu - 2 * sd, mu + 2 * sd, color=COLORS[0], alpha=0.2, label="±2 sd")
    ax.plot(grid, mu, color=COLORS[0], label="predictive mean")
    for k, f in enumerate(blr.sample_functions(feats(grid), n=5, generator=wl.random.Generator(ctx.seed)).numpy()):
        line, = ax.plot(grid, f, color=COLORS[0], lw=0.5, alpha=0.6,
                        label="posterior samples" if k == 0 else None)
        if k:
            explained(line, "posterior samples")
    ax.plot(grid, _target(grid), "--", color="#444444", lw=1, label="true function")
    ax.plot(x_gap, y_gap, "o", color=COLORS[1], ms=4, label="data")
    ax.set_ylim(-2.5, 2.5)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=8, loc="lower left")
    ctx.save(fig)

    best = int(np.argmin(test_err))
    noise = 0.2 ** 2                      # the variance of the noise: no model can beat it
    metrics = {"mle_test_mse": mle_test, "map_test_mse": map_test, "best_degree": best,
               "best_test_mse": test_err[best], "noise_variance": noise,
               "test_mse_degree1_over_best": test_err[1] / test_err[best],
               "train_mse_degree11": train_err[-1], "test_mse_degree11": test_err[-1],
               "bayes_coverage_2sd": coverage, "bayes_sd_in_gap": sd_gap, "bayes_sd_near_data": sd_data}
    checks = [ctx.check("MAP (weight decay) has lower test error than MLE at degree 9", map_test,
                        mle_test, op="<",
                        seeds=seeds(0.0596, 0.096, 0.0719, 0.0144, "threshold: the MLE fit's test "
                                    "MSE in the same run")),
              # the ratio is at least 1 by the definition of "best": mean − 3 sd (1.09)
              # would check nothing, so the threshold sits below the lowest seed instead
              ctx.check("too small a model underfits: a straight line's test MSE over the best "
                        "degree's", test_err[1] / test_err[best], 2.0,
                        seeds=seeds(2.45, 4.66, 3.69, 0.87, "threshold: lowest − 0.45")),
              ctx.check("the best degree generalises down to the noise: its test MSE over the "
                        "noise variance 0.04", test_err[best] / noise, 2.1, op="<=",
                        seeds=seeds(1.16, 1.75, 1.42, 0.22, "threshold: mean + 3 sd")),
              ctx.check("±2 sd predictive band covers test points", coverage, 0.85,
                        seeds=seeds(0.94, 0.992, 0.97, 0.019, "threshold 0.85, below mean − 3 sd")),
              ctx.check("predictive sd in the data gap exceeds sd near data", sd_gap, sd_data,
                        op=">", seeds=seeds(1.33, 1.49, 1.43, 0.064, "threshold: the sd near "
                                            "the data in the same run"))]
    summary = (f"Fitting polynomials to 12 noisy samples of sin(2πx), the training error falls "
               f"monotonically with the degree while the test error is lowest at degree {best} "
               f"({test_err[best] / noise:.2f}× the noise variance, which no model can beat), "
               f"{test_err[1] / test_err[best]:.1f}× higher for a straight line (underfitting) "
               f"and {test_err[-1]:.3g} at degree 11, which interpolates the 12 points. At degree 9 the maximum-likelihood "
               f"fit reaches test MSE {mle_test:.3g}; the MAP fit under a Gaussian prior (ridge, "
               f"λ = {lam:g}) reaches {map_test:.3g}. Bayesian linear regression gives a predictive "
               f"band that covers {coverage:.0%} of test points at ±2 sd and is {sd_gap / sd_data:.1f}× "
               f"wider in the gap between the two clusters of data than next to them.")
    return Result(metrics, summary, checks)
