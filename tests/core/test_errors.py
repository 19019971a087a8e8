"""Bad input fails early with a message naming the operation, what it got and what it
expected; anomaly mode names the primitive that produced nan/inf."""

import numpy as np
import pytest

import wonderland as wl


@pytest.mark.parametrize("call,error,pattern", [
    (lambda: wl.matmul(wl.zeros((32, 784)), wl.zeros((512, 10))), ValueError,
     r"matmul: inner dimensions differ: \(32, 784\) @ \(512, 10\)"),
    (lambda: wl.matmul(wl.zeros(()), wl.zeros(3)), ValueError, "at least one dimension"),
    (lambda: wl.zeros((3, 4)) + wl.zeros(5), ValueError,
     r"add: .*\(3,4\).*\(5,\).*float32\[3, 4\], float32\[5\]"),
    (lambda: wl.zeros((2, 3)).reshape(4, 2), ValueError,
     r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into shape \(4, 2\)"),
    (lambda: wl.sum(wl.zeros((2, 3)), axis=2), ValueError,
     "sum: axis 2 is out of range for a tensor with 2 dimensions"),
    (lambda: wl.sum(wl.zeros((2, 3)), axis=(0, -2)), ValueError, r"sum: repeated axis"),
    (lambda: wl.squeeze(wl.zeros((2, 3)), 1), ValueError, "squeeze: cannot squeeze axis 1 of size 3"),
    (lambda: wl.concatenate([wl.zeros((2, 3)), wl.zeros((3, 3))], axis=1), ValueError,
     r"concatenate: shapes \(2, 3\) and \(3, 3\) differ outside axis 1"),
    (lambda: wl.stack([wl.zeros(2), wl.zeros(3)]), ValueError, "stack: all tensors must have the same shape"),
    (lambda: wl.split(wl.zeros(5), 2), ValueError, "split: an axis of size 5 cannot be split into 2"),
    (lambda: wl.broadcast_to(wl.zeros(3), (2, 4)), ValueError, r"broadcast_to: cannot broadcast shape \(3,\) to \(2, 4\)"),
    (lambda: wl.zeros(3)[5], IndexError, "getitem: index 5 is out of bounds"),
    (lambda: wl.zeros(3)[wl.tensor([0.5])], IndexError, "must be integer or bool"),
    (lambda: wl.take(wl.zeros(3), wl.tensor([3])), IndexError, "take: index 3 is out of bounds for an axis of size 3"),
    (lambda: wl.one_hot(wl.tensor([0, 12]), 10), ValueError, "one_hot: index 12 is out of range for 10 classes"),
    (lambda: wl.einsum("ij,jk->ik", wl.zeros((2, 3)), wl.zeros((4, 2))), ValueError,
     "einsum: letter 'j' has size 3 in one operand and 4"),
    (lambda: wl.einsum("ij->ik", wl.zeros((2, 3))), ValueError, "output letter 'k'"),
    (lambda: wl.tensordot(wl.zeros((2, 3)), wl.zeros((4, 2)), 1), ValueError, "tensordot: shape mismatch"),
    (lambda: wl.max(wl.zeros((0, 3)), axis=0), ValueError, "max: zero-size reduction"),
    (lambda: wl.pad(wl.zeros((2, 2)), ((1, 1), (1, 1), (1, 1))), ValueError, "pad: pad_width"),
    (lambda: wl.pad(wl.zeros(2), 1, mode="mirror"), ValueError, "pad: mode must be 'constant', 'reflect', 'edge' or 'wrap'"),
    (lambda: wl.tensor([[1, 2], [3]]), ValueError, "tensor: cannot build a tensor from ragged data"),
    (lambda: wl.tensor("abc"), TypeError, "tensor: unsupported data"),
    (lambda: wl.tensor([1.0, 2.0]).item(), ValueError, r"item: only one-element tensors.*\(2,\)"),
    (lambda: bool(wl.tensor([1.0, 2.0])), ValueError, "ambiguous"),
    (lambda: wl.clip(wl.zeros(2)), ValueError, "clip: at least one of min and max"),
    (lambda: wl.random.normal((2, -1)), ValueError, "normal: negative dimension"),
    (lambda: wl.random.randint(5, 2), ValueError, "randint: need low < high"),
    (lambda: wl.transpose(wl.zeros((2, 3)), (0, 0)), ValueError, "transpose: axes"),
    (lambda: wl.jvp(lambda x: x, wl.zeros(2), wl.zeros(2)), TypeError, "jvp: primals and tangents must be tuples"),
    (lambda: wl.grad(lambda x: x.sum(), has_aux=True)(wl.zeros(2)), TypeError, "has_aux=True"),
    (lambda: wl.grad(lambda x: "no")(wl.zeros(2)), TypeError, "grad: the function must return tensors"),
])
def test_error_messages(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_anomaly_names_the_forward_primitive():
    x = wl.tensor([1.0, 0.0, 2.0], requires_grad=True)
    with wl.detect_anomaly():
        y = x * 2
        with pytest.raises(FloatingPointError, match=r"forward of 'log' produced inf from finite inputs"):
            wl.log(y - 2.0 * x)
    with np.errstate(divide="ignore"):
        assert np.isinf(wl.log(x).numpy()).any()       # no error outside the context


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_anomaly_names_the_backward_primitive():
    x = wl.tensor([0.0, 1.0], requires_grad=True)
    y = wl.sqrt(x).sum()            # forward is finite, the gradient at 0 is inf
    with wl.detect_anomaly():
        y2 = wl.sqrt(x).sum()
        with pytest.raises(FloatingPointError, match=r"(?s)backward of 'sqrt' produced inf.*created at.*test_errors.py"):
            y2.backward()
    with np.errstate(divide="ignore"):
        y.backward()
    assert np.isinf(x.grad.numpy()[0])
