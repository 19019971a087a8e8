"""Normalisation: fused primitives against their composites, gradients in float64,
PyTorch parity (running statistics included), channel dropout."""

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn
from wonderland.nn import functional as F
from wonderland.ops.norm import normalize, rms_normalize
from conftest import check_primitive, f64

R = np.random.default_rng(31)


def r(*shape):
    return f64(R.standard_normal(shape))


@pytest.mark.parametrize("axes", [(0,), (1,), (0, 2), (1, 2)])
def test_normalize_primitive_matches_composite(axes):
    x = r(4, 3, 5)
    composite = lambda t: (t - t.mean(axes, keepdims=True)) / wl.sqrt(t.var(axes, keepdims=True) + 1e-5)  # noqa: E731
    np.testing.assert_allclose(normalize(x, axes).numpy(), composite(x).numpy(), atol=1e-12)
    for a, b in zip(wl.jacrev(lambda t: normalize(t, axes))(x).numpy().ravel(),
                    wl.jacrev(composite)(x).numpy().ravel()):
        assert a == pytest.approx(b, abs=1e-10)
    check_primitive(lambda t: normalize(t, axes), x)
    rms = lambda t: t / wl.sqrt((t * t).mean(axes, keepdims=True) + 1e-6)  # noqa: E731
    np.testing.assert_allclose(rms_normalize(x, axes).numpy(), rms(x).numpy(), atol=1e-12)
    np.testing.assert_allclose(wl.jacrev(lambda t: rms_normalize(t, axes))(x).numpy(),
                               wl.jacrev(rms)(x).numpy(), atol=1e-10)
    check_primitive(lambda t: rms_normalize(t, axes), x)


def test_layer_group_rms_norm_gradients():
    x, w, b = r(2, 3, 4), r(4), r(4)
    check_primitive(lambda t, a, c: F.layer_norm(t, 4, a, c), x, w, b)
    check_primitive(lambda t, a, c: F.group_norm(t, 2, a, c), r(2, 3, 3, 4), w, b)
    check_primitive(lambda t, a: F.rms_norm(t, (3, 4), a), x, r(3, 4))
    rm, rv = wl.zeros(4, dtype=wl.float64), wl.ones(4, dtype=wl.float64)
    check_primitive(lambda t, a, c: F.batch_norm(t, rm, rv, a, c, training=True), r(5, 2, 4), w, b)


def test_batch_norm_train_and_eval():
    bn = nn.BatchNorm2d(3).double()
    x = r(8, 4, 4, 3) * 2 + 1
    y = bn(x).numpy()
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.std((0, 1, 2)), 1, atol=1e-4)
    n = 8 * 4 * 4
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * x.numpy().mean((0, 1, 2)))
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * x.numpy().var((0, 1, 2)) * n / (n - 1))
    bn.eval()
    z = bn(x).numpy()
    expected = (x.numpy() - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5)
    np.testing.assert_allclose(z, expected)
    assert int(bn.num_batches_tracked.item()) == 1
    assert "running_mean" in bn.state_dict() and "num_batches_tracked" in bn.state_dict()
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.BatchNorm1d(3)(wl.ones((1, 3)))


def test_channel_dropout_drops_whole_channels():
    x = wl.ones((4, 5, 5, 8))
    y = F.channel_dropout(x, 0.5, generator=wl.random.Generator(0)).numpy()
    per_channel = y.reshape(4, 25, 8)
    assert np.all(per_channel.min(1) == per_channel.max(1))      # constant over space
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert nn.Dropout2d(0.5).eval()(x) is x


def test_norm_errors():
    with pytest.raises(ValueError, match="does not end with normalized_shape"):
        F.layer_norm(wl.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="must be positive and divide the 6 channels"):
        F.group_norm(wl.zeros((2, 6)), 4)
    with pytest.raises(ValueError, match="input has 4 channels"):
        nn.BatchNorm2d(3)(wl.zeros((2, 2, 2, 4)))


torch = pytest.importorskip("torch")


@pytest.mark.torch
def test_norms_match_pytorch():
    x = R.standard_normal((6, 5, 4, 8))
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    bn = nn.BatchNorm2d(8).double()
    tbn = torch.nn.BatchNorm2d(8).double()
    w, b = R.standard_normal(8), R.standard_normal(8)
    bn.weight.data[...] = w
    bn.bias.data[...] = b
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(w))
        tbn.bias.copy_(torch.tensor(b))
    for _ in range(3):
        out, pullback = wl.vjp(lambda t: bn(t), f64(x))
        ref = tbn(xt)
    np.testing.assert_allclose(out.numpy(), np.moveaxis(ref.detach().numpy(), 1, -1), atol=1e-10)
    np.testing.assert_allclose(bn.running_mean.numpy(), tbn.running_mean.numpy(), atol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), tbn.running_var.numpy(), atol=1e-12)
    ct = R.standard_normal(out.shape)
    (g,) = pullback(f64(ct))
    ref.backward(torch.tensor(np.moveaxis(ct, -1, 1)))
    np.testing.assert_allclose(g.numpy(), np.moveaxis(xt.grad.numpy(), 1, -1), atol=1e-10)
    bn.eval()
    tbn.eval()
    np.testing.assert_allclose(bn(f64(x)).numpy(), np.moveaxis(tbn(xt).detach().numpy(), 1, -1), atol=1e-10)

    y = R.standard_normal((3, 7, 8))
    yt = torch.tensor(y)
    np.testing.assert_allclose(F.layer_norm(f64(y), 8, f64(w), f64(b)).numpy(),
                               torch.nn.functional.layer_norm(yt, (8,), torch.tensor(w), torch.tensor(b)).numpy(), atol=1e-12)
    np.testing.assert_allclose(
        F.group_norm(f64(x), 4, f64(w), f64(b)).numpy(),
        np.moveaxis(torch.nn.functional.group_norm(torch.tensor(np.moveaxis(x, -1, 1)), 4, torch.tensor(w), torch.tensor(b)).numpy(), 1, -1),
        atol=1e-12)
    np.testing.assert_allclose(F.rms_norm(f64(y), 8, f64(w), eps=1e-6).numpy(),
                               torch.nn.functional.rms_norm(yt, (8,), torch.tensor(w), eps=1e-6).numpy(), atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("module,shape", [
    ("BatchNorm1d", (0, 3)), ("BatchNorm1d", (0, 5, 3)), ("BatchNorm1d", (2, 0, 3)),
    ("BatchNorm1d", (1, 0, 3)), ("BatchNorm2d", (0, 2, 2, 3)),
])
def test_batch_norm_of_an_empty_batch_matches_pytorch(module, shape):
    bn = getattr(nn, module)(3).double()
    tbn = getattr(torch.nn, module)(3).double()
    w, b = R.standard_normal(3), R.standard_normal(3)
    bn.weight.data[...] = w
    bn.bias.data[...] = b
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(w))
        tbn.bias.copy_(torch.tensor(b))
    x = R.standard_normal(shape)
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    out, pullback = wl.vjp(lambda t, s, c: F.batch_norm(t, bn.running_mean, bn.running_var, s, c,
                                                        training=True), f64(x), bn.weight, bn.bias)
    ref = tbn(xt)
    assert out.shape == shape
    ref.sum().backward()
    gx, gw, gb = pullback(wl.ones(shape, dtype=wl.float64))
    assert gx.shape == shape
    np.testing.assert_array_equal(gw.numpy(), tbn.weight.grad.numpy())
    np.testing.assert_array_equal(gb.numpy(), tbn.bias.grad.numpy())
    # the module form: running statistics unchanged, the batch counted, as in PyTorch
    assert bn(f64(x)).shape == shape
    np.testing.assert_array_equal(bn.running_mean.numpy(), tbn.running_mean.numpy())
    np.testing.assert_array_equal(bn.running_var.numpy(), tbn.running_var.numpy())
    assert int(bn.num_batches_tracked.item()) == int(tbn.num_batches_tracked.item()) == 1
    check_primitive(lambda t, s, c: F.batch_norm(t, None, None, s, c, training=True),
                    f64(x), f64(w), f64(b))
    bn.eval()
    assert bn(f64(x)).shape == shape


@pytest.mark.torch
@pytest.mark.parametrize("module,shape", [("BatchNorm1d", (1, 3)), ("BatchNorm1d", (1, 1, 3)),
                                          ("BatchNorm2d", (1, 1, 1, 3))])
def test_batch_norm_of_one_value_per_channel_in_training_is_an_error_as_in_pytorch(module, shape):
    tbn = getattr(torch.nn, module)(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        tbn(torch.zeros((shape[0], 3) + shape[1:-1]))
    bn = getattr(nn, module)(3)
    with pytest.raises(ValueError, match=r"batch_norm: need more than one value per channel in "
                                         r"training, got input of shape \(1, "):
        bn(wl.zeros(shape))
    bn.eval()
    assert bn(wl.zeros(shape)).shape == shape         # at inference one value is enough


def test_fused_scale_and_shift_equal_the_composite_and_differentiate():
    from conftest import check_primitive
    from wonderland.ops.norm import normalize, rms_normalize

    rng = np.random.default_rng(4)
    x = wl.tensor(rng.standard_normal((3, 2, 5)))
    w = wl.tensor(rng.standard_normal(5))
    b = wl.tensor(rng.standard_normal(5))
    axes = (2,)
    # the fused forward is normalize's, then × w and + b in place: the same operations in order
    np.testing.assert_allclose(normalize(x, axes, 1e-5, w, b).numpy(),
                               (normalize(x, axes, 1e-5) * w + b).numpy(), rtol=1e-12)
    np.testing.assert_allclose(rms_normalize(x, axes, 1e-6, w).numpy(),
                               (rms_normalize(x, axes, 1e-6) * w).numpy(), rtol=1e-12)
    check_primitive(lambda v, s, t: normalize(v, axes, 1e-5, s, t), x, w, b)
    check_primitive(lambda v, s: rms_normalize(v, axes, 1e-6, s), x, w)
    # the node keeps the input and the statistics, not the normalised values
    xs = x.detach().requires_grad_()
    y = normalize(xs, axes, 1e-5, w.detach().requires_grad_(), b)
    kept = y.grad_fn.saved_arrays()
    assert sum(a.size for a in kept) == x.size + w.size + 2 * 3 * 2
