"""Losses: values and gradients against PyTorch (layouts permuted to channels last),
gradient checks in float64, the fused cross-entropy against its composite, errors."""

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn
from wonderland.nn import functional as F
from conftest import check_primitive, f64

R = np.random.default_rng(9)


def test_regression_losses_gradients():
    a, b = f64(R.standard_normal((3, 4))), f64(R.standard_normal((3, 4)))
    check_primitive(lambda x: F.mse_loss(x, b), a)
    check_primitive(lambda x: F.l1_loss(x, b, reduction="sum"), a, order=1)
    check_primitive(lambda x: F.huber_loss(x, b, reduction="none", delta=0.5), a, order=1)


def test_classification_losses_gradients():
    z = f64(R.standard_normal((5, 4)))
    t = wl.tensor(R.integers(0, 4, 5))
    check_primitive(lambda x: F.cross_entropy(x, t), z)
    check_primitive(lambda x: F.cross_entropy(x, t, label_smoothing=0.1, reduction="sum"), z)
    check_primitive(lambda x: F.nll_loss(F.log_softmax(x), t), z)
    y01 = f64(R.integers(0, 2, 6).astype(float))
    check_primitive(lambda x: F.binary_cross_entropy_with_logits(x, y01), f64(R.standard_normal(6)))
    check_primitive(lambda p: F.binary_cross_entropy(p, y01), f64(R.uniform(0.1, 0.9, 6)))
    p = wl.softmax(f64(R.standard_normal((3, 4))))
    check_primitive(lambda x: F.kl_div(F.log_softmax(x), p, reduction="batchmean"), z[:3])


def test_fused_cross_entropy_equals_composite():
    z = f64(R.standard_normal((6, 5)))
    t = R.integers(0, 5, 6)
    t[2] = -100
    w = f64(R.uniform(0.5, 2.0, 5))

    def composite(x):
        lp = F.log_softmax(x)
        picked = wl.take_along_axis(lp, wl.tensor(np.where(t < 0, 0, t)[:, None]), axis=1)[:, 0]
        wt = w.numpy()[np.where(t < 0, 0, t)] * (t >= 0)
        return -(picked * wl.tensor(wt)).sum() / wt.sum()

    fused = lambda x: F.cross_entropy(x, wl.tensor(t), weight=w)  # noqa: E731
    # a weighted mean of 6 positive terms in another order: ≤ ~10 roundings, relative ~1e-15
    assert fused(z).item() == pytest.approx(composite(z).item(), rel=1e-12)
    np.testing.assert_allclose(wl.grad(fused)(z).numpy(), wl.grad(composite)(z).numpy(), atol=1e-14)


def test_hinge_losses():
    s = f64([0.3, -2.0, 1.5])
    y = f64([1.0, -1.0, -1.0])
    assert F.hinge_loss(s, y, reduction="sum").item() == pytest.approx(0.7 + 0.0 + 2.5)
    with pytest.raises(ValueError, match="targets must be -1 or \\+1"):
        F.hinge_loss(s, f64([0.0, 1.0, 1.0]))
    check_primitive(lambda x: F.multi_margin_loss(x, wl.tensor([0, 2, 1])),
                    f64([[0.3, 0.9, -0.2], [1.0, 0.05, 0.6], [0.0, 0.4, 0.2]]), order=1)


def test_loss_errors():
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(3,\) and target shape \(4,\) differ"):
        F.mse_loss(wl.zeros(3), wl.zeros(4))
    with pytest.raises(ValueError, match="reduction must be"):
        F.mse_loss(wl.zeros(3), wl.zeros(3), reduction="avg")
    with pytest.raises(ValueError, match=r"target shape \(3,\) does not match the logits' leading shape \(2,\)"):
        F.cross_entropy(wl.zeros((2, 4)), wl.tensor([0, 1, 2]))
    with pytest.raises(IndexError, match="target 7 is out of range for 4 classes"):
        F.cross_entropy(wl.zeros((2, 4)), wl.tensor([0, 7]))
    with pytest.raises(ValueError, match="binary_cross_entropy: input must be probabilities"):
        F.binary_cross_entropy(wl.tensor([1.5]), wl.tensor([1.0]))
    with pytest.raises(TypeError, match="class targets must be integers"):
        F.nll_loss(wl.zeros((2, 3)), wl.tensor([0.0, 1.0]))


torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair(x):
    return wl.tensor(np.asarray(x, dtype=np.float64)), torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_pytorch(reduction):
    n, c = 6, 4
    logits = R.standard_normal((n, c))
    target = R.integers(0, c, n)
    target[1] = -100
    probs_t = R.dirichlet(np.ones(c), n)
    weight = R.uniform(0.5, 2, c)
    reg_a, reg_b = R.standard_normal((n, 3)), R.standard_normal((n, 3))
    p01 = R.uniform(0.05, 0.95, n)
    y01 = R.integers(0, 2, n).astype(float)
    cases = [
        (lambda x: F.cross_entropy(x, wl.tensor(target), reduction=reduction),
         lambda x: TF.cross_entropy(x, torch.tensor(target), reduction=reduction), logits),
        (lambda x: F.cross_entropy(x, wl.tensor(target), weight=wl.tensor(weight), label_smoothing=0.2,
                                   reduction=reduction),
         lambda x: TF.cross_entropy(x, torch.tensor(target), weight=torch.tensor(weight),
                                    label_smoothing=0.2, reduction=reduction), logits),
        (lambda x: F.cross_entropy(x, wl.tensor(probs_t), label_smoothing=0.1, reduction=reduction),
         lambda x: TF.cross_entropy(x, torch.tensor(probs_t), label_smoothing=0.1, reduction=reduction), logits),
        (lambda x: F.cross_entropy(x, wl.tensor(probs_t), weight=wl.tensor(weight), reduction=reduction),
         lambda x: TF.cross_entropy(x, torch.tensor(probs_t), weight=torch.tensor(weight), reduction=reduction), logits),
        (lambda x: F.nll_loss(x, wl.tensor(target), weight=wl.tensor(weight), reduction=reduction),
         lambda x: TF.nll_loss(x, torch.tensor(target), weight=torch.tensor(weight), reduction=reduction), logits),
        (lambda x: F.mse_loss(x, wl.tensor(reg_b), reduction=reduction),
         lambda x: TF.mse_loss(x, torch.tensor(reg_b), reduction=reduction), reg_a),
        (lambda x: F.l1_loss(x, wl.tensor(reg_b), reduction=reduction),
         lambda x: TF.l1_loss(x, torch.tensor(reg_b), reduction=reduction), reg_a),
        (lambda x: F.huber_loss(x, wl.tensor(reg_b), reduction=reduction, delta=0.7),
         lambda x: TF.huber_loss(x, torch.tensor(reg_b), reduction=reduction, delta=0.7), reg_a),
        (lambda x: F.smooth_l1_loss(x, wl.tensor(reg_b), reduction=reduction, beta=0.5),
         lambda x: TF.smooth_l1_loss(x, torch.tensor(reg_b), reduction=reduction, beta=0.5), reg_a),
        (lambda x: F.binary_cross_entropy(x, wl.tensor(y01), reduction=reduction),
         lambda x: TF.binary_cross_entropy(x, torch.tensor(y01), reduction=reduction), p01),
        (lambda x: F.binary_cross_entropy_with_logits(x, wl.tensor(y01), reduction=reduction,
                                                      pos_weight=wl.tensor(1.7)),
         lambda x: TF.binary_cross_entropy_with_logits(x, torch.tensor(y01), reduction=reduction,
                                                       pos_weight=torch.tensor(1.7)), logits[:, 0]),
        (lambda x: F.kl_div(x, wl.tensor(probs_t), reduction=reduction),
         lambda x: TF.kl_div(x, torch.tensor(probs_t), reduction=reduction), np.log(probs_t[::-1].copy())),
        (lambda x: F.multi_margin_loss(x, wl.tensor(np.where(target < 0, 0, target)), reduction=reduction),
         lambda x: TF.multi_margin_loss(x, torch.tensor(np.where(target < 0, 0, target)), reduction=reduction), logits),
    ]
    for i, (ours, theirs, inp) in enumerate(cases):
        xw, xt = _pair(inp)
        out, pullback = wl.vjp(ours, xw)
        ref = theirs(xt)
        # PyTorch's formulas: a few roundings per element and a sum of ≤ 24 of them, ~1e-15
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"case {i}: value")
        ct = R.standard_normal(ref.shape)
        (g,) = pullback(wl.tensor(ct))
        ref.backward(torch.tensor(ct))
        np.testing.assert_allclose(g.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"case {i}: gradient")


@pytest.mark.torch
def test_loss_modules_and_kl_batchmean_match_pytorch():
    p = R.dirichlet(np.ones(4), 3)
    lq = np.log(R.dirichlet(np.ones(4), 3))
    ours = nn.KLDivLoss(reduction="batchmean")(wl.tensor(lq), wl.tensor(p)).item()
    theirs = torch.nn.KLDivLoss(reduction="batchmean")(torch.tensor(lq), torch.tensor(p)).item()
    assert ours == pytest.approx(theirs)
    z = R.standard_normal((4, 3))
    t = R.integers(0, 3, 4)
    assert nn.CrossEntropyLoss(label_smoothing=0.05)(wl.tensor(z), wl.tensor(t)).item() == pytest.approx(
        torch.nn.CrossEntropyLoss(label_smoothing=0.05)(torch.tensor(z), torch.tensor(t)).item())
    assert nn.BCEWithLogitsLoss()(wl.tensor(z), wl.tensor((z > 0).astype(float))).item() == pytest.approx(
        torch.nn.BCEWithLogitsLoss()(torch.tensor(z), torch.tensor((z > 0).astype(float))).item())
