"""Distributions: log-probabilities, entropies and KL against PyTorch and closed forms,
reparameterised gradients, maximum likelihood, Monte Carlo."""

import math

import numpy as np
import pytest

import wonderland as wl
from wonderland import distributions as D
from conftest import f64

R = np.random.default_rng(4)


def test_normal_log_prob_cdf_entropy():
    d = D.Normal(f64([0.5, -1.0]), f64([1.5, 0.3]))
    x = f64([0.2, -0.9])
    expected = -0.5 * ((x.numpy() - [0.5, -1.0]) / [1.5, 0.3]) ** 2 - np.log([1.5, 0.3]) - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(d.log_prob(x).numpy(), expected)
    assert D.Normal(0.0, 1.0).cdf(f64(0.0)).item() == pytest.approx(0.5)
    np.testing.assert_allclose(d.entropy().numpy(), 0.5 + 0.5 * math.log(2 * math.pi) + np.log([1.5, 0.3]))
    with pytest.raises(ValueError, match="scale must be positive"):
        D.Normal(0.0, -1.0)


def test_reparameterised_samples_carry_gradients():
    mu = f64(0.3)
    sigma = f64(1.2)

    def mc_mean_sq(m, s):
        return (D.Normal(m, s).rsample((20000,), generator=wl.random.Generator(0)) ** 2).mean()

    gm, gs = wl.grad(mc_mean_sq, argnums=(0, 1))(mu, sigma)   # d/dθ E[x²] = (2μ, 2σ)
    assert gm.item() == pytest.approx(0.6, abs=0.05)
    assert gs.item() == pytest.approx(2.4, abs=0.08)
    s = D.Normal(0.0, 1.0).sample((3,))
    assert not s.requires_grad
    with pytest.raises(NotImplementedError, match="no reparameterised sampler"):
        D.Bernoulli(probs=0.3).rsample()


def test_maximum_likelihood_recovers_parameters():
    g = wl.random.Generator(1)
    x = D.Normal(2.0, 0.5).sample((20000,), generator=g)
    fit = D.fit_normal(x)
    assert fit.loc.item() == pytest.approx(2.0, abs=0.02)
    assert fit.scale.item() == pytest.approx(0.5, abs=0.02)
    b = D.Bernoulli(probs=0.3).sample((20000,), generator=g)
    assert D.fit_bernoulli(b).probs.item() == pytest.approx(0.3, abs=0.015)
    c = D.Categorical(probs=f64([0.2, 0.5, 0.3])).sample((20000,), generator=g)
    np.testing.assert_allclose(D.fit_categorical(c, 3).probs.numpy(), [0.2, 0.5, 0.3], atol=0.015)
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    mv = D.MultivariateNormal(f64([1.0, -1.0]), f64(cov)).sample((20000,), generator=g)
    fit_mv = D.fit_multivariate_normal(mv)
    np.testing.assert_allclose(fit_mv.covariance_matrix.numpy(), cov, atol=0.06)

    # maximum likelihood by gradient ascent on the log-likelihood
    params = {"mu": f64(0.0), "log_sigma": f64(0.0)}
    for _ in range(300):
        grads = wl.grad(lambda p: -D.Normal(p["mu"], wl.exp(p["log_sigma"])).log_prob(x).mean())(params)
        params = {k: v - 0.1 * grads[k] for k, v in params.items()}
    assert params["mu"].item() == pytest.approx(fit.loc.item(), abs=1e-3)
    assert math.exp(params["log_sigma"].item()) == pytest.approx(fit.scale.item(), abs=1e-3)


def test_monte_carlo_kl_agrees_with_closed_form():
    p, q = D.Normal(0.3, 1.1), D.Normal(-0.5, 0.8)
    exact = D.kl_divergence(p, q).item()
    mc = D.kl_divergence(p, q, num_samples=200000, generator=wl.random.Generator(2)).item()
    assert mc == pytest.approx(exact, rel=0.02)
    est = D.monte_carlo(lambda x: x * x, D.Normal(1.0, 2.0), 100000, wl.random.Generator(3))
    assert est.item() == pytest.approx(5.0, rel=0.03)


def test_mvn_gradients():
    cov = np.array([[1.5, 0.4], [0.4, 1.0]])
    x = f64(R.standard_normal((5, 2)))
    wl.testing.check_grads(lambda m, c: D.MultivariateNormal(m, covariance_matrix=(c + c.T) * 0.5).log_prob(x),
                           (f64([0.1, 0.2]), f64(cov)), order=2)


torch = pytest.importorskip("torch")
TD = torch.distributions


@pytest.mark.torch
def test_log_probs_entropies_and_kl_match_pytorch():
    x = R.standard_normal(4)
    t = torch.tensor
    pairs = [
        (D.Normal(f64(0.3), f64(1.7)), TD.Normal(t(0.3, dtype=torch.float64), t(1.7, dtype=torch.float64)), x),
        (D.Uniform(f64(-1.0), f64(2.0)), TD.Uniform(t(-1.0, dtype=torch.float64), t(2.0, dtype=torch.float64)),
         np.clip(x, -0.9, 1.9)),
        (D.Bernoulli(logits=f64(0.4)), TD.Bernoulli(logits=t(0.4, dtype=torch.float64)), (x > 0).astype(float)),
        (D.Categorical(logits=f64([0.1, 1.2, -0.3])), TD.Categorical(logits=t([0.1, 1.2, -0.3], dtype=torch.float64)),
         np.array([0, 2, 1, 1])),
    ]
    # closed forms of a few operations each, written differently: a few ulps; 1e-10 relative
    for ours, theirs, v in pairs:
        np.testing.assert_allclose(ours.log_prob(wl.tensor(v)).numpy(), theirs.log_prob(t(v)).numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.entropy().numpy(), theirs.entropy().numpy(), rtol=1e-10)
        if not isinstance(ours, D.Categorical):      # PyTorch leaves a categorical's mean undefined
            np.testing.assert_allclose(ours.mean.numpy(), theirs.mean.numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours.variance.numpy(), theirs.variance.numpy(), rtol=1e-10)
    a, b = np.array([[2.0, 0.3], [0.3, 1.0]]), np.array([[1.0, -0.2], [-0.2, 0.5]])
    mw = D.MultivariateNormal(f64([0.1, 0.2]), f64(a))
    mt = TD.MultivariateNormal(t([0.1, 0.2], dtype=torch.float64), t(a))
    pts = R.standard_normal((3, 2))
    # 2×2 Cholesky factor and solve (condition number ~2): a few ulps either way
    np.testing.assert_allclose(mw.log_prob(f64(pts)).numpy(), mt.log_prob(t(pts)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(mw.entropy().numpy(), mt.entropy().numpy(), rtol=1e-10)
    mp = D.MultivariateNormal(f64([0.1, 0.2]), precision_matrix=f64(np.linalg.inv(a)))
    # through the inverse of the precision matrix: a few more roundings
    np.testing.assert_allclose(mp.log_prob(f64(pts)).numpy(), mt.log_prob(t(pts)).numpy(), rtol=1e-9)
    kl_pairs = [
        ((D.Normal(f64(0.5), f64(1.5)), D.Normal(f64(-1.0), f64(0.7))),
         (TD.Normal(t(0.5), t(1.5)), TD.Normal(t(-1.0), t(0.7)))),
        ((D.Bernoulli(probs=f64(0.3)), D.Bernoulli(probs=f64(0.6))),
         (TD.Bernoulli(probs=t(0.3)), TD.Bernoulli(probs=t(0.6)))),
        ((D.Categorical(probs=f64([0.2, 0.8])), D.Categorical(probs=f64([0.5, 0.5]))),
         (TD.Categorical(probs=t([0.2, 0.8])), TD.Categorical(probs=t([0.5, 0.5])))),
        ((mw, D.MultivariateNormal(f64([-0.3, 0.4]), f64(b))),
         (mt, TD.MultivariateNormal(t([-0.3, 0.4], dtype=torch.float64), t(b)))),
        ((D.Uniform(f64(0.0), f64(1.0)), D.Uniform(f64(-1.0), f64(2.0))),
         (TD.Uniform(t(0.0), t(1.0)), TD.Uniform(t(-1.0), t(2.0)))),
    ]
    for (p, q), (tp, tq) in kl_pairs:
        assert D.kl_divergence(p, q).item() == pytest.approx(TD.kl_divergence(tp, tq).item(), rel=1e-6)
