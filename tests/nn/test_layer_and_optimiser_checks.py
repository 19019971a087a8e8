"""Layers, optimisers, schedules and linear algebra reject bad arguments early, with a
message naming the operation, what it got and what it expected; one padding rule for
every rank; one tie convention for max pooling; pooling indices as in PyTorch."""

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn, optim
from wonderland.nn import functional as F



@pytest.mark.parametrize("make,error,pattern", [
    (lambda: nn.Conv2d(3, 8, 0), ValueError, "Conv2d: kernel_size must be positive, got 0"),
    (lambda: nn.Conv2d(3, 8, -1), ValueError, "Conv2d: kernel_size must be positive, got -1"),
    (lambda: nn.Conv2d(3, 8, 2.5), TypeError, "Conv2d: kernel_size must be an int or 2 ints"),
    (lambda: nn.Conv2d(3, 8, 3, padding="bogus"), ValueError,
     "Conv2d: padding must be an int .* got 'bogus'"),
    (lambda: nn.Conv2d(3, 8, 3, padding=-1), ValueError,
     "Conv2d: padding must be non-negative, got -1"),
    (lambda: nn.Conv2d(3, 8, 3, stride=0), ValueError, "Conv2d: stride must be positive"),
    (lambda: nn.Conv2d(3, 8, 3, dilation=(1, 0)), ValueError, "Conv2d: dilation must be positive"),
    (lambda: nn.Conv2d(3, 8, 3, stride=2, padding="same"), ValueError, "padding='same' needs stride 1"),
    (lambda: nn.Conv2d(3, 8, 3, padding="causal"), ValueError, "1-D convolutions only"),
    (lambda: nn.Conv2d(3, 8, 3, groups=0), ValueError, "Conv2d: groups must be positive"),
    (lambda: nn.Conv1d(0, 8, 3), ValueError, "Conv1d: in_channels must be positive"),
    (lambda: nn.ConvTranspose2d(3, 8, 3, padding=-1), ValueError,
     "ConvTranspose2d: padding must be non-negative"),
    (lambda: nn.ConvTranspose2d(3, 8, 3, stride=2, output_padding=2), ValueError,
     "output_padding .* must be smaller"),
    (lambda: nn.MaxPool2d(0), ValueError, "MaxPool2d: kernel_size must be positive"),
    (lambda: nn.AvgPool2d(2, padding=-1), ValueError, "AvgPool2d: padding must be non-negative"),
    (lambda: nn.GroupNorm(0, 4), ValueError, "GroupNorm: num_groups must be a positive int, got 0"),
    (lambda: nn.BatchNorm2d(0), ValueError, "BatchNorm2d: num_features must be a positive int"),
    (lambda: nn.LayerNorm((4, 0)), ValueError, "LayerNorm: normalized_shape must be a positive"),
])
def test_layers_check_their_arguments_at_construction(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.parametrize("layer,shape,pattern", [
    (lambda: nn.BatchNorm2d(3), (8, 3), r"BatchNorm2d: expected a 4-D input \(batch, height, "
                                        r"width, channels\), got shape \(8, 3\)"),
    (lambda: nn.BatchNorm1d(3), (2, 4, 4, 3), r"BatchNorm1d: expected a 2-D or 3-D input"),
    (lambda: nn.BatchNorm3d(3), (2, 4, 4, 3), r"BatchNorm3d: expected a 5-D input"),
    (lambda: nn.BatchNorm(3), (3,), r"BatchNorm: expected a 2-D \(or higher\) input"),
    (lambda: nn.GroupNorm(2, 4, affine=False), (2, 3), r"GroupNorm: expected \(batch, ..., 4\)"),
    (lambda: nn.Linear(3, 4), (), r"Linear\(in_features=3, out_features=4\): expected an input "
                                  r"of shape \(..., 3\) \(features last\), got a scalar"),
    (lambda: nn.Linear(3, 4), (2, 5), r"expected an input of shape \(..., 3\) .* got shape \(2, 5\)"),
])
def test_layers_reject_inputs_of_the_wrong_rank(layer, shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        layer()(wl.ones(shape))


def test_batch_norm_ranks_that_pytorch_accepts_still_work():
    assert nn.BatchNorm1d(3)(wl.ones((4, 3)) + wl.random.normal((4, 3))).shape == (4, 3)
    assert nn.BatchNorm1d(3)(wl.random.normal((4, 5, 3))).shape == (4, 5, 3)
    assert nn.BatchNorm2d(3)(wl.random.normal((2, 4, 4, 3))).shape == (2, 4, 4, 3)
    assert nn.BatchNorm3d(3)(wl.random.normal((2, 2, 4, 4, 3))).shape == (2, 2, 4, 4, 3)


def test_functional_linear_names_a_scalar_input():
    with pytest.raises(ValueError, match=r"linear: expected an input of shape \(..., 3\)"):
        F.linear(wl.tensor(1.0), wl.ones((3, 4)))


# ----------------------------------------------------------------------------- padding rule
def test_one_padding_rule_for_every_rank():
    x1, w1 = wl.random.normal((1, 6, 1)), wl.random.normal((3, 1, 1))
    # one (before, after) pair per spatial dimension, in 1-D as in 2-D and 3-D
    assert F.conv1d(x1, w1, padding=[(2, 0)]).shape == (1, 6, 1)
    x2, w2 = wl.random.normal((1, 6, 6, 1)), wl.random.normal((3, 3, 1, 1))
    assert F.conv2d(x2, w2, padding=((2, 0), (1, 1))).shape == (1, 6, 6, 1)
    assert F.conv2d(x2, w2, padding=(2, 0)).shape == (1, 8, 4, 1)      # one int per dimension
    x3, w3 = wl.random.normal((1, 4, 4, 4, 1)), wl.random.normal((3, 3, 3, 1, 1))
    assert F.conv3d(x3, w3, padding=((2, 0), 1, (0, 0))).shape == (1, 4, 4, 2, 1)
    # the per-side pair gives the same result as padding by hand
    np.testing.assert_allclose(F.conv1d(x1, w1, padding=[(2, 0)]).numpy(),
                               F.conv1d(wl.pad(x1, ((0, 0), (2, 0), (0, 0))), w1).numpy())


def test_conv1d_takes_a_flat_before_after_pair():
    # with one spatial dimension a pair of ints can only mean (before, after)
    x, w = wl.random.normal((2, 6, 3)), wl.random.normal((3, 3, 4))
    by_hand = F.conv1d(wl.pad(x, ((0, 0), (2, 3), (0, 0))), w).numpy()
    for padding in [(2, 3), [2, 3], [(2, 3)]]:
        np.testing.assert_allclose(F.conv1d(x, w, padding=padding).numpy(), by_hand, rtol=1e-6)
    layer = nn.Conv1d(3, 4, 3, padding=(2, 3))
    assert layer(x).shape == (2, 9, 4)
    np.testing.assert_allclose(layer(x).numpy(),
                               F.conv1d(x, layer.weight, layer.bias, padding=[(2, 3)]).numpy())


@pytest.mark.parametrize("call,pattern", [
    (lambda: F.conv1d(wl.ones((1, 6, 1)), wl.ones((3, 1, 1)), padding=(2, 0, 1)),
     r"conv1d: padding \(2, 0, 1\) has 3 entries for 1 spatial dimension; .* an int or a "
     r"\(before, after\) pair, e.g. 2, \(2, 0\) or \[\(2, 0\)\]"),
    (lambda: F.conv1d(wl.ones((1, 6, 1)), wl.ones((3, 1, 1)), padding=(2, (0, 1))),
     r"conv1d: padding \(2, \(0, 1\)\) has 2 entries for 1 spatial dimension"),
    (lambda: F.conv2d(wl.ones((1, 6, 6, 1)), wl.ones((3, 3, 1, 1)), padding=[(1, 2)]),
     r"conv2d: padding \[\(1, 2\)\] has 1 entries for 2 spatial dimensions"),
    (lambda: F.conv2d(wl.ones((1, 6, 6, 1)), wl.ones((3, 3, 1, 1)), padding=(1, (1, 2, 3))),
     r"conv2d: padding must be an int"),
    (lambda: nn.Conv1d(1, 1, 3, padding=(2, 0, 1)), r"Conv1d: padding \(2, 0, 1\) has 3 entries"),
    (lambda: nn.Conv1d(1, 1, 3, padding=(2, -1)), r"Conv1d: padding must be non-negative"),
    (lambda: F.max_pool2d(wl.ones((1, 6, 6, 1)), 2, padding=((1, 0), (0, 1))),
     r"max_pool2d: padding must be an int or 2 ints"),
])
def test_ambiguous_or_malformed_padding_is_an_error(call, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        call()


# ----------------------------------------------------------------------------- max pooling
def test_global_max_pool_sends_tied_gradients_to_the_first_maximum():
    values = np.array([[[[1.0], [3.0]], [[3.0], [0.0]]]])            # tie at (0, 1) and (1, 0)
    for pool in (F.global_max_pool, lambda t: F.max_pool2d(t, 2).reshape((1, 1))):
        x = wl.tensor(values, requires_grad=True)
        pool(x).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy()[0, ..., 0], [[0.0, 1.0], [0.0, 0.0]])
    mask = wl.tensor([[True, True, True, False]])
    x = wl.tensor([[[2.0], [5.0], [5.0], [9.0]]], requires_grad=True)
    out = F.masked_global_max_pool(x, mask)
    out.sum().backward()
    assert out.item() == 5.0
    np.testing.assert_array_equal(x.grad.numpy()[0, :, 0], [0.0, 1.0, 0.0, 0.0])


def test_max_pool_return_indices_locate_the_maxima():
    x = wl.tensor(np.arange(16.0)[::-1].reshape(1, 4, 4, 1))
    values, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == np.int64 and idx.shape == values.shape
    np.testing.assert_array_equal(idx.numpy()[0, ..., 0], [[0, 2], [8, 10]])
    flat = x.numpy().reshape(1, 16, 1)
    np.testing.assert_array_equal(np.take_along_axis(flat, idx.numpy().reshape(1, 4, 1), 1),
                                  values.numpy().reshape(1, 4, 1))
    out, idx_module = nn.MaxPool2d(2, return_indices=True)(x)
    np.testing.assert_array_equal(idx_module.numpy(), idx.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("nd,shape,kw", [
    (1, (2, 9, 2), dict(kernel_size=3, stride=2, dilation=2)),
    (2, (2, 7, 6, 3), dict(kernel_size=3, stride=2, padding=1)),
    (2, (2, 7, 7, 2), dict(kernel_size=(3, 2), stride=(2, 3), padding=1, dilation=(2, 1),
                           ceil_mode=True)),
    (3, (1, 5, 4, 6, 2), dict(kernel_size=2, ceil_mode=True)),
])
def test_max_pool_indices_match_pytorch(nd, shape, kw):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(nd).standard_normal(shape)
    values, idx = getattr(F, f"max_pool{nd}d")(wl.tensor(x), return_indices=True, **kw)
    t_values, t_idx = getattr(torch.nn.functional, f"max_pool{nd}d")(
        torch.tensor(np.moveaxis(x, -1, 1)), return_indices=True, **kw)
    np.testing.assert_array_equal(idx.numpy(), np.moveaxis(t_idx.numpy(), 1, -1))
    np.testing.assert_allclose(values.numpy(), np.moveaxis(t_values.numpy(), 1, -1))


# ----------------------------------------------------------------------------- linear algebra
@pytest.mark.parametrize("call,pattern", [
    (lambda: wl.linalg.inv(wl.zeros((3, 3))), r"inv: singular matrix \(input of shape \(3, 3\)\)"),
    (lambda: wl.linalg.solve(wl.zeros((3, 3)), wl.ones(3)),
     r"solve: singular matrix \(inputs of shape \(3, 3\) and \(3,\)\)"),
    (lambda: wl.linalg.cholesky(-wl.eye(3)),
     r"cholesky: the matrix is not positive definite \(input of shape \(3, 3\)\)"),
    (lambda: wl.linalg.solve_triangular(wl.zeros((2, 2)), wl.ones(2)),
     r"solve_triangular: singular matrix.*\(inputs of shape \(2, 2\) and \(2,\)\)"),
])
def test_linear_algebra_failures_name_the_operation_and_shapes(call, pattern):
    with pytest.raises(np.linalg.LinAlgError, match=pattern) as err:
        call()
    assert isinstance(err.value, wl.linalg.LinAlgError)


# ----------------------------------------------------------------------------- optimisers
def _p():
    return [nn.Parameter(np.ones(2))]


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: optim.Adam(_p(), lr="fast"), TypeError, r"Adam: lr must be a number, got 'fast' \(str\)"),
    (lambda: optim.Adam(_p(), betas=(0.9, 1.5)), ValueError,
     r"Adam: betas\[1\] must be a finite number of at least 0 and below 1, got 1.5"),
    (lambda: optim.Adam(_p(), betas=0.9), TypeError, "Adam: betas must be a pair"),
    (lambda: optim.AdamW(_p(), weight_decay=None), TypeError, "AdamW: weight_decay must be a number"),
    (lambda: optim.SGD(_p(), lr=float("nan")), ValueError, "SGD: lr must be a finite number"),
    (lambda: optim.SGD(_p(), lr=0.1, momentum="0.9"), TypeError, "SGD: momentum must be a number"),
    (lambda: optim.SGD(_p(), lr=0.1, nesterov="yes"), TypeError, "SGD: nesterov must be True or False"),
    (lambda: optim.RMSprop(_p(), alpha=-0.1), ValueError, "RMSprop: alpha must be a finite number"),
    (lambda: optim.Adagrad(_p(), eps=-1), ValueError, "Adagrad: eps must be a finite number"),
    (lambda: optim.SGD([{"params": _p(), "lr": "x"}], lr=0.1), TypeError, "SGD: lr must be a number"),
])
def test_optimisers_check_their_hyper_parameters(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def _opt():
    return optim.SGD(_p(), lr=0.1)


@pytest.mark.parametrize("make,error,pattern", [
    (lambda: optim.StepLR(_opt(), "2"), TypeError, "StepLR: step_size must be an integer, got '2'"),
    (lambda: optim.StepLR(_opt(), 2, gamma="half"), TypeError, "StepLR: gamma must be a number"),
    (lambda: optim.MultiStepLR(_opt(), [2, "x"]), TypeError, "MultiStepLR: milestones must be an integer"),
    (lambda: optim.ExponentialLR(_opt(), -0.5), ValueError, "ExponentialLR: gamma must be a finite"),
    (lambda: optim.CosineAnnealingLR(_opt(), 0), ValueError, "CosineAnnealingLR: T_max must be at least 1"),
    (lambda: optim.LinearLR(_opt(), start_factor=0), ValueError, "LinearLR: start_factor must be above 0"),
    (lambda: optim.LinearLR(_opt(), total_iters=2.5), TypeError, "LinearLR: total_iters must be an integer"),
    (lambda: optim.LambdaLR(_opt(), 0.5), TypeError, "LambdaLR: lr_lambda must be a function"),
    (lambda: optim.SequentialLR(_opt(), [optim.StepLR(_opt(), 1)], []), ValueError,
     "SequentialLR: every scheduler must be a schedule of the same optimizer"),
    (lambda: optim.StepLR(_opt(), 1, last_epoch="x"), TypeError, "StepLR: last_epoch must be an integer"),
])
def test_schedules_check_their_arguments(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_optimizer_load_state_dict_is_all_or_nothing():
    ps = [nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))]
    opt = optim.Adam(ps, lr=0.1)
    for p in ps:
        p.grad = wl.ones(p.shape)
    opt.step()
    good = opt.state_dict()
    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros(7)                     # the second entry is wrong
    bad["param_groups"][0]["lr"] = 5.0
    with pytest.raises(ValueError, match="state 'exp_avg' has shape"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.1
    for idx, p in enumerate(ps):
        np.testing.assert_array_equal(opt.state[p]["exp_avg"], good["state"][idx]["exp_avg"])


def test_module_load_state_dict_is_all_or_nothing():
    model = nn.MLP([2, 4, 3])
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    state = {k: np.zeros(v.shape) for k, v in model.state_dict().items()}
    last = list(state)[-1]
    state[last] = np.zeros(7)
    with pytest.raises(ValueError, match="shape mismatch"):
        model.load_state_dict(state)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
