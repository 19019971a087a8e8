"""wl.jit: a traced program gives what running the function gives, on new inputs too;
it retraces on a new signature; what it cannot replay raises during tracing."""

import numpy as np
import pytest

import wonderland as wl

nn = wl.nn
F = nn.functional


def _grads_equal(a, b, rtol=1e-6, atol=1e-7):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=rtol, atol=atol, err_msg=k)


def _loss_and_grads(model, loss):
    """``run(params, x, y) -> (loss, grads)``: the parameters are an argument, so a
    jitted ``run`` reads them afresh at every call (an optimiser may give them new
    arrays)."""
    def run(params, x, y):
        return wl.value_and_grad(lambda p: loss(nn.functional_call(model, p, x), y))(params)

    return run, dict(model.named_parameters())


def _check_against_eager(model, loss, make_batch, n_batches=3):
    run, params = _loss_and_grads(model, loss)
    fast = wl.jit(run)
    for i in range(n_batches):                    # trace, checked replay, replay
        x, y = make_batch(i)
        l_eager, g_eager = run(params, x, y)
        l_jit, g_jit = fast(params, x, y)
        np.testing.assert_allclose(l_jit.numpy(), l_eager.numpy(), rtol=1e-6)
        _grads_equal(g_jit, g_eager)
        assert not l_jit.requires_grad
    assert fast.traces == 1
    return fast


def test_mlp_gradients_equal_eager_and_retrace_on_new_shape():
    wl.random.seed(0)
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 5))

    def batch(i, n=16):
        return (wl.tensor(rng.standard_normal((n, 20)).astype(np.float32)),
                wl.tensor(rng.integers(0, 5, n)))

    fast = _check_against_eager(model, F.cross_entropy, batch)
    params = dict(model.named_parameters())
    x, y = batch(0, n=7)                          # a new batch size: a second program
    fast(params, x, y)
    assert fast.traces == 2
    assert fast.program_length(params, x, y) > 10


def test_cnn_gradients_equal_eager():
    wl.random.seed(1)
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3, padding=1), nn.GELU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 6, 3))

    def batch(i):
        return (wl.tensor(rng.standard_normal((5, 8, 8, 1)).astype(np.float32)),
                wl.tensor(rng.integers(0, 3, 5)))

    _check_against_eager(model, F.cross_entropy, batch)


def test_transformer_block_gradients_equal_eager():
    wl.random.seed(2)
    rng = np.random.default_rng(2)
    model = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)

    def batch(i):
        return (wl.tensor(rng.standard_normal((3, 7, 16)).astype(np.float32)),
                wl.tensor(rng.standard_normal((3, 7, 16)).astype(np.float32)))

    _check_against_eager(model, F.mse_loss, batch)


def test_training_with_jitted_gradients_matches_eager_training():
    """Parameters are read through their tensors at every replay, so optimiser updates
    (which also move them into one flat buffer) are seen."""
    rng = np.random.default_rng(3)
    data = [(rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8))
            for _ in range(6)]
    trained = []
    for use_jit in (False, True):
        wl.random.seed(3)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        opt = wl.optim.Adam(model.parameters(), 1e-2)
        run, params = _loss_and_grads(model, F.cross_entropy)
        step = wl.jit(run) if use_jit else run
        for x, y in data:
            _, grads = step(params, wl.tensor(x), wl.tensor(y))
            for name, p in params.items():
                p.grad = grads[name]
            opt.step()
        trained.append({k: v.numpy().copy() for k, v in model.state_dict().items()})
    for k in trained[0]:
        np.testing.assert_allclose(trained[1][k], trained[0][k], rtol=1e-6, atol=1e-7)


def _x():
    return wl.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("body,match", [
    (lambda x: x * 2 if x.sum() > 0 else x, "bool"),
    (lambda x: x * x.sum().item(), "item"),
    (lambda x: x * float(x.max()), "item"),
    (lambda x: x + x.numpy().sum(), "numpy"),
])
def test_value_dependent_code_raises_while_tracing(body, match):
    with pytest.raises(wl.JitError, match=match):
        wl.jit(body)(_x())


def test_side_effects_raise_while_tracing():
    w = wl.tensor(np.ones(3, np.float32), requires_grad=True)

    def backward_inside(x):
        loss = (x * w).sum()
        loss.backward()
        return loss

    with pytest.raises(wl.JitError, match="backward"):
        wl.jit(backward_inside)(_x())
    buf = wl.tensor(np.zeros(3, np.float32))
    with pytest.raises(wl.JitError, match="copy_"):
        wl.jit(lambda x: buf.copy_(x[0]))(_x())


def test_batch_norm_running_statistics_update_at_every_replay():
    rng = np.random.default_rng(6)
    xs = [wl.tensor(rng.standard_normal((8, 3)).astype(np.float32) * (i + 1)) for i in range(4)]
    eager, traced = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    fast = wl.jit(traced)
    for x in xs:                                  # trace, checked replay, replays
        np.testing.assert_allclose(fast(x).numpy(), eager(x).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(traced.running_mean.numpy(), eager.running_mean.numpy(),
                                   rtol=1e-6)
        np.testing.assert_allclose(traced.running_var.numpy(), eager.running_var.numpy(),
                                   rtol=1e-6)
    eager.eval()
    traced.eval()                                 # inference reads the statistics
    fast_eval = wl.jit(traced)
    for x in xs[:3]:
        np.testing.assert_allclose(fast_eval(x).numpy(), eager(x).numpy(), rtol=1e-5, atol=1e-6)


def test_a_numpy_view_of_a_traced_value_raises_while_tracing():
    with pytest.raises(wl.JitError, match="NumPy view"):
        wl.jit(lambda x: x[0] * wl.Tensor(x.data.reshape(-1)[:3]))(_x())
    with pytest.raises(wl.JitError, match="NumPy view"):
        wl.jit(lambda x, y: F.cross_entropy(x, wl.Tensor(y.data.reshape(-1))))(
            _x(), wl.tensor(np.array([[0], [2]])))  # (y.data.reshape: a view)


def test_a_value_baked_outside_the_operations_is_caught_on_first_replay():
    # .data read directly escapes the recorder: the sum becomes a constant of the trace
    fast = wl.jit(lambda x: x * wl.tensor(x.data.sum()))
    fast(_x())
    with pytest.raises(wl.JitError, match="disagrees"):
        fast(_x() + 1.0)
    # without the check the stale constant is used (this is what the check is for)
    unchecked = wl.jit(lambda x: x * wl.tensor(x.data.sum()), check=False)
    unchecked(_x())
    assert not np.allclose(unchecked(_x() + 1.0).numpy(), ((_x() + 1.0) * 21.0).numpy())


def test_arguments_and_results():
    fast = wl.jit(lambda d, scale: {"y": d["a"] * scale + d["b"], "n": 3})
    a = np.ones((2, 2), np.float32)
    out = fast({"a": a, "b": wl.tensor(a)}, 2.0)
    assert out["n"] == 3 and np.allclose(out["y"].numpy(), 3.0)
    out = fast({"a": a * 2, "b": wl.tensor(a)}, 2.0)                 # replayed
    assert np.allclose(out["y"].numpy(), 5.0) and fast.traces == 1
    fast({"a": a, "b": wl.tensor(a)}, 3.0)                            # a new static value
    assert fast.traces == 2
    rows = wl.jit(lambda x, where: x[where] * 2)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(rows(x, slice(1, 3)).numpy(), x[1:3] * 2)
    np.testing.assert_allclose(rows(x + 1, slice(1, 3)).numpy(), (x + 1)[1:3] * 2)
    np.testing.assert_allclose(rows(x, slice(0, 2)).numpy(), x[0:2] * 2)   # a new program
    assert rows.traces == 2
    with pytest.raises(TypeError, match="by position"):
        fast(a, scale=2.0)
    with pytest.raises(TypeError, match="hashable"):
        fast({"a": a, "b": wl.tensor(a)}, {1, 2})
    with pytest.raises(TypeError, match="expected a function"):
        wl.jit(3)


def test_random_draws_are_replayed_anew_and_match_eager_with_the_same_generator_state():
    gen = wl.random.Generator(5)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5, gen), nn.Linear(8, 2))
    run, params = _loss_and_grads(model, F.mse_loss)
    fast = wl.jit(run)
    x = wl.tensor(np.ones((6, 4), np.float32))
    y = wl.tensor(np.zeros((6, 2), np.float32))
    masks = []
    for _ in range(4):                 # trace, checked replay (rewinds the generator), replay
        state = gen.get_state()
        loss, grads = fast(params, x, y)
        after = gen.get_state()
        gen.set_state(state)           # the same draws, run eagerly
        loss_eager, grads_eager = run(params, x, y)
        assert gen.get_state() == after
        np.testing.assert_allclose(loss.numpy(), loss_eager.numpy(), rtol=1e-6)
        _grads_equal(grads, grads_eager)
        masks.append(float(loss.numpy()))
    assert fast.traces == 1
    assert len(set(masks)) == len(masks)          # new masks at each call: new losses


def test_trainer_with_jit_trains_as_without():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    results = []
    for use_jit in (False, True):
        wl.random.seed(4)
        gen = wl.random.Generator(9)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2, gen), nn.Linear(16, 3))
        model.unused = nn.Parameter(np.ones((2, 2), np.float32))   # no gradient: left alone
        opt = wl.optim.AdamW(model.parameters(), 1e-2)
        loader = wl.data.DataLoader(wl.data.TensorDataset(x, y), 16, shuffle=True,
                                    generator=wl.random.Generator(1))
        trainer = wl.train.Trainer(model, opt, F.cross_entropy, progress=False,
                                   accumulate_steps=2, clip_grad_norm=1.0, jit=use_jit)
        trainer.fit(loader, 3)
        results.append(({k: v.numpy().copy() for k, v in model.state_dict().items()},
                        trainer.history))
        if use_jit:
            assert trainer._jitted.traces == 2            # batches of 16 and the last of 8
    (eager, h_eager), (fast, h_fast) = results
    assert any(k.startswith("unused") for k in eager)
    for k in eager:
        np.testing.assert_allclose(fast[k], eager[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm", "s4d", "mamba", "rwkv", "linear attention",
                                  "transformer"])
def test_sequence_layers_trace_and_replay_like_eager(kind):
    """Every sequence layer family through jit: the checked first replay (new tokens)
    raises if any backward rule computed arrays outside the recorded steps."""
    from wonderland.experiments.ch13_recurrent import TokenModel

    wl.random.seed(7)
    if kind in ("rnn", "gru"):
        layer = nn.RNN(8, 8) if kind == "rnn" else nn.GRU(8, 8)
        emb, head = nn.Embedding(5, 8), nn.Linear(8, 5)
        model = nn.Sequential(emb, _FirstOutput(layer), head)
    else:
        model = TokenModel(kind, 5, 8, 1, max_len=16)
    rng = np.random.default_rng(7)

    def batch(i):
        return wl.tensor(rng.integers(0, 5, (3, 6))), wl.tensor(rng.integers(0, 5, (3, 6)))

    def loss(logits, y):
        return F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1))

    _check_against_eager(model, loss, batch)


class _FirstOutput(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)[0]
