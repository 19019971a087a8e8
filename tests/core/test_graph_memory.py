"""The graph keeps only what the VJP rules need, frees intermediates user code drops, and
releases saved values during the backward sweep, not only after it."""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import wonderland as wl
from wonderland.core.engine import toposort


def test_each_primitive_saves_only_what_its_rule_reads():
    x = wl.tensor(np.ones((50, 50)), requires_grad=True)
    y = x.exp()
    assert y.grad_fn.saved is None                        # exp keeps its output ...
    assert y.grad_fn.out is not None                      # ... as an array, not the tensor
    z = x + y
    assert z.grad_fn.saved is None and z.grad_fn.out is None   # add keeps nothing
    r = wl.relu(z)
    assert r.grad_fn.saved is None and r.grad_fn.out is not None   # relu: its output
    m = r * x
    assert [s is not None for s in m.grad_fn.saved] == [True, True]
    c = r * 3.0                        # the constant needs no gradient: r is not kept
    assert [s is not None for s in c.grad_fn.saved] == [False, True]
    mx = wl.maximum(z, 0.5)
    assert mx.grad_fn.saved is None and mx.grad_fn.res[0].shape == (50, 50)   # tie weights


def test_dropped_intermediates_are_freed_during_the_forward():
    x = wl.tensor(np.ones((100, 100)), requires_grad=True)
    h = x * 2.0               # multiply by a constant keeps x (a leaf) and the constant
    ref = weakref.ref(h)
    y = wl.relu(h).sum()      # relu keeps a mask, not h
    del h
    gc.collect()
    assert ref() is None
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_saved_bytes_of_a_relu_mlp_is_the_hidden_activation_once():
    rng = np.random.default_rng(0)
    w1 = wl.tensor(rng.standard_normal((64, 128)), requires_grad=True)
    w2 = wl.tensor(rng.standard_normal((128, 10)), requires_grad=True)
    x = wl.tensor(rng.standard_normal((32, 64)))
    loss = (wl.relu(x @ w1) @ w2).sum()
    # x@w1 keeps w1 (a leaf, not counted; x needs no gradient, so w1's rule alone reads
    # it); relu keeps its output, which the second matmul keeps too: one array
    assert wl.autograd.saved_bytes(loss) == 32 * 128 * 8


def _chain(n, size):
    x = wl.tensor(np.ones((size,)), requires_grad=True)
    h = x
    for _ in range(n):
        h = wl.tanh(h * 1.0001)       # each tanh keeps its (fresh) output
    return x, h.sum()


def test_memory_falls_during_the_backward_sweep():
    """Watch traced memory from inside the sweep: a custom rule placed deep in the
    chain records the traced memory when it runs; by then the saved values of every
    node after it have been released."""
    size, n = 50_000, 20
    seen = []

    @wl.custom_vjp
    def probe(v):
        return v

    probe.defvjp(lambda v: (v, None), lambda res, g: (seen.append(
        tracemalloc.get_traced_memory()[0]) or g,))

    tracemalloc.start()
    try:
        x = wl.tensor(np.ones((size,)), requires_grad=True)
        h = probe(x * 1.0)
        for _ in range(n):
            h = wl.tanh(h * 1.0001)
        loss = h.sum()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        loss.backward()
    finally:
        tracemalloc.stop()
    held = n * size * 8                # the n saved tanh outputs
    assert seen, "the probe's rule did not run"
    # when the probe runs (last in the sweep), nearly all saved outputs are gone
    assert before - seen[0] > 0.8 * held


def test_retain_graph_keeps_saved_values():
    x, loss = _chain(5, 1000)
    loss.backward(retain_graph=True)
    nodes = toposort([loss])
    assert any(not n.freed for n in nodes)
    loss.backward()
    assert all(n.freed or n.out is None for n in nodes)


def test_backward_through_a_node_that_saved_nothing_works_twice():
    x = wl.tensor([1.0, 2.0], requires_grad=True)
    y = (x + 1.0).sum()
    y.backward()
    y.backward()                            # nothing was saved: PyTorch allows it too
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_a_rule_reading_an_unsaved_input_is_a_clear_error():
    bad = wl.Primitive("bad", lambda x: x * 2.0, vjp=lambda g, out, x: g * x, jvp=lambda t, out, x: t,
                       save=())
    x = wl.tensor([1.0], requires_grad=True)
    y = wl.apply(bad, (x,))
    with pytest.raises(TypeError, match="did not save"):
        y.sum().backward()
