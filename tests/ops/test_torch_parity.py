"""Forward values and gradients of every primitive against PyTorch (CPU, float64).

Each case builds the same function in wonderland and in PyTorch (layouts as given),
compares the outputs, then pulls the same random cotangent back through both and
compares every input's gradient. Skipped when torch is not installed.
"""

import numpy as np
import pytest

import wonderland as wl

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

R = np.random.default_rng(11)


def U(*shape, low=-1.5, high=1.5):
    return R.uniform(low, high, shape)


def P(*shape):
    return R.uniform(0.5, 2.0, shape)


def distinct(*shape):
    return R.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0


T = torch
F = torch.nn.functional

CASES = [
    # name, wonderland fn, torch fn, inputs
    ("add", wl.add, T.add, [U(3, 1), U(4)]),
    ("subtract", wl.subtract, T.sub, [U(2, 3), U(3)]),
    ("multiply", wl.multiply, T.mul, [U(3, 4), U(1, 4)]),
    ("divide", wl.divide, T.div, [U(3, 4), P(4)]),
    ("power", wl.power, T.pow, [P(3, 4), U(3, 4)]),
    ("pow_scalar", lambda x: x ** 3, lambda x: x ** 3, [U(5)]),
    ("pow_half", lambda x: x ** 0.5, lambda x: x ** 0.5, [P(5)]),
    ("negative", wl.negative, T.neg, [U(4)]),
    ("exp", wl.exp, T.exp, [U(3, 2)]),
    ("log", wl.log, T.log, [P(3, 2)]),
    ("log1p", wl.log1p, T.log1p, [P(3, 2)]),
    ("expm1", wl.expm1, T.expm1, [U(3, 2)]),
    ("sqrt", wl.sqrt, T.sqrt, [P(3, 2)]),
    ("abs", wl.abs, T.abs, [U(7)]),
    ("sin", wl.sin, T.sin, [U(3, 2)]),
    ("cos", wl.cos, T.cos, [U(3, 2)]),
    ("tan", wl.tan, T.tan, [U(3, 2, low=-1, high=1)]),
    ("tanh", wl.tanh, T.tanh, [U(3, 2)]),
    ("sigmoid", wl.sigmoid, T.sigmoid, [U(3, 2)]),
    ("erf", wl.erf, T.erf, [U(3, 2)]),
    ("relu", wl.relu, T.relu, [U(9)]),
    ("maximum", wl.maximum, T.maximum, [U(3, 4), U(4)]),
    ("minimum", wl.minimum, T.minimum, [U(3, 4), U(3, 4)]),
    ("maximum_ties", wl.maximum, T.maximum, [np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0])]),
    ("clip", lambda x: wl.clip(x, -0.5, 0.7), lambda x: T.clamp(x, -0.5, 0.7), [U(10)]),
    ("where", lambda x, y: wl.where(wl.tensor(np.arange(4) % 2 == 0), x, y),
     lambda x, y: T.where(T.tensor(np.arange(4) % 2 == 0), x, y), [U(3, 4), U(4)]),
    ("sum", lambda x: wl.sum(x, axis=(0, -1)), lambda x: T.sum(x, dim=(0, -1)), [U(2, 3, 4)]),
    ("sum_keepdims", lambda x: wl.sum(x, axis=1, keepdims=True), lambda x: T.sum(x, 1, keepdim=True), [U(2, 3)]),
    ("mean", lambda x: wl.mean(x, axis=-1), lambda x: T.mean(x, dim=-1), [U(2, 3, 4)]),
    ("prod", lambda x: wl.prod(x, axis=1), lambda x: T.prod(x, dim=1), [U(3, 4)]),
    ("prod_zero", lambda x: wl.prod(x, axis=1), lambda x: T.prod(x, dim=1),
     [np.array([[0.0, 2.0, 3.0], [1.0, 2.0, 4.0]])]),
    ("max", lambda x: wl.max(x, axis=1), lambda x: T.amax(x, dim=1), [distinct(3, 4)]),
    ("max_ties", lambda x: wl.max(x, axis=1), lambda x: T.amax(x, dim=1),
     [np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])]),
    ("min_all", lambda x: wl.min(x), lambda x: T.amin(x), [distinct(3, 4)]),
    ("var", lambda x: wl.var(x, axis=0), lambda x: T.var(x, dim=0, correction=0), [U(5, 3)]),
    ("var_ddof1", lambda x: wl.var(x, axis=1, ddof=1), lambda x: T.var(x, dim=1, correction=1), [U(3, 5)]),
    ("std", lambda x: wl.std(x, axis=-1), lambda x: T.std(x, dim=-1, correction=0), [U(3, 5)]),
    ("logsumexp", lambda x: wl.logsumexp(x, axis=1), lambda x: T.logsumexp(x, dim=1), [U(3, 5)]),
    ("softmax", lambda x: wl.softmax(x, axis=-1), lambda x: T.softmax(x, dim=-1), [U(3, 5)]),
    ("log_softmax", lambda x: wl.log_softmax(x, axis=0), lambda x: T.log_softmax(x, dim=0), [U(3, 5)]),
    ("cumsum", lambda x: wl.cumsum(x, axis=1), lambda x: T.cumsum(x, dim=1), [U(3, 5)]),
    ("matmul", wl.matmul, T.matmul, [U(3, 4), U(4, 5)]),
    ("matmul_batched_broadcast", wl.matmul, T.matmul, [U(2, 1, 3, 4), U(3, 4, 2)]),
    ("matmul_vec_mat", wl.matmul, T.matmul, [U(4), U(2, 4, 3)]),
    ("matmul_mat_vec", wl.matmul, T.matmul, [U(2, 3, 4), U(4)]),
    ("einsum", lambda a, b: wl.einsum("bij,bjk->bik", a, b),
     lambda a, b: T.einsum("bij,bjk->bik", a, b), [U(2, 3, 4), U(2, 4, 5)]),
    ("einsum_trace", lambda a: wl.einsum("ii->", a), lambda a: T.einsum("ii->", a), [U(4, 4)]),
    ("tensordot", lambda a, b: wl.tensordot(a, b, ([1, 2], [0, 1])),
     lambda a, b: T.tensordot(a, b, dims=([1, 2], [0, 1])), [U(2, 3, 4), U(3, 4, 5)]),
    ("reshape", lambda x: x.reshape(3, -1), lambda x: x.reshape(3, -1), [U(2, 3, 2)]),
    ("transpose", lambda x: wl.transpose(x, (1, 2, 0)), lambda x: x.permute(1, 2, 0), [U(2, 3, 4)]),
    ("moveaxis", lambda x: wl.moveaxis(x, 0, -1), lambda x: T.movedim(x, 0, -1), [U(2, 3, 4)]),
    ("expand_dims", lambda x: wl.expand_dims(x, 1), lambda x: x.unsqueeze(1), [U(2, 3)]),
    ("squeeze", lambda x: wl.squeeze(x, 0), lambda x: x.squeeze(0), [U(1, 3)]),
    ("broadcast_to", lambda x: wl.broadcast_to(x, (2, 3, 4)), lambda x: x.broadcast_to((2, 3, 4)), [U(3, 1)]),
    ("concatenate", lambda a, b: wl.concatenate([a, b], axis=1), lambda a, b: T.cat([a, b], 1), [U(2, 3), U(2, 2)]),
    ("stack", lambda a, b: wl.stack([a, b], axis=-1), lambda a, b: T.stack([a, b], -1), [U(2, 3), U(2, 3)]),
    ("split", lambda x: wl.split(x, 3, axis=1)[1], lambda x: T.split(x, 2, dim=1)[1], [U(2, 6)]),
    ("pad", lambda x: wl.pad(x, ((1, 2), (3, 0)), constant_values=0.5),
     lambda x: F.pad(x, (3, 0, 1, 2), value=0.5), [U(2, 3)]),
    ("flip", lambda x: wl.flip(x, (0, 1)), lambda x: T.flip(x, (0, 1)), [U(2, 3)]),
    ("repeat", lambda x: wl.repeat(x, 3, axis=1), lambda x: T.repeat_interleave(x, 3, dim=1), [U(2, 3)]),
    ("tile", lambda x: wl.tile(x, (2, 3)), lambda x: x.repeat(2, 3), [U(2, 3)]),
    ("getitem_basic", lambda x: x[1:, ::2], lambda x: x[1:, ::2], [U(3, 4)]),
    ("getitem_repeats", lambda x: x[[0, 2, 0]], lambda x: x[[0, 2, 0]], [U(3, 4)]),
    ("getitem_mask", lambda x: x[wl.tensor(np.array([True, False, True]))],
     lambda x: x[T.tensor([True, False, True])], [U(3, 4)]),
    ("take", lambda x: wl.take(x, wl.tensor([5, 0, 5])), lambda x: T.take(x, T.tensor([5, 0, 5])), [U(2, 3)]),
    ("take_along_axis", lambda x: wl.take_along_axis(x, wl.tensor([[2, 0], [1, 1]]), axis=1),
     lambda x: T.take_along_dim(x, T.tensor([[2, 0], [1, 1]]), dim=1), [U(2, 3)]),
    ("index_add", lambda x, v: wl.index_add(x, wl.tensor([0, 2, 0]), v, axis=0),
     lambda x, v: x.index_add(0, T.tensor([0, 2, 0]), v), [U(3, 2), U(3, 2)]),
    ("scatter_add", lambda x, v: wl.scatter_add(x, wl.tensor([[0, 0, 2]]), v, axis=1),
     lambda x, v: x.scatter_add(1, T.tensor([[0, 0, 2]]), v), [U(1, 4), U(1, 3)]),
    # remainder: d/dy is minus the floor-division quotient the forward used (249 here,
    # where floor(0.25 / 0.001) rounds up to 250)
    ("remainder", wl.remainder, T.remainder,
     [np.array([0.25, 1.7, -1.3, 5.5, 1.0]), np.array([0.001, 0.4, 0.5, -1.1, 0.1])]),
    # zero-size axes and 0-d inputs
    ("softmax_empty_axis", lambda x: wl.softmax(x, axis=-1), lambda x: T.softmax(x, dim=-1), [U(3, 0)]),
    ("log_softmax_empty_axis", lambda x: wl.log_softmax(x, axis=1),
     lambda x: T.log_softmax(x, dim=1), [U(2, 0, 3)]),
    ("logsumexp_empty_axis", lambda x: wl.logsumexp(x, axis=1), lambda x: T.logsumexp(x, dim=1), [U(3, 0)]),
    ("logsumexp_empty_all", lambda x: wl.logsumexp(x), lambda x: T.logsumexp(x, dim=(0, 1)), [U(3, 0)]),
    ("logsumexp_empty_keepdims", lambda x: wl.logsumexp(x, axis=0, keepdims=True),
     lambda x: T.logsumexp(x, dim=0, keepdim=True), [U(0, 4)]),
    ("softmax_0d", lambda x: wl.softmax(x, axis=0), lambda x: T.softmax(x, dim=0), [np.array(0.7)]),
    ("log_softmax_0d", lambda x: wl.log_softmax(x, axis=-1), lambda x: T.log_softmax(x, dim=-1),
     [np.array(0.7)]),
    ("matmul_empty_inner_batched", wl.matmul, T.matmul, [U(5, 5, 0), U(0, 5)]),
    ("matmul_empty_batch", wl.matmul, T.matmul, [U(0, 3, 4), U(4, 2)]),
    ("linear_empty_inner_batched", lambda x, w, b: wl.nn.functional.linear(x, w, b),
     lambda x, w, b: F.linear(x, w.T, b), [U(5, 5, 0), U(0, 5), U(5)]),
    ("linear_empty_batch", lambda x, w, b: wl.nn.functional.linear(x, w, b),
     lambda x, w, b: F.linear(x, w.T, b), [U(2, 0, 3), U(3, 4), U(4)]),
    ("flatten_empty", lambda x: wl.flatten(x, 1), lambda x: T.flatten(x, 1), [U(0, 2, 3)]),
    ("flatten_empty_middle", lambda x: wl.flatten(x, 0, 1), lambda x: T.flatten(x, 0, 1), [U(2, 0, 3)]),
]


@pytest.mark.parametrize("name,wf,tf,inputs", CASES, ids=[c[0] for c in CASES])
def test_forward_and_gradients_match_pytorch(name, wf, tf, inputs):
    ours = [wl.tensor(np.asarray(a, dtype=np.float64)) for a in inputs]
    theirs = [T.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in inputs]
    out, pullback = wl.vjp(wf, *ours)
    ref = tf(*theirs)
    # PyTorch's kernels on a few small operands: a few roundings per entry, ~1e-15
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12,
                               err_msg=f"{name}: forward")
    ct = R.standard_normal(ref.shape)
    grads = pullback(wl.tensor(ct))
    ref.backward(T.tensor(ct))
    for i, (g, t) in enumerate(zip(grads, theirs)):
        np.testing.assert_allclose(g.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{name}: gradient of input {i}")


def test_one_hot_and_argmax_match_pytorch():
    idx = np.array([3, 0, 2])
    np.testing.assert_array_equal(wl.one_hot(wl.tensor(idx), 4).numpy(),
                                  F.one_hot(T.tensor(idx), 4).numpy())
    x = distinct(3, 4)
    np.testing.assert_array_equal(wl.argmax(wl.tensor(x), axis=1).numpy(), T.argmax(T.tensor(x), 1).numpy())


def test_hessian_matches_pytorch():
    A = U(4, 4)
    x = U(4)
    f_ours = lambda v: (wl.tanh(wl.tensor(A) @ v) ** 2).sum() * wl.exp(v).sum()  # noqa: E731
    f_torch = lambda v: (T.tanh(T.tensor(A) @ v) ** 2).sum() * T.exp(v).sum()  # noqa: E731
    H = wl.hessian(f_ours)(wl.tensor(x))
    H_ref = T.autograd.functional.hessian(f_torch, T.tensor(x))
    # second derivatives through 4×4 products, each side its own rules: ~1e-14
    np.testing.assert_allclose(H.numpy(), H_ref.numpy(), rtol=1e-9, atol=1e-12)
