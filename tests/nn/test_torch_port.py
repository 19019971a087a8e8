"""Porting PyTorch weights: after ``load_torch_state_dict`` a torch model and its
wonderland twin give equal outputs, per layer kind (inputs channels first for torch,
channels last here); unmappable keys are refused by name. Skipped without torch."""

import numpy as np
import pytest

import wonderland as wl
from wonderland.nn.torch_port import TWIN_LAYERS, torch_state_dict

torch = pytest.importorskip("torch", reason="torch is not installed (the twins are its layers)")
pytestmark = pytest.mark.torch

tnn = torch.nn
R = np.random.default_rng(3)


def x_(*shape):
    return R.normal(size=shape).astype(np.float32)


def last(x):
    """channels-first (torch) -> channels-last (ours)."""
    return np.moveaxis(x, 1, -1)


def first(x):
    return np.moveaxis(x, -1, 1)


def run_torch(m, *xs):
    with torch.no_grad():
        out = m(*(torch.from_numpy(np.ascontiguousarray(x)) for x in xs))
    return out


def port(theirs, ours, strict=True):
    theirs.eval()
    result = ours.load_torch_state_dict(theirs.state_dict(), strict=strict)
    ours.eval()
    return result


def close(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=atol)


# ----------------------------------------------------------------------------- dense
def test_linear_and_sequential():
    theirs = tnn.Sequential(tnn.Linear(5, 7), tnn.Tanh(), tnn.Linear(7, 3, bias=False))
    ours = wl.nn.Sequential(wl.nn.Linear(5, 7), wl.nn.Tanh(), wl.nn.Linear(7, 3, bias=False))
    assert port(theirs, ours) == ([], [])
    x = x_(4, 5)
    close(ours(x).numpy(), run_torch(theirs, x).numpy())


def test_embedding():
    theirs, ours = tnn.Embedding(11, 4), wl.nn.Embedding(11, 4)
    port(theirs, ours)
    ids = R.integers(0, 11, (2, 6))
    close(ours(ids).numpy(), run_torch(theirs, ids).numpy())


# ----------------------------------------------------------------------------- convolutions
CONVS = [
    (tnn.Conv1d, wl.nn.Conv1d, (2, 4, 11), dict(stride=2, padding=1, dilation=2)),
    (tnn.Conv2d, wl.nn.Conv2d, (2, 4, 9, 8), dict(stride=(1, 2), padding=1, groups=2)),
    (tnn.Conv3d, wl.nn.Conv3d, (1, 4, 5, 6, 5), dict(padding=1)),
    (tnn.ConvTranspose1d, wl.nn.ConvTranspose1d, (2, 4, 7), dict(stride=2, padding=1,
                                                                 output_padding=1)),
    (tnn.ConvTranspose2d, wl.nn.ConvTranspose2d, (2, 4, 5, 6), dict(stride=2, groups=2)),
    (tnn.ConvTranspose3d, wl.nn.ConvTranspose3d, (1, 4, 3, 4, 3), dict(stride=(1, 2, 1),
                                                                       padding=1)),
]


@pytest.mark.parametrize("torch_cls, wl_cls, shape, kw", CONVS,
                         ids=[c[1].__name__ for c in CONVS])
def test_convolutions(torch_cls, wl_cls, shape, kw):
    theirs, ours = torch_cls(4, 6, 3, **kw), wl_cls(4, 6, 3, **kw)
    port(theirs, ours)
    x = x_(*shape)
    close(ours(last(x)).numpy(), last(run_torch(theirs, x).numpy()))


# ----------------------------------------------------------------------------- norms
def test_norms():
    for theirs, ours, shape in [(tnn.LayerNorm(6), wl.nn.LayerNorm(6), (3, 5, 6)),
                                (tnn.GroupNorm(2, 6), wl.nn.GroupNorm(2, 6), (3, 6, 4)),
                                (tnn.RMSNorm(6), wl.nn.RMSNorm(6), (3, 6))]:
        with torch.no_grad():
            for p in theirs.parameters():
                p.add_(torch.randn_like(p))
        port(theirs, ours)
        x = x_(*shape)
        want = run_torch(theirs, x).numpy()
        got = ours(last(x)).numpy() if isinstance(theirs, tnn.GroupNorm) else ours(x).numpy()
        close(got, last(want) if isinstance(theirs, tnn.GroupNorm) else want)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_batch_norm_with_running_statistics(dims):
    theirs = getattr(tnn, f"BatchNorm{dims}d")(5)
    ours = getattr(wl.nn, f"BatchNorm{dims}d")(5)
    shape = (4, 5) + (3,) * dims
    theirs.train()
    for _ in range(3):                     # non-trivial running statistics
        run_torch(theirs, x_(*shape) * 2 + 1)
    port(theirs, ours)
    assert int(ours.num_batches_tracked.item()) == 3
    x = x_(*shape)
    close(ours(last(x)).numpy(), last(run_torch(theirs, x).numpy()))


# ----------------------------------------------------------------------------- recurrent
@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_recurrent_layers(kind):
    kw = dict(num_layers=2, bidirectional=True, batch_first=True)
    theirs, ours = getattr(tnn, kind)(4, 5, **kw), getattr(wl.nn, kind)(4, 5, **kw)
    port(theirs, ours)
    x = x_(3, 7, 4)
    want, want_state = run_torch(theirs, x)
    got, got_state = ours(x)
    close(got.numpy(), want.numpy())
    if kind == "LSTM":
        close(got_state[1].numpy(), want_state[1].numpy())
        got_state, want_state = got_state[0], want_state[0]
    close(got_state.numpy(), want_state.numpy())


@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell", "LSTMCell"])
def test_recurrent_cells(kind):
    theirs, ours = getattr(tnn, kind)(4, 5), getattr(wl.nn, kind)(4, 5)
    port(theirs, ours)
    x = x_(3, 4)
    want, got = run_torch(theirs, x), ours(x)
    if kind == "LSTMCell":
        want, got = want[1], got[1]
    close(got.numpy(), want.numpy())


# ----------------------------------------------------------------------------- attention
def test_multihead_attention_self_and_cross():
    theirs = tnn.MultiheadAttention(8, 2, batch_first=True)
    ours = wl.nn.MultiheadAttention(8, 2)
    with torch.no_grad():
        theirs.in_proj_bias.normal_()
        theirs.out_proj.bias.normal_()
    port(theirs, ours)
    q, kv = x_(2, 5, 8), x_(2, 7, 8)
    close(ours(q, kv, kv, need_weights=False)[0].numpy(),
          run_torch(lambda a, b: theirs(a, b, b, need_weights=False)[0], q, kv).numpy())


def test_multihead_attention_with_other_key_and_value_sizes():
    theirs = tnn.MultiheadAttention(8, 2, kdim=5, vdim=3, batch_first=True)
    ours = wl.nn.MultiheadAttention(8, 2, kdim=5, vdim=3)
    port(theirs, ours)
    q, k, v = x_(2, 4, 8), x_(2, 6, 5), x_(2, 6, 3)
    close(ours(q, k, v, need_weights=False)[0].numpy(),
          run_torch(lambda a, b, c: theirs(a, b, c, need_weights=False)[0], q, k, v).numpy())


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_layers(norm_first):
    kw = dict(dim_feedforward=16, dropout=0.0, activation="gelu", batch_first=True,
              norm_first=norm_first)
    enc_t, enc_w = (tnn.TransformerEncoderLayer(8, 2, **kw),
                    wl.nn.TransformerEncoderLayer(8, 2, **kw))
    dec_t, dec_w = (tnn.TransformerDecoderLayer(8, 2, **kw),
                    wl.nn.TransformerDecoderLayer(8, 2, **kw))
    port(enc_t, enc_w)
    port(dec_t, dec_w)
    src, tgt = x_(2, 6, 8), x_(2, 4, 8)
    close(enc_w(src).numpy(), run_torch(enc_t, src).numpy())
    close(dec_w(tgt, src).numpy(), run_torch(dec_t, tgt, src).numpy())


def test_whole_transformer():
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
              dim_feedforward=16, dropout=0.0, batch_first=True)
    theirs, ours = tnn.Transformer(**kw), wl.nn.Transformer(**kw)
    port(theirs, ours)
    src, tgt = x_(2, 6, 8), x_(2, 4, 8)
    mask = np.triu(np.full((4, 4), -np.inf, np.float32), 1)
    close(ours(src, tgt, tgt_mask=mask).numpy(),
          run_torch(lambda a, b, m: theirs(a, b, tgt_mask=m), src, tgt, mask).numpy())


# ----------------------------------------------------------------------------- a user's model
class TorchNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 4, 3, padding=1)
        self.norm = tnn.BatchNorm2d(4)
        self.scale = tnn.Parameter(torch.randn(4))
        self.head = tnn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.norm(self.conv(x))) * self.scale[:, None, None]
        return self.head(h.mean((2, 3)))


class WlNet(wl.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = wl.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = wl.nn.BatchNorm2d(4)
        self.scale = wl.nn.Parameter(np.zeros(4, np.float32))
        self.head = wl.nn.Linear(4, 2)

    def forward(self, x):
        h = wl.relu(self.norm(self.conv(x))) * self.scale
        return self.head(h.mean((1, 2)))


def test_a_model_of_your_own_and_a_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    theirs, ours = TorchNet().eval(), WlNet()
    file = tmp_path / "net.safetensors"
    save_file(theirs.state_dict(), str(file))
    ours.load_torch_state_dict(str(file))
    ours.eval()
    x = x_(2, 3, 6, 6)
    close(ours(last(x)).numpy(), run_torch(theirs, x).numpy())


def test_export_goes_back_into_torch():
    ours, theirs = WlNet(), TorchNet()
    state = {k: torch.from_numpy(v) for k, v in torch_state_dict(ours).items()}
    theirs.load_state_dict(state)
    ours.eval()
    theirs.eval()
    x = x_(2, 3, 6, 6)
    close(ours(last(x)).numpy(), run_torch(theirs, x).numpy())


def test_bfloat16_weights_arrive_as_float32():
    theirs, ours = tnn.Linear(3, 2).to(torch.bfloat16), wl.nn.Linear(3, 2)
    port(theirs, ours)
    close(ours.weight.numpy(), theirs.weight.float().detach().numpy().T, atol=0)


# ----------------------------------------------------------------------------- refusals
def test_unmappable_keys_are_refused_by_name():
    theirs = tnn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True)
    with pytest.raises(ValueError, match="'bias_k' cannot be mapped.*add_bias_kv"):
        wl.nn.MultiheadAttention(8, 2).load_torch_state_dict(theirs.state_dict())
    theirs = tnn.LSTM(4, 6, proj_size=3)
    with pytest.raises(ValueError, match="'weight_hr_l0' cannot be mapped.*proj_size"):
        wl.nn.LSTM(4, 6).load_torch_state_dict(theirs.state_dict())


def test_layers_without_a_torch_twin_are_refused():
    ours = wl.nn.Sequential(wl.nn.Linear(2, 2), wl.nn.ClassToken(2))
    with pytest.raises(ValueError, match=r"'1.cls_token' belongs to wonderland's ClassToken"):
        ours.load_torch_state_dict({"0.weight": np.zeros((2, 2)), "0.bias": np.zeros(2)})


def test_missing_unexpected_and_misshapen_keys():
    theirs = tnn.Sequential(tnn.Linear(5, 7), tnn.Linear(7, 3))
    state = dict(theirs.state_dict())
    ours = wl.nn.Sequential(wl.nn.Linear(5, 7), wl.nn.Linear(7, 3))
    before = ours[0].weight.numpy().copy()
    with pytest.raises(KeyError, match=r"missing keys \['1.bias'\]; unexpected keys \['2.bias'\]"):
        ours.load_torch_state_dict({**{k: v for k, v in state.items() if k != "1.bias"},
                                    "2.bias": state["1.bias"]})
    bad = dict(state, **{"1.weight": torch.zeros(3, 6)})
    with pytest.raises(ValueError, match=r"'1.weight' has shape \(3, 6\).*needs \(3, 7\)"):
        ours.load_torch_state_dict(bad)
    np.testing.assert_array_equal(ours[0].weight.numpy(), before)      # nothing copied
    keys = ours.load_torch_state_dict({k: v for k, v in state.items() if k != "1.bias"},
                                      strict=False)
    assert keys.missing_keys == ["1.bias"] and keys.unexpected_keys == []
    with pytest.raises(KeyError, match="strip that prefix"):
        ours.load_torch_state_dict({f"module.{k}": v for k, v in state.items()})
    with pytest.raises(TypeError, match="pass its state_dict"):
        ours.load_torch_state_dict(theirs)


def test_grouped_query_attention_has_no_twin():
    with pytest.raises(ValueError, match="num_kv_heads=1.*no PyTorch twin"):
        wl.nn.MultiheadAttention(8, 2, num_kv_heads=1).load_torch_state_dict({})


def test_every_twin_is_a_layer_of_wl_nn():
    assert {"Linear", "Conv2d", "LSTM", "MultiheadAttention", "BatchNorm"} <= set(TWIN_LAYERS)
    assert all(isinstance(getattr(wl.nn, name, None), type) for name in TWIN_LAYERS)
