"""RNN, GRU and LSTM layers and cells against torch.nn with copied weights: outputs,
final states and gradients, for every option."""

import itertools

import numpy as np
import pytest

import wonderland as wl

torch = pytest.importorskip("torch", reason="torch is not installed: parity tests skipped")
pytestmark = pytest.mark.torch

MODES = {"RNN": (wl.nn.RNN, torch.nn.RNN), "GRU": (wl.nn.GRU, torch.nn.GRU),
         "LSTM": (wl.nn.LSTM, torch.nn.LSTM)}


def _copy_weights(ours, theirs):
    """PyTorch's (out, in) weights into our (in, out) layout, by name."""
    names = dict(ours.named_parameters())
    assert set(names) == {n for n, _ in theirs.named_parameters()}
    for name, p in theirs.named_parameters():
        v = p.detach().numpy()
        names[name].data[...] = v.T if v.ndim == 2 else v


def _t(x, requires_grad=False):
    return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=requires_grad)


CASES = list(itertools.product(
    ["RNN", "GRU", "LSTM"],
    [1, 2],                  # num_layers
    [True, False],           # bidirectional
    [True, False],           # batch_first
    [True, False],           # bias
))


@pytest.mark.parametrize("mode,layers,bidir,batch_first,bias", CASES)
def test_layer_matches_torch(mode, layers, bidir, batch_first, bias, rng):
    ours_cls, theirs_cls = MODES[mode]
    n, t, c, h = 3, 6, 4, 5
    kwargs = dict(num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias)
    theirs = theirs_cls(c, h, **kwargs).double()
    ours = ours_cls(c, h, dtype=np.float64, **kwargs)
    _copy_weights(ours, theirs)
    d = 2 if bidir else 1
    x = rng.standard_normal((n, t, c) if batch_first else (t, n, c))
    h0 = rng.standard_normal((d * layers, n, h))
    c0 = rng.standard_normal((d * layers, n, h))
    xt = _t(x, True)
    h0t, c0t = _t(h0, True), _t(c0, True)
    xw = wl.tensor(x, requires_grad=True)
    h0w, c0w = wl.tensor(h0, requires_grad=True), wl.tensor(c0, requires_grad=True)
    if mode == "LSTM":
        out_t, (hn_t, cn_t) = theirs(xt, (h0t, c0t))
        out_w, (hn_w, cn_w) = ours(xw, (h0w, c0w))
        np.testing.assert_allclose(cn_w.numpy(), cn_t.detach().numpy(), atol=1e-10)
    else:
        out_t, hn_t = theirs(xt, h0t)
        out_w, hn_w = ours(xw, h0w)
    np.testing.assert_allclose(out_w.numpy(), out_t.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(hn_w.numpy(), hn_t.detach().numpy(), atol=1e-10)
    assert hn_w.shape == (d * layers, n, h)
    # gradients of a loss using every output
    g_out = rng.standard_normal(out_w.shape)
    g_h = rng.standard_normal(hn_w.shape)
    loss_t = (out_t * _t(g_out)).sum() + (hn_t * _t(g_h)).sum()
    loss_w = (out_w * wl.tensor(g_out)).sum() + (hn_w * wl.tensor(g_h)).sum()
    if mode == "LSTM":
        loss_t = loss_t + cn_t.sum()
        loss_w = loss_w + cn_w.sum()
    loss_t.backward()
    loss_w.backward()
    np.testing.assert_allclose(xw.grad.numpy(), xt.grad.numpy(), atol=1e-9)
    np.testing.assert_allclose(h0w.grad.numpy(), h0t.grad.numpy(), atol=1e-9)
    if mode == "LSTM":
        np.testing.assert_allclose(c0w.grad.numpy(), c0t.grad.numpy(), atol=1e-9)
    ours_p = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        g = p.grad.numpy()
        np.testing.assert_allclose(ours_p[name].grad.numpy(), g.T if g.ndim == 2 else g,
                                   atol=1e-9, err_msg=name)


def test_rnn_relu_matches_torch(rng):
    theirs = torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True).double()
    ours = wl.nn.RNN(3, 4, nonlinearity="relu", dtype=np.float64)
    _copy_weights(ours, theirs)
    x = rng.standard_normal((2, 7, 3))
    out_t, hn_t = theirs(_t(x))
    out_w, hn_w = ours(wl.tensor(x))
    np.testing.assert_allclose(out_w.numpy(), out_t.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(hn_w.numpy(), hn_t.detach().numpy(), atol=1e-10)


@pytest.mark.parametrize("mode", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("bidir", [False, True])
def test_variable_lengths_match_packed_sequences(mode, bidir, rng):
    ours_cls, theirs_cls = MODES[mode]
    theirs = theirs_cls(3, 4, num_layers=2, bidirectional=bidir, batch_first=True).double()
    ours = ours_cls(3, 4, num_layers=2, bidirectional=bidir, dtype=np.float64)
    _copy_weights(ours, theirs)
    lengths = np.array([6, 2, 4, 1])
    x = rng.standard_normal((4, 6, 3))
    xt = _t(x, True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out_p, state_t = theirs(packed)
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=6)
    xw = wl.tensor(x, requires_grad=True)
    out_w, state_w = ours(xw, lengths=lengths)
    hn_t = state_t[0] if mode == "LSTM" else state_t
    hn_w = state_w[0] if mode == "LSTM" else state_w
    np.testing.assert_allclose(out_w.numpy(), out_t.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(hn_w.numpy(), hn_t.detach().numpy(), atol=1e-10)
    g = rng.standard_normal(out_w.shape)
    ((out_t * _t(g)).sum() + hn_t.sum()).backward()
    ((out_w * wl.tensor(g)).sum() + hn_w.sum()).backward()
    np.testing.assert_allclose(xw.grad.numpy(), xt.grad.numpy(), atol=1e-9)
    ours_p = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        gt = p.grad.numpy()
        np.testing.assert_allclose(ours_p[name].grad.numpy(), gt.T if gt.ndim == 2 else gt,
                                   atol=1e-9, err_msg=name)
    # a mask of the valid steps is the same as lengths
    mask = np.arange(6)[None] < lengths[:, None]
    out_m, _ = ours(wl.tensor(x), mask=mask)
    np.testing.assert_allclose(out_m.numpy(), out_w.numpy())


@pytest.mark.parametrize("mode", ["RNN", "GRU", "LSTM"])
def test_cells_match_torch(mode, rng):
    ours_cls = {"RNN": wl.nn.RNNCell, "GRU": wl.nn.GRUCell, "LSTM": wl.nn.LSTMCell}[mode]
    theirs_cls = {"RNN": torch.nn.RNNCell, "GRU": torch.nn.GRUCell, "LSTM": torch.nn.LSTMCell}[mode]
    theirs = theirs_cls(3, 5).double()
    ours = ours_cls(3, 5, dtype=np.float64)
    names = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        v = p.detach().numpy()
        names[name].data[...] = v.T if v.ndim == 2 else v
    assert ours.weight_ih.shape == (3, {"RNN": 1, "GRU": 3, "LSTM": 4}[mode] * 5)
    x = rng.standard_normal((2, 3))
    h = rng.standard_normal((2, 5))
    c = rng.standard_normal((2, 5))
    xt, ht, ct = _t(x, True), _t(h, True), _t(c, True)
    xw, hw, cw = (wl.tensor(v, requires_grad=True) for v in (x, h, c))
    if mode == "LSTM":
        h2t, c2t = theirs(xt, (ht, ct))
        h2w, c2w = ours(xw, (hw, cw))
        (h2t.sum() + (c2t * 2).sum()).backward()
        (h2w.sum() + (c2w * 2).sum()).backward()
        np.testing.assert_allclose(c2w.numpy(), c2t.detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(cw.grad.numpy(), ct.grad.numpy(), atol=1e-12)
    else:
        h2t = theirs(xt, ht)
        h2w = ours(xw, hw)
        h2t.sum().backward()
        h2w.sum().backward()
    np.testing.assert_allclose(h2w.numpy(), h2t.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(xw.grad.numpy(), xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(hw.grad.numpy(), ht.grad.numpy(), atol=1e-12)
    g = theirs.weight_hh.grad.numpy()
    np.testing.assert_allclose(ours.weight_hh.grad.numpy(), g.T, atol=1e-12)


def test_initialisation_matches_torch_distribution():
    """PyTorch draws every weight and bias from U(±1/sqrt(hidden)); so do we."""
    wl.random.seed(0)
    lstm = wl.nn.LSTM(10, 64, num_layers=2, bidirectional=True)
    bound = 1 / np.sqrt(64)
    values = np.concatenate([p.numpy().ravel() for p in lstm.parameters()])
    assert np.abs(values).max() <= bound
    assert abs(values.std() - bound / np.sqrt(3)) < 0.01 * bound     # uniform's std
    assert lstm.weight_ih_l1_reverse.shape == (128, 256)
    assert lstm.weight_hh_l0.shape == (64, 256)
