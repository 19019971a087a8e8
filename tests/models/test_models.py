"""Linear models, Bayesian linear regression and the universal-approximation network."""

import numpy as np
import pytest

import wonderland as wl
from wonderland import models
from conftest import f64

R = np.random.default_rng(8)


def _data(n=80, d=3, noise=0.1):
    x = R.standard_normal((n, d))
    w = np.array([1.5, -2.0, 0.5])[:d]
    return x, x @ w + 0.7 + noise * R.standard_normal(n)


def test_closed_form_and_gradient_descent_agree():
    x, y = _data()
    w, b = models.least_squares(f64(x), f64(y))
    design = np.c_[x, np.ones(len(x))]
    ref = np.linalg.lstsq(design, y, rcond=None)[0]
    # 80×4 design of condition 1.4: another solver agrees to ~κ² × 80 × 1.1e-16 ≈ 2e-14
    np.testing.assert_allclose(np.r_[w.numpy(), b.item()], ref, rtol=1e-10)
    model = models.LinearRegression(3).double()
    opt = wl.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        wl.nn.functional.mse_loss(model(f64(x)), f64(y)).backward()
        opt.step()
    np.testing.assert_allclose(model.linear.weight.numpy()[:, 0], w.numpy(), atol=1e-6)
    assert model.linear.bias.item() == pytest.approx(b.item(), abs=1e-6)


def test_ridge_matches_scikit_learn():
    from sklearn.linear_model import Ridge
    x, y = _data()
    for lam in (0.1, 10.0):
        w, b = models.least_squares(f64(x), f64(y), l2=lam)
        r = Ridge(alpha=lam).fit(x, y)
        np.testing.assert_allclose(w.numpy(), r.coef_, rtol=1e-8)
        assert b.item() == pytest.approx(r.intercept_)
    w_small, _ = models.least_squares(f64(x), f64(y), l2=1e6)
    assert np.abs(w_small.numpy()).max() < 0.05                   # shrinks to zero


def test_bayesian_linear_regression_posterior_and_map():
    x, y = _data(40, 1, noise=0.2)
    alpha, beta = 2.0, 25.0
    blr = models.BayesianLinearRegression(alpha, beta).fit(f64(x), f64(y))
    phi = np.c_[x, np.ones(len(x))]
    A = alpha * np.eye(2) + beta * phi.T @ phi
    m = beta * np.linalg.solve(A, phi.T @ y)
    # 2×2 systems of condition 1.5 over 40 points: solutions agree to ~1e-14
    np.testing.assert_allclose(blr.mean.numpy(), m, rtol=1e-10)
    xs = np.linspace(-3, 3, 7)[:, None]
    mu, sd = blr.predict(f64(xs), return_std=True)
    ps = np.c_[xs, np.ones(7)]
    np.testing.assert_allclose(sd.numpy() ** 2, 1 / beta + np.einsum("ij,jk,ik->i", ps, np.linalg.inv(A), ps), rtol=1e-10)
    assert sd.numpy()[0] > sd.numpy()[3] < sd.numpy()[-1]          # wider away from the data
    # MAP = ridge with lambda = alpha / beta (intercept penalised too here)
    ridge = np.linalg.solve(phi.T @ phi + (alpha / beta) * np.eye(2), phi.T @ y)
    np.testing.assert_allclose(blr.mean.numpy(), ridge, rtol=1e-10)
    samples = blr.sample_functions(f64(xs), n=200, generator=wl.random.Generator(0)).numpy()
    np.testing.assert_allclose(samples.mean(0), mu.numpy(), atol=0.05)
    assert np.isfinite(blr.log_evidence(f64(x), f64(y)))


def test_logistic_and_softmax_regression_shapes():
    lr = models.LogisticRegression(4)
    x = wl.random.normal((5, 4))
    assert lr(x).shape == (5,) and lr.predict(x).dtype == wl.int64
    sr = models.SoftmaxRegression(4, 3)
    np.testing.assert_allclose(sr.predict_proba(x).numpy().sum(1), 1.0, rtol=1e-6)
    assert sr.predict(x).shape == (5,)


def test_universal_approximation_error_falls_with_bins():
    g = lambda t: np.sin(2 * np.pi * t) + 0.5 * t  # noqa: E731
    xs = np.linspace(0, 1, 2001)[:, None]
    errors = []
    for m in (5, 20, 80):
        net = models.bump_network(g, m, dtype=wl.float64)
        assert net[0].weight.shape == (1, 2 * m)
        errors.append(np.abs(net(f64(xs)).numpy()[:, 0] - g(xs[:, 0])).mean())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02


def test_gradient_descent_path_and_momentum():
    f_grad = wl.grad(lambda v: (v[0] ** 2) + 10 * (v[1] ** 2))
    plain = models.gradient_descent(f_grad, f64([1.0, 1.0]), lr=0.05, steps=50)
    heavy = models.gradient_descent(f_grad, f64([1.0, 1.0]), lr=0.05, steps=50, momentum=0.8)
    assert plain.shape == (51, 2)
    assert np.linalg.norm(heavy[-1]) < np.linalg.norm(plain[-1])
