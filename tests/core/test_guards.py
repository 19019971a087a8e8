"""``wl.jit`` against eager execution when the world around the traced function changes.

Every layer family runs as two twin models built from one seed: one through a jitted
function, the other eagerly. After each change — new argument values (index arguments
included), a mode switch, a replaced parameter, a rebound closure variable — the jitted
result must equal the eager one (or ``jit`` must raise): a stale program is a failure.
"""

import numpy as np
import pytest

import wonderland as wl
from wonderland import nn
from wonderland.core.tracing import JitError

RTOL, ATOL = 2e-5, 2e-6          # float32: the replay runs the eager operations (or
                                 # fused loops of them in the same dtypes)


def _close(got, want, label):
    got, want = np.asarray(got.numpy()), np.asarray(want.numpy())
    assert got.shape == want.shape, f"{label}: shapes {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=label)


def _twins(build):
    wl.random.seed(0)
    a = build()
    wl.random.seed(0)
    b = build()
    return a, b


def _replace_first_parameter(models):
    """Give the first parameter of each twin the same new Parameter (a replacement, not an
    in-place update)."""
    name = next(iter(dict(models[0].named_parameters())))
    owner_path, _, attr = name.rpartition(".")
    for m in models:
        owner = dict(m.named_modules())[owner_path]
        old = getattr(owner, attr)
        setattr(owner, attr, nn.Parameter(old.numpy() * 0.5 + 0.25))


def run_scenario(build, forward, inputs):
    """``forward(model, *args)`` through ``wl.jit`` on one twin and eagerly on the other,
    across new argument values, eval/train switches, a replaced parameter and a rebound
    closure number; ``inputs(k)`` gives the k-th set of arguments (same shapes)."""
    a, b = _twins(build)
    scale = 1.0

    def traced(*args):
        return forward(a, *args) * scale

    jf = wl.jit(traced)

    def compare(args, label):
        wl.random.seed(123)
        got = jf(*args)
        wl.random.seed(123)
        want = forward(b, *args) * scale
        _close(got, want, label)
        for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers()):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=RTOL, atol=ATOL,
                                       err_msg=f"{label}: buffer {name}")

    first, second = inputs(0), inputs(1)
    a.train(), b.train()
    compare(first, "train, traced")
    compare(first, "train, first replay")
    compare(second, "train, new argument values")
    a.eval(), b.eval()
    compare(second, "switched to eval")
    compare(first, "eval, replay")
    a.train(), b.train()
    compare(first, "back to train")
    _replace_first_parameter((a, b))
    compare(first, "a parameter replaced")
    scale = 2.5
    compare(second, "closure number rebound")
    return jf


def _normal(shape, k):
    return wl.random.normal(shape, generator=wl.random.Generator(100 + k))


# ----------------------------------------------------------------------------- dense families
def test_mlp_with_dropout():
    jf = run_scenario(
        lambda: nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)),
        lambda m, x: m(x), lambda k: (_normal((8, 4), k),))
    assert jf.traces >= 3           # the mode switch, the parameter and the number


def test_cnn_with_batch_norm_and_dropout():
    def build():
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                             nn.Dropout(0.25), nn.MaxPool2d(2), nn.GlobalAvgPool(),
                             nn.Linear(6, 2))

    run_scenario(build, lambda m, x: m(x), lambda k: (_normal((4, 8, 8, 3), k),))


def test_transformer_encoder_with_padding_masks():
    def inputs(k):
        mask = np.zeros((2, 5), bool)
        mask[k % 2, 3 + k:] = True                      # other padded positions
        return _normal((2, 5, 16), k), wl.tensor(mask)

    run_scenario(lambda: nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1),
                 lambda m, x, pad: m(x, src_key_padding_mask=pad), inputs)


def test_lstm_with_lengths():
    run_scenario(lambda: nn.LSTM(4, 8, batch_first=True),
                 lambda m, x, lengths: m(x, lengths=lengths)[0],
                 lambda k: (_normal((3, 6, 4), k), wl.tensor(np.array([6, 2 + k, 4 - k]))))


def test_lengths_are_checked_at_every_replay():
    lstm = nn.LSTM(4, 8, batch_first=True)
    f = wl.jit(lambda x, lengths: lstm(x, lengths=lengths)[0])
    x = _normal((2, 5, 4), 0)
    f(x, wl.tensor(np.array([5, 3]))), f(x, wl.tensor(np.array([1, 2])))
    with pytest.raises(ValueError, match=r"LSTM: lengths must lie in \[0, 5\]"):
        f(x, wl.tensor(np.array([9, 2])))


def test_mamba():
    run_scenario(lambda: nn.Mamba(8, d_state=4),
                 lambda m, x: m(x), lambda k: (_normal((2, 7, 8), k),))


# ----------------------------------------------------------------------------- graph families
def _edges(k):
    rng = np.random.default_rng(k)
    return wl.tensor(rng.integers(0, 6, size=(2, 10)))


@pytest.mark.parametrize("layer", ["GCNConv", "GATConv", "GINConv", "SAGEConv-mean",
                                   "SAGEConv-max"])
def test_graph_layers_follow_new_edges(layer):
    def build():
        if layer == "GINConv":
            return nn.GINConv(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
        if layer.startswith("SAGEConv"):
            return nn.SAGEConv(4, 3, aggr=layer.split("-")[1])
        if layer == "GATConv":
            return nn.GATConv(4, 3, heads=2, dropout=0.2)
        return nn.GCNConv(4, 3)

    run_scenario(build, lambda m, x, ei: m(x, ei), lambda k: (_normal((6, 4), k), _edges(k)))


def test_jitted_value_and_grad_follows_new_edges():
    conv = nn.GCNConv(4, 3)
    params = dict(conv.named_parameters())

    def loss_and_grads(p, x, ei):
        return wl.value_and_grad(lambda q: (nn.functional_call(conv, q, x, ei) ** 2).sum())(p)

    jf = wl.jit(loss_and_grads)
    x = _normal((6, 4), 0)
    for k in (0, 0, 1, 2, 1):
        got_loss, got = jf(params, x, _edges(k))
        want_loss, want = loss_and_grads(params, x, _edges(k))
        _close(got_loss, want_loss, f"loss, edges {k}")
        for name in want:
            _close(got[name], want[name], f"gradient of {name}, edges {k}")


def test_new_edges_trace_again_and_say_why(monkeypatch, capsys):
    monkeypatch.setenv("WONDERLAND_JIT_VERBOSE", "1")
    conv = nn.GCNConv(4, 3)
    jf = wl.jit(lambda x, ei: conv(x, ei))
    x = _normal((6, 4), 0)
    jf(x, _edges(0))
    jf(x, _edges(0))
    assert jf.traces == 1
    jf(x, _edges(1))
    assert jf.traces == 2
    assert "argument tensor 1" in jf.retrace_reasons[-1]
    assert "GCNConv" in jf.retrace_reasons[-1]
    assert "tracing <lambda> again" in capsys.readouterr().err
    jf(x, _edges(0))                               # the first program is still kept
    assert jf.traces == 2


# ----------------------------------------------------------------------------- single guards
def test_module_mode_change_stops_batch_norm_updates():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5))
    f = wl.jit(lambda x: model(x))
    x = _normal((8, 4), 0)
    model.train()
    f(x)
    f(x)
    stats = model[1].running_mean.numpy().copy()
    model.eval()
    out = f(x)
    np.testing.assert_array_equal(model[1].running_mean.numpy(), stats)
    _close(out, model(x), "eval mode")
    assert "eval mode" in f.retrace_reasons[-1]


def test_batch_norm_counts_batches_at_every_replay():
    bn = nn.BatchNorm1d(3, momentum=None)            # a cumulative average: needs the count
    twin = nn.BatchNorm1d(3, momentum=None)
    f = wl.jit(lambda x: bn(x))
    for k in range(4):
        x = _normal((5, 3), k)
        _close(f(x), twin(x), f"batch {k}")
    assert int(bn.num_batches_tracked.item()) == int(twin.num_batches_tracked.item()) == 4
    np.testing.assert_allclose(bn.running_mean.numpy(), twin.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), twin.running_var.numpy(), rtol=1e-6)


def test_rebound_closure_tensor_number_and_global():
    w = wl.tensor(np.ones(4, np.float32))
    scale = 2.0
    f = wl.jit(lambda x: x * w * scale)
    x = _normal((3, 4), 0)
    f(x), f(x)
    w = wl.tensor(np.full(4, 3.0, np.float32))
    _close(f(x), x * w * scale, "rebound tensor")
    scale = 5.0
    _close(f(x), x * w * scale, "rebound number")
    assert "'scale'" in f.retrace_reasons[-1] and "5.0" in f.retrace_reasons[-1]


OFFSET = 1.0


def _with_global(x):
    return x + OFFSET


def test_rebound_global():
    global OFFSET
    f = wl.jit(_with_global)
    x = _normal((3,), 0)
    f(x), f(x)
    OFFSET = 4.0
    try:
        _close(f(x), x + 4.0, "rebound global")
    finally:
        OFFSET = 1.0


def test_replaced_parameter_and_moved_dtype():
    lin = nn.Linear(4, 3)
    f = wl.jit(lambda x: lin(x))
    x = _normal((2, 4), 0)
    f(x), f(x)
    lin.weight = nn.Parameter(np.ones(tuple(lin.weight.shape), np.float32))
    _close(f(x), lin(x), "replaced weight")
    assert "weight" in f.retrace_reasons[-1]
    lin.bias.data = lin.bias.data.astype(np.float64)  # a new array of another dtype
    got = f(x)
    assert got.dtype == lin(x).dtype
    assert "float64" in f.retrace_reasons[-1]


def test_attribute_change_of_a_module_traces_again():
    drop = nn.Dropout(0.5)
    f = wl.jit(lambda x: drop(x))
    x = _normal((50,), 0)
    wl.random.seed(1)
    f(x)
    drop.p = 0.0
    _close(f(x), x, "dropout with p = 0")


def test_in_place_updates_replay_without_tracing_again():
    lin = nn.Linear(4, 3)
    opt = wl.optim.SGD(lin.parameters(), lr=0.1)
    f = wl.jit(lambda x: (lin(x) ** 2).sum())
    x = _normal((5, 4), 0)
    for _ in range(3):
        loss = f(x)
        _close(loss, (lin(x) ** 2).sum(), "after an optimiser step")
        lin.zero_grad()
        (lin(x) ** 2).sum().backward()
        opt.step()
    assert f.traces == 1


def test_index_argument_read_outside_the_steps_is_guarded():
    # library code that turns index values into constants (here: the unique ids, a
    # structure) makes the program valid for those values only
    def f(x, ids):
        return wl.ops.segment_sum(x, ids)            # num_segments from the ids' values

    jf = wl.jit(f)
    x = _normal((4, 2), 0)
    a, b = wl.tensor(np.array([0, 1, 1, 2])), wl.tensor(np.array([0, 0, 3, 3]))
    jf(x, a), jf(x, a)
    _close(jf(x, b), f(x, b), "other ids, another number of segments")


def test_values_computed_inside_cannot_size_a_result():
    def f(x):
        ids = (x > 0).astype(np.int64).sum(-1)         # computed by the function
        return wl.ops.segment_sum(x, ids)

    with pytest.raises(JitError, match="segment_sum.*computed inside the jitted function"):
        wl.jit(f)(_normal((4, 3), 0))


def test_index_range_is_checked_at_every_replay():
    emb = nn.Embedding(5, 3)
    f = wl.jit(lambda i: emb(i))
    f(wl.tensor(np.array([0, 4]))), f(wl.tensor(np.array([1, 2])))
    with pytest.raises(IndexError, match="embedding: index 7 is out of range for 5"):
        f(wl.tensor(np.array([7, 1])))


def test_embedding_padding_row_gets_no_gradient_at_a_replay():
    emb = nn.Embedding(5, 3, padding_idx=0)
    params = dict(emb.named_parameters())

    def grads(p, idx):
        return wl.grad(lambda q: nn.functional_call(emb, q, idx).sum())(p)["weight"]

    jf = wl.jit(grads)
    jf(params, wl.tensor(np.array([1, 2])))          # traced without padding
    got = jf(params, wl.tensor(np.array([0, 2])))     # replayed with the padding row
    _close(got, grads(params, wl.tensor(np.array([0, 2]))), "padding row")
    assert float(np.abs(got.numpy()[0]).sum()) == 0.0


def test_losses_follow_new_targets():
    def f(logits, t):
        return (nn.functional.nll_loss(nn.functional.log_softmax(logits), t)
                + nn.functional.multi_margin_loss(logits, t))

    jf = wl.jit(f)
    z = _normal((6, 4), 0)
    for t in ([0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 0, 1], [3, 3, 3, 0, 0, 2]):
        t = wl.tensor(np.array(t))
        _close(jf(z, t), f(z, t), f"targets {t.tolist()}")


def test_samplers_draw_anew_at_every_replay():
    d = wl.distributions.Categorical(probs=wl.tensor(np.array([0.2, 0.3, 0.5])))
    bern = wl.distributions.Bernoulli(probs=wl.tensor(np.array([0.5, 0.5])))
    f = wl.jit(lambda x: (x + d.sample((64,)).astype(np.float32).sum()
                          + bern.sample((64,)).sum()))
    x = wl.tensor(np.float32(0))
    draws = set()
    for _ in range(4):
        draws.add(float(f(x).item()))
    assert len(draws) > 1


def test_guard_check_cost_is_small():
    """Checking the guards costs a small fraction of a replay (counted in steps: the
    guards of a model's program are a handful of comparisons per parameter)."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    f = wl.jit(lambda x: model(x))
    f(_normal((4, 8), 0))
    guards = f.last_program.guards
    assert len(guards.constants) == 6                # one per parameter read
    assert len(guards.values) == 0                   # no argument values read on the host
