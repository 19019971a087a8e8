"""Modules, parameters, initialisers, layers and activations."""

import math

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn
from wonderland.nn import functional as F
from conftest import check_primitive, f64

R = np.random.default_rng(5)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.second = nn.Linear(4, 2, bias=False)
        self.scale = nn.Parameter(np.ones(2))
        self.register_buffer("count", wl.zeros(()))
        self.note = "not a parameter"

    def forward(self, x):
        return self.second(wl.tanh(self.first(x))) * self.scale


def test_registration_and_traversal():
    m = TwoLayer()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "first.weight", "first.bias", "second.weight"] or \
        set(names) == {"scale", "first.weight", "first.bias", "second.weight"}
    assert m.num_parameters() == 2 + 12 + 4 + 8
    assert [n for n, _ in m.named_children()] == ["first", "second"]
    assert set(m.state_dict()) == set(names) | {"count"}
    assert m.second.bias is None and m.note == "not a parameter"
    assert all(p.requires_grad for p in m.parameters())
    assert "Linear(in_features=3, out_features=4, bias=True)" in repr(m)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        m.missing


def test_forward_backward_and_zero_grad():
    m = TwoLayer()
    out = m(wl.random.normal((5, 3)))
    assert out.shape == (5, 2)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_state_dict_round_trip_and_errors():
    a, b = TwoLayer(), TwoLayer()
    x = wl.random.normal((2, 3))
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    sd = a.state_dict()
    sd["first.weight"] = wl.zeros((4, 3))
    with pytest.raises(ValueError, match=r"shape mismatch for 'first.weight'.*\(4, 3\).*\(3, 4\)"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    del sd["scale"]
    sd["extra"] = wl.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['scale'\].*unexpected keys \['extra'\]"):
        b.load_state_dict(sd)
    missing, unexpected = b.load_state_dict(sd, strict=False)
    assert missing == ["scale"] and unexpected == ["extra"]


def test_train_eval_modes_and_dtype_conversion():
    m = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5), nn.ReLU())
    assert m.training and m[1].training
    m.eval()
    assert not m.training and not m[1].training
    x = wl.ones((4, 2))
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())
    m.double()
    assert all(p.dtype == wl.float64 for p in m.parameters())


def test_functional_call_gradients_match_backward():
    m = TwoLayer().double()
    x = f64(R.standard_normal((4, 3)))
    params = dict(m.named_parameters())

    def loss(p):
        return (nn.functional_call(m, p, x) ** 2).sum()

    grads = wl.grad(loss)(params)
    (m(x) ** 2).sum().backward()
    for name, p in m.named_parameters():
        # the same module's operations in the same order, swept by the same engine: identical
        np.testing.assert_allclose(grads[name].numpy(), p.grad.numpy(), rtol=1e-12)
    assert m.first.weight is params["first.weight"]          # restored after the call
    wl.testing.check_grads(loss, ({k: v.detach() for k, v in params.items()},), order=2)
    with pytest.raises(KeyError, match="no parameter or buffer named 'nope'"):
        nn.functional_call(m, {"nope": wl.zeros(1)}, x)


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[0], nn.Linear) and len(seq[1:]) == 2
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(list(ml.parameters())) == 6
    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.Linear(1, 2)
    assert set(md) == {"a", "b"} and len(list(md.parameters())) == 4
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.Linear(1, 1), "relu")


def test_linear_and_embedding():
    lin = nn.Linear(5, 3)
    assert lin.weight.shape == (5, 3) and lin.bias.shape == (3,)
    assert np.abs(lin.weight.numpy()).max() <= 1 / math.sqrt(5)
    out = lin(wl.ones((2, 7, 5)))
    assert out.shape == (2, 7, 3)
    with pytest.raises(ValueError, match=r"Linear\(in_features=5, out_features=3\): expected an "
                                         r"input of shape \(..., 5\) .* got shape \(2, 4\)"):
        lin(wl.ones((2, 4)))
    with pytest.raises(ValueError, match="linear: input features 4 do not match weight"):
        nn.functional.linear(wl.ones((2, 4)), lin.weight)
    emb = nn.Embedding(10, 4, padding_idx=0)
    idx = wl.tensor([[0, 3, 3], [9, 1, 0]])
    e = emb(idx)
    assert e.shape == (2, 3, 4)
    np.testing.assert_array_equal(e.numpy()[0, 0], 0.0)
    e.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad.numpy()[3], 2.0)     # used twice
    np.testing.assert_array_equal(emb.weight.grad.numpy()[0], 0.0)     # padding
    with pytest.raises(IndexError, match="index 10 is out of range for 10 embeddings"):
        emb(wl.tensor([10]))


def test_mlp_helper():
    mlp = nn.MLP([4, 16, 16, 3], activation="gelu", dropout=0.1)
    kinds = [type(m).__name__ for m in mlp]
    assert kinds == ["Linear", "GELU", "Dropout", "Linear", "GELU", "Dropout", "Linear"]
    assert mlp(wl.ones((2, 4))).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown name"):
        nn.MLP([2, 2, 2], activation="nope")


def test_initialisers():
    w = nn.Parameter(np.zeros((200, 300)))
    nn.init.xavier_uniform_(w)
    bound = math.sqrt(6 / 500)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.9 * bound
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 200), rel=0.05)
    nn.init.xavier_normal_(w)
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 500), rel=0.05)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    assert np.abs(w.numpy()).max() <= 1 / math.sqrt(200) + 1e-9
    q = nn.Parameter(np.zeros((6, 4)))
    nn.init.orthogonal_(q)
    np.testing.assert_allclose(q.numpy().T @ q.numpy(), np.eye(4), atol=1e-6)
    nn.init.zeros_(q)
    assert not q.numpy().any()
    nn.init.ones_(q)
    assert (q.numpy() == 1).all()
    assert nn.init.fans((3, 3, 16, 32)) == (144, 288)
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        nn.init.calculate_gain("nope")


ACTS = [
    ("relu", F.relu), ("leaky_relu", lambda x: F.leaky_relu(x, 0.1)),
    ("softplus", F.softplus), ("softplus_beta", lambda x: F.softplus(x, beta=2.0, threshold=3.0)),
    ("elu", lambda x: F.elu(x, 0.7)), ("gelu", F.gelu),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")), ("silu", F.silu),
    ("sigmoid", F.sigmoid), ("tanh", F.tanh), ("log_sigmoid", F.log_sigmoid),
    ("softmax", F.softmax), ("log_softmax", F.log_softmax),
]


@pytest.mark.parametrize("name,fn", ACTS, ids=[a[0] for a in ACTS])
def test_activation_gradients(name, fn):
    x = R.uniform(-2, 2, (3, 4))
    x[np.abs(x) < 0.2] = 0.5
    if name == "softplus_beta":
        x[np.abs(2 * x - 3.0) < 0.2] = 0.3
    order = 1 if name in ("relu", "leaky_relu", "elu") else 2
    check_primitive(fn, f64(x), order=order)


def test_activation_modules_match_functions():
    x = wl.random.normal((3, 5))
    pairs = [(nn.ReLU(), F.relu(x)), (nn.LeakyReLU(0.2), F.leaky_relu(x, 0.2)),
             (nn.Softplus(beta=2.0), F.softplus(x, 2.0)), (nn.ELU(alpha=0.5), F.elu(x, 0.5)),
             (nn.GELU("tanh"), F.gelu(x, "tanh")), (nn.SiLU(), F.silu(x)),
             (nn.Sigmoid(), F.sigmoid(x)), (nn.Tanh(), F.tanh(x)), (nn.Softmax(axis=0), F.softmax(x, 0)),
             (nn.LogSoftmax(), F.log_softmax(x)), (nn.Identity(), x)]
    for module, expected in pairs:
        np.testing.assert_allclose(module(x).numpy(), expected.numpy(), rtol=1e-6)
    assert "negative_slope=0.2" in repr(nn.LeakyReLU(0.2))
    assert nn.Flatten()(wl.ones((2, 3, 4))).shape == (2, 12)


@pytest.mark.parametrize("axis", [0, -1])
def test_softmax_modules_accept_a_0d_input(axis):
    x = f64(0.3)
    for module, fn, value in [(nn.Softmax(axis), F.softmax, 1.0),
                              (nn.Softmax(dim=axis), F.softmax, 1.0),
                              (nn.LogSoftmax(axis), F.log_softmax, 0.0)]:
        assert module(x).shape == () and module(x).item() == value
        assert fn(x, dim=axis).item() == value
        check_primitive(module, x)
    g = wl.grad(lambda t: nn.Softmax(axis)(t) * 3.0)(x)
    assert g.item() == 0.0
    with pytest.raises(ValueError, match="softmax: axis 1 is out of range for a tensor with 0"):
        nn.Softmax(1)(x)


def test_flatten_module_with_an_empty_batch():
    x = wl.random.normal((0, 3, 4))
    assert nn.Flatten()(x).shape == (0, 12)
    assert nn.Flatten(0, 1)(wl.random.normal((2, 0, 4))).shape == (0, 4)
    out, pullback = wl.vjp(nn.Flatten(), x)
    assert pullback(wl.zeros((0, 12)))[0].shape == (0, 3, 4)


def test_softplus_and_elu_are_stable_for_large_inputs():
    x = wl.tensor([-1000.0, 1000.0])
    assert np.isfinite(F.softplus(x).numpy()).all()
    g = wl.grad(lambda v: F.elu(v).sum())(x)
    np.testing.assert_allclose(g.numpy(), [0.0, 1.0])
    g = wl.grad(lambda v: F.softplus(v).sum())(x)
    np.testing.assert_allclose(g.numpy(), [0.0, 1.0])


def test_dropout_is_inverted_and_seeded():
    x = wl.ones((1000, 100))
    g = wl.random.Generator(0)
    y = F.dropout(x, 0.3, training=True, generator=g).numpy()
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.7)}
    assert y.mean() == pytest.approx(1.0, abs=0.01)
    assert F.dropout(x, 0.3, training=False) is x
    a = F.dropout(x, 0.5, generator=wl.random.Generator(1)).numpy()
    b = F.dropout(x, 0.5, generator=wl.random.Generator(1)).numpy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="dropout: p must be in"):
        F.dropout(x, 1.5)
