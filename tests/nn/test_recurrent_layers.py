"""Linear-recurrent layers: every computation mode gives the same outputs, step-by-step
inference gives the full sequence's outputs, gradients check out on tiny instances, and
each layer's equations hold against a direct computation written here."""

import numpy as np
import pytest

import wonderland as wl

nn = wl.nn


@pytest.fixture
def f64():
    old = wl.get_default_dtype()
    wl.set_default_dtype(wl.float64)
    yield
    wl.set_default_dtype(old)


def run_steps(layer, x):
    state = layer.initial_state(x.shape[0], x.dtype)
    ys = []
    for t in range(x.shape[1]):
        y, state = layer.step(x[:, t], state)
        ys.append(y.numpy())
    return np.stack(ys, 1), state


def seq(rng, b=2, t=12, d=6):
    return wl.tensor(rng.standard_normal((b, t, d)))


LAYERS = {
    "S4D": lambda d: nn.S4D(d, d_state=8),
    "LRU": lambda d: nn.LRU(d, 10, r_min=0.4),
    "Mamba": lambda d: nn.Mamba(d, d_state=4),
    "RWKV": lambda d: nn.RWKVBlock(d, 1, 2),
    "AFTSimple": lambda d: nn.AFTSimple(d),
    "AFTFull": lambda d: nn.AFTFull(d, 16),
    "LinearAttention": lambda d: nn.LinearAttention(d, num_heads=2),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_step_inference_equals_the_full_sequence(name, rng, f64):
    wl.random.seed(1)
    layer = LAYERS[name](6)
    if name == "AFTFull":
        layer.pos_bias.data[...] = rng.standard_normal((16, 16))
    x = seq(rng)
    full = layer(x).numpy()
    steps, state = run_steps(layer, x)
    np.testing.assert_allclose(steps, full, atol=1e-10)
    assert np.abs(full).max() > 1e-3          # not a trivially zero layer


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_gradients(name, rng, f64):
    wl.random.seed(2)
    layer = LAYERS[name](4)
    x = rng.standard_normal((1, 5, 4))
    wl.testing.check_grads(lambda x: layer(x), (x,), order=1, modes=("rev",), atol=1e-6)
    params = dict(layer.named_parameters())
    for pname, p in params.items():
        g = wl.grad(lambda v: (wl.nn.functional_call(layer, {**params, pname: v},
                                                     wl.tensor(x)) ** 2).sum())(p.detach())
        assert g.shape == p.shape and np.isfinite(g.numpy()).all(), pname


def test_constant_state_size(rng):
    """The state of a recurrent layer does not grow with the steps taken."""
    for name in ("S4D", "LRU", "Mamba", "RWKV", "AFTSimple", "LinearAttention"):
        layer = LAYERS[name](6)
        x = wl.tensor(rng.standard_normal((2, 30, 6)).astype(np.float32))
        _, s10 = run_steps(layer, x[:, :10])
        _, s30 = run_steps(layer, x)
        assert [v.shape for v in _leaves(s10)] == [v.shape for v in _leaves(s30)], name
    _, grown = run_steps(LAYERS["AFTFull"](6), wl.tensor(rng.standard_normal((2, 12, 6))))
    assert len(grown) == 12                     # AFT-full keeps every past key and value


def _leaves(state):
    from wonderland.core.pytree import flatten
    return flatten(state)[0]


# ----------------------------------------------------------------------------- S4D
@pytest.mark.parametrize("init", ["legs", "lin", "real"])
def test_s4d_modes_agree(init, rng, f64):
    s4d = nn.S4D(5, d_state=8, init=init)
    x = seq(rng, d=5, t=40)
    conv = s4d(x, mode="conv").numpy()
    np.testing.assert_allclose(s4d(x, mode="scan").numpy(), conv, atol=1e-10)
    np.testing.assert_allclose(s4d(x, mode="recurrent").numpy(), conv, atol=1e-10)


def test_s4d_kernel_is_the_discretised_system(rng, f64):
    """K_l = 2 Re(C Ā^l B̄) with Ā = exp(ΔA), B̄ = (Ā − 1)/A, computed in complex numbers."""
    s4d = nn.S4D(3, d_state=4, init="lin")
    dt = np.exp(s4d.log_dt.numpy())[:, None]
    A = -np.exp(s4d.log_A_real.numpy()) + 1j * s4d.A_imag.numpy()
    C = s4d.C.numpy()[..., 0] + 1j * s4d.C.numpy()[..., 1]
    Ab = np.exp(dt * A)
    Bb = (Ab - 1) / A
    K = np.stack([2 * (C * Bb * Ab ** ell).sum(-1).real for ell in range(10)])
    np.testing.assert_allclose(s4d.kernel(10).numpy(), K, atol=1e-12)
    # S4D-Lin's initial eigenvalues, and LegS's come from the HiPPO matrix
    np.testing.assert_allclose(A[0], -0.5 + 1j * np.pi * np.arange(2))
    re, im = nn.ssm.hippo_legs_diagonal(8)
    assert np.allclose(re, -0.5) and np.all(np.diff(im) > 0) and len(im) == 4


def test_s4d_errors():
    with pytest.raises(ValueError, match="S4D: mode must be"):
        nn.S4D(4, mode="fft")
    with pytest.raises(ValueError, match=r"S4D: input must be \(b, t, 4\)"):
        nn.S4D(4)(wl.ones((2, 3, 5)))


# ----------------------------------------------------------------------------- LRU
def test_lru_parallel_equals_sequential_and_its_init(rng, f64):
    lru = nn.LRU(4, 16, r_min=0.9, r_max=0.99, max_phase=0.5)
    x = seq(rng, d=4, t=33)
    np.testing.assert_allclose(lru(x, method="parallel").numpy(), lru(x).numpy(), atol=1e-10)
    mag = np.exp(-np.exp(lru.nu_log.numpy()))
    assert np.all((mag >= 0.9 - 1e-9) & (mag <= 0.99 + 1e-9))
    assert np.all(np.exp(lru.theta_log.numpy()) <= 0.5)
    np.testing.assert_allclose(np.exp(lru.gamma_log.numpy()), np.sqrt(1 - mag ** 2))


# ----------------------------------------------------------------------------- Mamba
def test_mamba_fused_equals_reference_with_gradients(rng, f64):
    m = nn.Mamba(6, d_state=4, d_conv=3)
    x = wl.tensor(rng.standard_normal((2, 70, 6)), requires_grad=True)
    fast = m(x)
    slow = m(x, reference=True)
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), atol=1e-10)
    params = list(m.parameters())
    g = wl.tensor(rng.standard_normal(fast.shape))
    gf = wl.autograd.grad([fast], [x] + params, [g])
    gs = wl.autograd.grad([slow], [x] + params, [g])
    for a, b in zip(gf, gs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-9)


def test_mamba_reference_initialisation():
    wl.random.seed(0)
    m = nn.Mamba(32, d_state=16, expand=2)
    assert m.d_inner == 64 and m.dt_rank == 2
    np.testing.assert_allclose(-np.exp(m.A_log.numpy()), -np.tile(np.arange(1, 17), (64, 1)),
                               rtol=1e-6)
    dt = np.log1p(np.exp(m.dt_proj.bias.numpy()))            # softplus of the bias
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert np.abs(m.dt_proj.weight.numpy()).max() <= 2 ** -0.5
    np.testing.assert_allclose(m.D.numpy(), 1.0)
    assert m.x_proj.weight.shape == (64, 2 + 32)


def test_mamba_is_causal(rng):
    m = nn.Mamba(4, d_state=4)
    x = rng.standard_normal((1, 10, 4)).astype(np.float32)
    y1 = m(wl.tensor(x)).numpy()
    x[:, 6:] += 1.0
    y2 = m(wl.tensor(x)).numpy()
    np.testing.assert_allclose(y1[:, :6], y2[:, :6], atol=1e-6)
    assert np.abs(y1[:, 6:] - y2[:, 6:]).max() > 1e-3


# ----------------------------------------------------------------------------- RWKV / AFT / linear attention
def test_rwkv_fused_wkv_equals_reference(rng, f64):
    tm = nn.RWKVTimeMixing(6, 1, 3)
    x = seq(rng, t=20)
    np.testing.assert_allclose(tm(x).numpy(), tm(x, reference=True).numpy(), atol=1e-12)
    # reference initialisation: decay speeds rise across channels, mixes in [0, 1]
    assert np.all(np.diff(tm.time_decay.numpy()) > 0)
    assert tm.time_mix_k.numpy().min() >= 0 and tm.time_mix_k.numpy().max() <= 1


def test_aft_simple_and_full_match_their_definitions(rng, f64):
    x = seq(rng, t=8, d=4)
    simple = nn.AFTSimple(4)
    q, k, v = np.split(x.numpy() @ simple.qkv.weight.numpy() + simple.qkv.bias.numpy(), 3, -1)
    want = np.zeros_like(q)
    for t in range(8):
        w = np.exp(k[:, :t + 1])
        want[:, t] = (w * v[:, :t + 1]).sum(1) / w.sum(1)
    want = (1 / (1 + np.exp(-q)) * want) @ simple.out.weight.numpy() + simple.out.bias.numpy()
    np.testing.assert_allclose(simple(x).numpy(), want, atol=1e-12)
    full = nn.AFTFull(4, 8)
    full.pos_bias.data[...] = rng.standard_normal((8, 8))
    q, k, v = np.split(x.numpy() @ full.qkv.weight.numpy() + full.qkv.bias.numpy(), 3, -1)
    pw = full.pos_bias.numpy()
    want = np.zeros_like(q)
    for t in range(8):
        w = np.exp(k[:, :t + 1] + pw[t, :t + 1][None, :, None])
        want[:, t] = (w * v[:, :t + 1]).sum(1) / w.sum(1)
    want = (1 / (1 + np.exp(-q)) * want) @ full.out.weight.numpy() + full.out.bias.numpy()
    np.testing.assert_allclose(full(x).numpy(), want, atol=1e-12)


def test_linear_attention_recurrent_equals_the_quadratic_causal_form(rng, f64):
    """S_t, z_t summed step by step against φ(Q)φ(K)ᵀ masked below the diagonal."""
    q, k, v = (rng.standard_normal((2, 9, 3, 4)) for _ in range(3))
    got = nn.ssm.linear_attention_recurrent(wl.tensor(q), wl.tensor(k), wl.tensor(v)).numpy()
    phi = lambda z: np.where(z > 0, z + 1, np.exp(z))  # noqa: E731
    scores = np.einsum("bthd,bshd->bhts", phi(q), phi(k)) * np.tril(np.ones((9, 9)))
    want = np.einsum("bhts,bshd->bthd", scores, v) / (scores.sum(-1).transpose(0, 2, 1)[..., None] + 1e-6)
    np.testing.assert_allclose(got, want, atol=1e-10)


STEP_NAMES = {"S4D": "S4D.step", "LRU": "LRU.step", "Mamba": "Mamba.step",
              "RWKV": "RWKVTimeMixing.step", "AFTSimple": "AFTSimple.step",
              "AFTFull": "AFTFull.step", "LinearAttention": "LinearAttention.step"}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_step_refuses_a_state_of_another_batch(name, rng):
    layer = LAYERS[name](6)
    x = wl.tensor(rng.standard_normal((2, 6)).astype(np.float32))
    for batch in (3, 1):                      # 1 would broadcast silently
        state = layer.initial_state(batch)
        if name == "AFTFull":                 # its state is the past keys and values
            state = layer.step(wl.zeros((batch, 6)), state)[1]
        with pytest.raises(ValueError, match=rf"{STEP_NAMES[name]}: the state is for batch "
                                             rf"{batch} but the input has batch 2"):
            layer.step(x, state)
    layer.step(x, layer.initial_state(2))     # the matching batch still works


def test_step_refuses_states_of_the_wrong_form(rng):
    x = wl.tensor(rng.standard_normal((2, 6)).astype(np.float32))
    lru = LAYERS["LRU"](6)
    with pytest.raises(ValueError, match=r"LRU.step: the state must be 2 tensors \(as "
                                         r"initial_state\(batch\) gives\), got 1"):
        lru.step(x, lru.initial_state(2)[:1])
    with pytest.raises(ValueError, match=r"LRU.step: state tensor 1 must be \(2, 10\), "
                                         r"got \(2, 9\)"):
        lru.step(x, (wl.zeros((2, 10)), wl.zeros((2, 9))))


def test_aft_full_step_past_max_len_is_a_clear_error(rng):
    layer = nn.AFTFull(6, 3)
    x = wl.tensor(rng.standard_normal((2, 6)).astype(np.float32))
    state = layer.initial_state(2)
    for _ in range(3):
        _, state = layer.step(x, state)
    with pytest.raises(ValueError, match="AFTFull.step: step 4 is past max_len 3"):
        layer.step(x, state)
