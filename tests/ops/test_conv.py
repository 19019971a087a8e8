"""Convolutions, transposed convolutions and pooling: gradients in float64 (both modes,
second order), the fast paths against their references, PyTorch parity (layouts
permuted), and error messages."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.backend import threads
from wonderland.nn import functional as F
from wonderland.ops import conv as C
from conftest import check_primitive, f64

R = np.random.default_rng(21)


def r(*shape):
    return f64(R.standard_normal(shape))


CONV_CASES = [
    ("1d", F.conv1d, (2, 7, 3), (3, 3, 4), dict(stride=2, padding=1)),
    ("1d_causal_dilated", F.conv1d, (2, 8, 2), (2, 2, 3), dict(padding="causal", dilation=3)),
    ("1d_before_after_pair", F.conv1d, (2, 6, 2), (3, 2, 3), dict(stride=2, padding=(2, 3))),
    ("2d", F.conv2d, (2, 5, 6, 3), (3, 3, 3, 4), dict(padding="same")),
    ("2d_stride_dilation", F.conv2d, (1, 7, 7, 2), (2, 3, 2, 2), dict(stride=(2, 1), dilation=(2, 1), padding=((1, 0), (0, 2)))),
    ("2d_groups", F.conv2d, (2, 5, 5, 4), (3, 3, 2, 6), dict(groups=2)),
    ("2d_depthwise", F.conv2d, (2, 5, 5, 3), (3, 3, 1, 3), dict(groups=3, padding=1)),
    ("2d_1x1", F.conv2d, (2, 4, 4, 3), (1, 1, 3, 5), {}),
    ("3d", F.conv3d, (1, 4, 5, 4, 2), (2, 3, 2, 2, 3), dict(stride=(1, 2, 1))),
]


@pytest.mark.parametrize("name,fn,xs,ws,kw", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_gradients(name, fn, xs, ws, kw):
    b = r(ws[-1])
    check_primitive(lambda x, w, bb: fn(x, w, bb, **kw), r(*xs), r(*ws), b, atol=1e-6)


TRANSPOSED = [
    ("1d", F.conv_transpose1d, (2, 5, 3), (3, 2, 3), dict(stride=2, padding=1, output_padding=1)),
    ("2d", F.conv_transpose2d, (2, 3, 4, 3), (3, 3, 2, 3), dict(stride=2)),
    ("2d_groups", F.conv_transpose2d, (1, 4, 3, 4), (2, 2, 3, 4), dict(groups=2, dilation=2)),
    ("3d", F.conv_transpose3d, (1, 2, 3, 2, 2), (2, 2, 2, 3, 2), dict(stride=(2, 1, 2), padding=(0, 1, 0))),
]


@pytest.mark.parametrize("name,fn,xs,ws,kw", TRANSPOSED, ids=[c[0] for c in TRANSPOSED])
def test_conv_transpose_gradients(name, fn, xs, ws, kw):
    check_primitive(lambda x, w: fn(x, w, **kw), r(*xs), r(*ws), atol=1e-6)


def test_transposed_convolution_is_the_adjoint_of_convolution():
    x, w, y = r(2, 9, 8, 3), r(3, 3, 3, 4), r(2, 4, 3, 4)
    lhs = (F.conv2d(x, w, stride=2) * y).sum().item()
    rhs = (x * F.conv_transpose2d(y, w, stride=2, output_padding=(0, 1))).sum().item()
    # the same ~2,600 products summed in two orders: ≤ ~120 roundings × 1.1e-16 × sum|terms|
    # (~1,300) ≈ 2e-11, against a total of ~30-90: 1e-10 relative
    assert lhs == pytest.approx(rhs, rel=1e-10)


@pytest.mark.parametrize("stride,dilation,groups", [((1, 1), (1, 1), 1), ((1, 1), (2, 1), 2),
                                                    ((2, 2), (1, 1), 1), ((1, 1), (1, 1), 3)])
def test_fast_paths_match_reference_loops(stride, dilation, groups):
    """The im2col/GEMM primitives against a direct sum over kernel offsets, and the
    stride-1 transposed convolution (flipped kernel) against col2im."""
    x = R.standard_normal((2, 9, 8, 6))
    w = R.standard_normal((3, 2, 6 // groups, 6))
    out = C._conv_forward(x, w, stride=stride, dilation=dilation, groups=groups)
    cg, og = 6 // groups, 6 // groups
    ref = np.zeros_like(out)
    for i in range(3):
        for j in range(2):
            patch = x[:, i * dilation[0]: i * dilation[0] + stride[0] * (out.shape[1] - 1) + 1: stride[0],
                      j * dilation[1]: j * dilation[1] + stride[1] * (out.shape[2] - 1) + 1: stride[1], :]
            for g in range(groups):
                ref[..., g * og:(g + 1) * og] += patch[..., g * cg:(g + 1) * cg] @ w[i, j, :, g * og:(g + 1) * og]
    np.testing.assert_allclose(out, ref, atol=1e-10)
    gout = R.standard_normal(out.shape)
    via_conv = C._conv_transpose_forward(gout, w, stride=stride, dilation=dilation, groups=groups,
                                         in_shape=x.shape)
    via_cols = C._col2im(gout, w, stride, dilation, groups, x.shape, np.float64)
    np.testing.assert_allclose(via_conv, via_cols, atol=1e-10)
    if stride == (1, 1):                       # force the flipped-kernel route too
        pads = [(d * (k - 1),) * 2 for k, d in zip(w.shape[:2], dilation)]
        flipped = C._conv_forward(np.pad(gout, [(0, 0)] + pads + [(0, 0)]),
                                  C._flip_transpose_kernel(w, groups), stride=stride,
                                  dilation=dilation, groups=groups)
        np.testing.assert_allclose(flipped[:, :x.shape[1], :x.shape[2]], via_cols, atol=1e-10)


def test_threaded_chunks_match_single_thread(monkeypatch, set_threads):
    x = R.standard_normal((9, 10, 10, 4)).astype(np.float32)
    w = R.standard_normal((3, 3, 4, 5)).astype(np.float32)

    def run():
        out = C._conv_forward(x, w, stride=(1, 1), dilation=(1, 1), groups=1)
        gw = C._conv_weight_forward(x, out, stride=(1, 1), dilation=(1, 1), groups=1, kernel=(3, 3))
        strided = C._conv_forward(x, w, stride=(2, 1), dilation=(1, 1), groups=1)
        gx = C._col2im(strided, w, (2, 1), (1, 1), 1, x.shape, np.float32)
        return out, gw, gx

    monkeypatch.setattr(C, "_ROWS_PER_CHUNK", 64)
    monkeypatch.setattr(threads, "MIN_PARALLEL_WORK", 0)
    set_threads(3)
    many = run()
    set_threads(1)
    monkeypatch.setattr(C, "_ROWS_PER_CHUNK", 1 << 20)
    one = run()
    for a, b in zip(many, one):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


POOLS = [
    ("max2d", lambda x: F.max_pool2d(x, 2), (2, 6, 6, 3)),
    ("max2d_overlap_pad", lambda x: F.max_pool2d(x, 3, stride=2, padding=1), (1, 7, 6, 2)),
    ("max1d", lambda x: F.max_pool1d(x, 3, stride=2), (2, 9, 2)),
    ("max3d", lambda x: F.max_pool3d(x, 2), (1, 4, 4, 4, 2)),
    ("avg2d", lambda x: F.avg_pool2d(x, 2), (2, 6, 6, 3)),
    ("avg2d_pad_exclude", lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False), (1, 5, 5, 2)),
    ("avg1d", lambda x: F.avg_pool1d(x, 2, stride=1), (2, 5, 3)),
    ("global_avg", F.global_avg_pool, (2, 3, 4, 5)),
    ("global_max", F.global_max_pool, (2, 3, 4, 5)),
]


@pytest.mark.parametrize("name,fn,xs", POOLS, ids=[p[0] for p in POOLS])
def test_pool_gradients(name, fn, xs):
    x = f64(R.permutation(int(np.prod(xs))).reshape(xs) * 0.1)     # distinct values: no ties
    check_primitive(fn, x, order=1 if "max" in name else 2)


def test_masked_pooling_ignores_padding():
    x = r(2, 5, 3)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    out = F.masked_global_avg_pool(x, mask).numpy()
    np.testing.assert_allclose(out[0], x.numpy()[0, :3].mean(0))
    np.testing.assert_allclose(out[1], x.numpy()[1].mean(0))
    big = wl.concatenate([x, f64(np.full((2, 3, 3), 100.0))], axis=1)
    mask2 = np.concatenate([mask, np.zeros((2, 3), bool)], axis=1)
    np.testing.assert_allclose(F.masked_global_avg_pool(big, mask2).numpy(), out)
    np.testing.assert_allclose(F.masked_global_max_pool(big, mask2).numpy()[0], x.numpy()[0, :3].max(0))
    check_primitive(lambda t: F.masked_global_avg_pool(t, mask), x)


def test_equivariance_and_invariance():
    w = r(3, 3, 2, 4)
    img = np.zeros((1, 12, 12, 2))
    img[0, 3:6, 2:5] = R.standard_normal((3, 3, 2))
    shifted = np.roll(img, (2, 3), axis=(1, 2))
    a = F.conv2d(f64(img), w, padding="same").numpy()
    b = F.conv2d(f64(shifted), w, padding="same").numpy()
    np.testing.assert_allclose(np.roll(a, (2, 3), axis=(1, 2)), b, atol=1e-12)   # equivariance
    np.testing.assert_allclose(F.global_avg_pool(f64(a)).numpy(), F.global_avg_pool(f64(b)).numpy(), atol=1e-12)


def test_conv_errors():
    with pytest.raises(ValueError, match=r"conv2d: input must have shape \(batch, height, width, channels\), got \(8, 8, 1\)"):
        F.conv2d(wl.zeros((8, 8, 1)), wl.zeros((3, 3, 1, 4)))
    with pytest.raises(ValueError, match="conv2d: input has 3 channels but the weight"):
        F.conv2d(wl.zeros((1, 8, 8, 3)), wl.zeros((3, 3, 1, 4)))
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(wl.zeros((1, 2, 2, 1)), wl.zeros((3, 3, 1, 1)))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        F.conv2d(wl.zeros((1, 8, 8, 1)), wl.zeros((3, 3, 1, 1)), stride=2, padding="same")
    with pytest.raises(ValueError, match="'causal' applies to 1-D"):
        F.conv2d(wl.zeros((1, 8, 8, 1)), wl.zeros((3, 3, 1, 1)), padding="causal")
    with pytest.raises(ValueError, match="groups=3 must divide"):
        F.conv2d(wl.zeros((1, 8, 8, 4)), wl.zeros((3, 3, 2, 4)), groups=3)
    with pytest.raises(ValueError, match="max_pool2d: padding"):
        F.max_pool2d(wl.zeros((1, 4, 4, 1)), 2, padding=2)


def test_layers_shapes_and_repr():
    nn = wl.nn
    x = wl.random.normal((2, 16, 16, 3))
    assert nn.Conv2d(3, 8, 3, padding=1)(x).shape == (2, 16, 16, 8)
    assert nn.Conv2d(3, 8, 3, stride=2)(x).shape == (2, 7, 7, 8)
    assert nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1)(x).shape == (2, 32, 32, 5)
    assert nn.Conv1d(3, 4, 5, padding="causal", dilation=2)(wl.random.normal((2, 10, 3))).shape == (2, 10, 4)
    assert nn.Conv3d(3, 2, 3)(wl.random.normal((1, 5, 6, 7, 3))).shape == (1, 3, 4, 5, 2)
    assert nn.MaxPool2d(2)(x).shape == (2, 8, 8, 3) and nn.AvgPool2d(4)(x).shape == (2, 4, 4, 3)
    assert nn.GlobalAvgPool()(x).shape == (2, 3)
    assert "Conv2d(3, 8, kernel_size=(3, 3), padding=1)" in repr(nn.Conv2d(3, 8, 3, padding=1))
    dw = nn.Conv2d(4, 4, 3, groups=4, bias=False)
    assert dw.weight.shape == (3, 3, 1, 4) and dw.bias is None


torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _to_t(x):
    return torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)


def _w_to_t(w, transposed=False):
    # ours (*k, a, b) -> torch (b, a, *k) for conv, (b, a, *k) also for transposed (in, out/g, *k)
    return torch.tensor(np.moveaxis(np.moveaxis(w, -1, 0), -1, 1), requires_grad=True)


@pytest.mark.torch
@pytest.mark.parametrize("nd,xs,ws,kw", [
    (2, (2, 9, 8, 4), (3, 3, 2, 6), dict(stride=2, padding=1, dilation=1, groups=2)),
    (1, (3, 12, 3), (4, 3, 5), dict(stride=1, padding=3, dilation=2)),
    (3, (1, 5, 6, 5, 2), (2, 2, 3, 2, 4), dict(stride=(1, 2, 1), padding=(1, 0, 1))),
])
def test_conv_matches_pytorch(nd, xs, ws, kw):
    x, w, b = R.standard_normal(xs), R.standard_normal(ws), R.standard_normal(ws[-1])
    ours = wl.nn.functional.__dict__[f"conv{nd}d"]
    theirs = getattr(TF, f"conv{nd}d")
    out, pullback = wl.vjp(lambda a, c, d: ours(a, c, d, **kw), f64(x), f64(w), f64(b))
    xt, wt, bt = _to_t(x), _w_to_t(w), torch.tensor(b, requires_grad=True)
    ref = theirs(xt, wt, bt, **kw)
    np.testing.assert_allclose(out.numpy(), np.moveaxis(ref.detach().numpy(), 1, -1), atol=1e-10)
    ct = R.standard_normal(out.shape)
    gx, gw, gb = pullback(f64(ct))
    ref.backward(torch.tensor(np.moveaxis(ct, -1, 1)))
    np.testing.assert_allclose(gx.numpy(), np.moveaxis(xt.grad.numpy(), 1, -1), atol=1e-10)
    np.testing.assert_allclose(gw.numpy(), np.moveaxis(np.moveaxis(wt.grad.numpy(), 1, -1), 0, -1), atol=1e-10)
    np.testing.assert_allclose(gb.numpy(), bt.grad.numpy(), atol=1e-10)


@pytest.mark.torch
@pytest.mark.parametrize("nd,xs,ws,kw", [
    (2, (2, 4, 5, 4), (3, 3, 3, 4), dict(stride=2, padding=1, output_padding=1, groups=1)),
    (2, (1, 3, 3, 4), (2, 2, 1, 4), dict(stride=2, groups=2, dilation=2)),
    (1, (2, 5, 3), (4, 2, 3), dict(stride=3, padding=2, output_padding=2)),
])
def test_conv_transpose_matches_pytorch(nd, xs, ws, kw):
    x, w = R.standard_normal(xs), R.standard_normal(ws)
    ours = wl.nn.functional.__dict__[f"conv_transpose{nd}d"]
    theirs = getattr(TF, f"conv_transpose{nd}d")
    out, pullback = wl.vjp(lambda a, c: ours(a, c, **kw), f64(x), f64(w))
    xt = _to_t(x)
    wt = torch.tensor(np.moveaxis(np.moveaxis(w, -1, 0), -1, 1), requires_grad=True)  # (in, out/g, *k)
    ref = theirs(xt, wt, **kw)
    np.testing.assert_allclose(out.numpy(), np.moveaxis(ref.detach().numpy(), 1, -1), atol=1e-10)
    ct = R.standard_normal(out.shape)
    gx, gw = pullback(f64(ct))
    ref.backward(torch.tensor(np.moveaxis(ct, -1, 1)))
    np.testing.assert_allclose(gx.numpy(), np.moveaxis(xt.grad.numpy(), 1, -1), atol=1e-10)
    np.testing.assert_allclose(gw.numpy(), np.moveaxis(np.moveaxis(wt.grad.numpy(), 1, -1), 0, -1), atol=1e-10)


@pytest.mark.torch
def test_conv1d_with_a_before_after_pair_matches_pytorch():
    x, w, b = R.standard_normal((2, 7, 3)), R.standard_normal((3, 3, 4)), R.standard_normal(4)
    layer = wl.nn.Conv1d(3, 4, 3, stride=2, padding=(2, 3)).double()
    forms = [lambda a, c, d: F.conv1d(a, c, d, stride=2, padding=(2, 3)),
             lambda a, c, d: wl.nn.functional_call(layer, {"weight": c, "bias": d}, a)]
    for form in forms:
        out, pullback = wl.vjp(form, f64(x), f64(w), f64(b))
        xt, wt, bt = _to_t(x), _w_to_t(w), torch.tensor(b, requires_grad=True)
        ref = TF.conv1d(TF.pad(xt, (2, 3)), wt, bt, stride=2)
        np.testing.assert_allclose(out.numpy(), np.moveaxis(ref.detach().numpy(), 1, -1), atol=1e-10)
        ct = R.standard_normal(out.shape)
        gx, gw, gb = pullback(f64(ct))
        ref.backward(torch.tensor(np.moveaxis(ct, -1, 1)))
        np.testing.assert_allclose(gx.numpy(), np.moveaxis(xt.grad.numpy(), 1, -1), atol=1e-10)
        np.testing.assert_allclose(gw.numpy(), np.moveaxis(np.moveaxis(wt.grad.numpy(), 1, -1), 0, -1),
                                   atol=1e-10)
        np.testing.assert_allclose(gb.numpy(), bt.grad.numpy(), atol=1e-10)


@pytest.mark.torch
def test_pooling_matches_pytorch():
    x = R.standard_normal((2, 7, 8, 3))
    x[0, 0, 0, 0] = x[0, 0, 1, 0]                          # a tie: the first position wins
    for ours, theirs in [(lambda a: F.max_pool2d(a, 2), lambda a: TF.max_pool2d(a, 2)),
                         (lambda a: F.max_pool2d(a, 3, 2, 1), lambda a: TF.max_pool2d(a, 3, 2, 1)),
                         (lambda a: F.avg_pool2d(a, 3, 2, 1), lambda a: TF.avg_pool2d(a, 3, 2, 1)),
                         (lambda a: F.avg_pool2d(a, 3, 2, 1, count_include_pad=False),
                          lambda a: TF.avg_pool2d(a, 3, 2, 1, count_include_pad=False))]:
        out, pullback = wl.vjp(ours, f64(x))
        xt = _to_t(x)
        ref = theirs(xt)
        np.testing.assert_allclose(out.numpy(), np.moveaxis(ref.detach().numpy(), 1, -1), atol=1e-12)
        ct = R.standard_normal(out.shape)
        (g,) = pullback(f64(ct))
        ref.backward(torch.tensor(np.moveaxis(ct, -1, 1)))
        np.testing.assert_allclose(g.numpy(), np.moveaxis(xt.grad.numpy(), 1, -1), atol=1e-12)


@pytest.mark.torch
def test_pooling_options_and_padding_modes_match_pytorch():
    x = R.standard_normal((2, 7, 6, 3))
    xt = torch.tensor(np.moveaxis(x, -1, 1))
    to_ours = lambda t: np.moveaxis(t.detach().numpy(), 1, -1)  # noqa: E731
    cases = [
        (lambda a: F.avg_pool2d(a, 3, 2, 1, True, False), lambda a: TF.avg_pool2d(a, 3, 2, 1, True, False)),
        (lambda a: F.avg_pool2d(a, 3, 2, 1, True, True), lambda a: TF.avg_pool2d(a, 3, 2, 1, True, True)),
        (lambda a: F.avg_pool2d(a, 3, 2, 0, False, True, 5), lambda a: TF.avg_pool2d(a, 3, 2, 0, False, True, 5)),
        (lambda a: F.max_pool2d(a, 2, ceil_mode=True), lambda a: TF.max_pool2d(a, 2, ceil_mode=True)),
        (lambda a: F.max_pool2d(a, 3, 2, 1, 1, True), lambda a: TF.max_pool2d(a, 3, 2, 1, 1, True)),
    ]
    for ours, theirs in cases:
        np.testing.assert_allclose(ours(f64(x)).numpy(), to_ours(theirs(xt)), atol=1e-12)
    assert wl.nn.MaxPool2d(3, 2, 1, 1)(f64(x)).shape == (2, 4, 3, 3)
    assert wl.nn.AvgPool2d(3, 2, 1, False, False)(f64(x)).shape == (2, 4, 3, 3)
    for mode in ("reflect", "replicate", "circular"):
        conv = wl.nn.Conv2d(3, 4, 3, 1, 1, padding_mode=mode).double()
        tconv = torch.nn.Conv2d(3, 4, 3, 1, 1, padding_mode=mode).double()
        with torch.no_grad():
            tconv.weight.copy_(torch.tensor(np.moveaxis(np.moveaxis(conv.weight.numpy(), -1, 0), -1, 1)))
            tconv.bias.copy_(torch.tensor(conv.bias.numpy()))
        np.testing.assert_allclose(conv(f64(x)).numpy(), to_ours(tconv(xt)), atol=1e-12)


def test_max_pool_nan_and_padding_follow_pytorch():
    x = f64([0.0, 1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0]).reshape(1, 8, 1)
    out, pullback = wl.vjp(lambda a: F.max_pool1d(a, 4), x)
    assert np.isnan(out.numpy()[0, 0, 0]) and out.numpy()[0, 1, 0] == 7.0
    (g,) = pullback(wl.ones_like(out))
    np.testing.assert_array_equal(g.numpy()[0, :, 0], [0, 0, 1, 0, 0, 0, 0, 1])
    y = f64([-np.inf, -np.inf, -np.inf, 1.0]).reshape(1, 4, 1)
    out, pullback = wl.vjp(lambda a: F.max_pool1d(a, 2, 2, 1), y)
    (g,) = pullback(wl.ones_like(out))
    np.testing.assert_array_equal(g.numpy()[0, :, 0], [1, 1, 0, 1])


def test_argument_checks():
    nn = wl.nn
    x = wl.zeros((2, 5, 5, 4))
    w = wl.zeros((3, 3, 2, 4))
    with pytest.raises(ValueError, match="non-negative"):
        F.conv_transpose2d(x, w, None, 1, -1)
    with pytest.raises(ValueError, match="non-negative"):
        F.conv_transpose2d(x, w, None, 2, 0, -1)
    with pytest.raises(ValueError, match="leaves no output"):
        F.conv_transpose2d(x, w, None, 1, 4)
    with pytest.raises(ValueError, match="groups must be positive"):
        F.conv_transpose2d(x, w, groups=0)
    with pytest.raises(ValueError, match="bias must have shape"):
        F.conv_transpose2d(x, w, wl.zeros(3))
    with pytest.raises(TypeError, match="positional arguments"):
        nn.Conv2d(4, 8, 3, 1, 1, 1, 1, True, "zeros", "extra")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(4, 8, 3, padding_mode="mirror")
    assert F.conv1d(wl.zeros((1, 5, 1)), wl.zeros((3, 1, 1)), padding=[(2, 0)]).shape == (1, 5, 1)
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        F.layer_norm(wl.zeros((3, 6)), 6, weight=wl.ones((3, 6)))
    assert F.conv_transpose2d(wl.zeros((1, 3, 3, 4)), w, wl.zeros(2, dtype=wl.float64)).dtype == wl.float32
    assert "output_padding=1" in repr(nn.ConvTranspose2d(4, 2, 3, 2, 1, 1))
