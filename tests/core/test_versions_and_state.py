"""In-place updates bump version counters and a stale saved value is an error; the
switches are per thread; randomness replays exactly under checkpointing; the values a
tensor hands to NumPy cannot be written to."""

import threading

import numpy as np
import pytest

import wonderland as wl


# ----------------------------------------------------------------------------- versions
def test_optimizer_step_between_forward_and_backward_is_an_error():
    lin = wl.nn.Linear(3, 2)
    opt = wl.optim.SGD(lin.parameters(), lr=0.1)
    x = wl.tensor(np.ones((4, 3), np.float32), requires_grad=True)   # so linear keeps w
    loss = (lin(x) ** 2).sum()
    loss.backward(retain_graph=True)
    opt.step()                                          # updates the weight in place
    with pytest.raises(RuntimeError, match=r"input 1 of 'linear'.*modified in place"):
        loss.backward()


def test_copy_bumps_the_version_and_views_share_it():
    w = wl.tensor(np.ones((2, 3)), requires_grad=True)
    v = w.detach()
    assert w.version == 0
    v.copy_(np.full((2, 3), 2.0))
    assert w.version == 1 and v.version == 1             # one counter for one memory
    np.testing.assert_allclose(w.numpy(), 2.0)
    x = wl.tensor(np.ones((3,)), requires_grad=True)
    y = (x.reshape(3, 1) * x.reshape(1, 3)).sum()         # multiply saves the reshaped views
    x.detach().copy_(np.zeros(3))
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_load_state_dict_and_init_bump_versions():
    lin = wl.nn.Linear(2, 2)
    x = wl.tensor(np.ones((1, 2), np.float32), requires_grad=True)   # so linear keeps w
    loss = lin(x).sum() * lin(x).sum()
    lin.load_state_dict({k: v.numpy() * 0 for k, v in lin.state_dict().items()})
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()
    loss = (lin(x) * 2.0).sum() * lin(x).sum()
    wl.nn.init.normal_(lin.weight)
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_replacing_the_array_of_a_saved_tensor_is_detected():
    w = wl.tensor(np.ones(3), requires_grad=True)
    y = (w * w).sum()
    w.data = np.zeros(3)
    with pytest.raises(RuntimeError, match="array was replaced"):
        y.backward()


def test_copy_into_a_computed_tensor_is_refused():
    x = wl.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="copy_: cannot write into a tensor computed"):
        (x * 2).copy_([3.0])
    with pytest.raises(ValueError, match="copy_: cannot copy values of shape"):
        wl.tensor([1.0, 2.0]).copy_(np.ones(3))


def test_a_value_no_rule_reads_may_change():
    lin = wl.nn.Linear(2, 2)
    x = wl.tensor(np.ones((1, 2), np.float32))        # no gradient for x: w is not kept
    loss = lin(x).sum()
    wl.nn.init.normal_(lin.weight)
    loss.backward()                                    # d loss / d w reads only x
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.ones((2, 2)))


def test_update_after_backward_is_fine():
    lin = wl.nn.Linear(3, 1)
    opt = wl.optim.SGD(lin.parameters(), lr=0.1)
    x = wl.tensor(np.ones((2, 3), np.float32))
    for _ in range(3):
        opt.zero_grad()
        (lin(x) ** 2).sum().backward()
        opt.step()


# ----------------------------------------------------------------------------- read-only arrays
def test_numpy_views_of_a_tensor_are_read_only():
    t = wl.tensor([1.0, 2.0], requires_grad=True)
    y = (t * t).sum()
    view = np.asarray(t)
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 10.0
    y.backward()
    np.testing.assert_allclose(t.grad.numpy(), [2.0, 4.0])
    copy = np.array(t)                      # an explicit copy is the caller's to change
    copy[0] = 5.0
    assert t.numpy()[0] == 1.0


# ----------------------------------------------------------------------------- per-thread modes
def test_no_grad_in_one_thread_does_not_leak_into_another():
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with wl.no_grad():
            entered.set()
            release.wait(5)
            seen["worker"] = wl.is_grad_enabled()

    t = threading.Thread(target=worker)
    t.start()
    entered.wait(5)
    x = wl.tensor([1.0], requires_grad=True)
    seen["main"] = (x * 2).requires_grad           # main thread still records
    release.set()
    t.join(5)
    assert seen == {"worker": False, "main": True}


def test_set_grad_enabled_as_function_and_context():
    assert wl.is_grad_enabled()
    with wl.set_grad_enabled(False):
        assert not wl.is_grad_enabled()
    assert wl.is_grad_enabled()
    wl.set_grad_enabled(False)
    try:
        assert not wl.is_grad_enabled()
    finally:
        wl.set_grad_enabled(True)


def test_transforms_in_threads_are_independent():
    results = [None] * 4

    def work(i):
        x = wl.tensor(float(i + 1), dtype=wl.float64)
        results[i] = wl.grad(lambda v: wl.jvp(lambda u: u ** 3, (v,), (wl.ones_like(v),))[1])(x).item()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == pytest.approx([6.0 * (i + 1) for i in range(4)])


# ----------------------------------------------------------------------------- randomness
def test_checkpoint_replays_explicit_generators():
    gen = wl.random.Generator(3)

    def noisy(x):
        return wl.nn.functional.dropout(x, 0.5, training=True, generator=gen) * x

    def loss(x, ckpt):
        gen.seed(11)
        fn = wl.checkpoint(noisy) if ckpt else noisy
        return fn(x).sum()

    x = wl.tensor(np.linspace(0.1, 1.0, 200))
    g_plain = wl.grad(lambda v: loss(v, False))(x)
    g_ckpt = wl.grad(lambda v: loss(v, True))(x)
    # the checkpoint replays the same elementwise operations on the same draws: identical bits
    np.testing.assert_array_equal(g_ckpt.numpy(), g_plain.numpy())
    # the generator moves on as if the function ran once
    gen.seed(11)
    noisy(x)
    after_plain = gen.get_state()
    loss(x, True)
    assert gen.get_state() == after_plain


def test_checkpoint_replays_the_global_and_an_explicit_generator_together():
    gen = wl.random.Generator(5)

    def noisy(x):
        a = wl.random.bernoulli(0.5, x.shape, dtype=x.dtype)
        b = wl.random.bernoulli(0.5, x.shape, dtype=x.dtype, generator=gen)
        return x * a + x * x * b

    x = wl.tensor(np.ones(100), requires_grad=True)
    wl.random.seed(1)
    gen.seed(2)
    y = wl.checkpoint(noisy)(x)
    y.sum().backward()
    wl.random.seed(1)
    gen.seed(2)
    a = wl.random.bernoulli(0.5, (100,), dtype=wl.float64).numpy()
    b = wl.random.bernoulli(0.5, (100,), dtype=wl.float64, generator=gen).numpy()
    # x = 1 and masks of 0 and 1: every term is exact
    np.testing.assert_array_equal(x.grad.numpy(), a + 2 * b)


# ----------------------------------------------------------------------------- kinks
@pytest.mark.parametrize("fn,point,expected", [
    (wl.relu, 0.0, 0.0),                                   # PyTorch: relu'(0) = 0
    (wl.abs, 0.0, 0.0),                                    # sign(0) = 0
    (lambda x: wl.clip(x, 0.0, 1.0), 0.0, 1.0),            # bounds pass the gradient
    (lambda x: wl.clip(x, 0.0, 1.0), 1.0, 1.0),
    (lambda x: wl.clip(x, 0.0, 1.0), 1.5, 0.0),
    (lambda x: wl.maximum(x, 0.0), 0.0, 0.5),              # ties split
    (lambda x: wl.minimum(x, 0.0), 0.0, 0.5),
])
def test_derivatives_at_kinks(fn, point, expected):
    x = wl.tensor([point], dtype=wl.float64)
    rev = wl.grad(lambda v: fn(v).sum())(x).item()
    fwd = wl.jvp(lambda v: fn(v), (x,), (wl.ones_like(x),))[1].item()
    assert rev == expected and fwd == expected


def test_max_reduction_splits_ties_in_both_modes():
    x = wl.tensor([1.0, 3.0, 3.0, 2.0], dtype=wl.float64)
    np.testing.assert_allclose(wl.grad(lambda v: v.max())(x).numpy(), [0, 0.5, 0.5, 0])
    t = wl.tensor([0.0, 1.0, 3.0, 0.0], dtype=wl.float64)
    assert wl.jvp(lambda v: v.max(), (x,), (t,))[1].item() == pytest.approx(2.0)


def test_vjp_rejects_a_cotangent_of_another_dtype():
    out, pullback = wl.vjp(lambda v: v * 2, wl.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="vjp: cotangent of dtype float64 for an output of dtype float32"):
        pullback(wl.tensor(np.ones(2)))
