"""The device machinery, exercised without a GPU on the stand-in device.

``wonderland.backend.fake_device`` registers a device backend over NumPy as ``cuda``: its
arrays refuse to meet CPU arrays, transfers copy, and the NumPy-only kernels run in their
whole-array device versions — the code path CuPy takes. The references are the CPU
computations (NumPy kernels, NumPy optimiser state). The last tests need CuPy and an
NVIDIA GPU and are skipped, with the reason, where there is none; ``benchmarks/gpu.py``
is the full GPU check.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import wonderland as wl
from wonderland import backend as B
from wonderland import nn
from wonderland.backend import device_kernels
from wonderland.backend.cupy_backend import DeviceBackend, unavailable_reason
from wonderland.backend.fake_device import FakeDeviceArray, fake_cuda, make

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def cuda():
    with fake_cuda() as backend:
        yield backend


def host(t):
    return np.array(t.to("cpu").numpy())


# ----------------------------------------------------------------------------- tensors
def test_to_moves_copies_and_is_differentiable(cuda):
    x = wl.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=wl.float64, requires_grad=True)
    y = x.to("cuda")
    assert type(y.data) is FakeDeviceArray and y.device == "cuda" and x.device == "cpu"
    assert not np.shares_memory(y.data.view(np.ndarray), x.data)     # a transfer copies
    assert x.to("cpu") is x and y.to("cuda:0") is y
    np.testing.assert_array_equal(host(y), x.numpy())
    z = x.to("cuda", wl.float32)
    assert z.dtype == wl.float32 and z.device == "cuda"
    loss = (wl.tanh(y) * y).sum()
    loss.backward()
    assert x.grad.device == "cpu"                                   # back on the leaf's device
    expected = np.tanh(x.numpy()) + x.numpy() / np.cosh(x.numpy()) ** 2
    # elementwise, a few roundings either way: ~1e-15 relative
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)
    # forward mode and vmap go through the transfer too
    _, tangent = wl.jvp(lambda v: v.to("cuda") * 3.0, (x.detach(),), (wl.ones_like(x),))
    assert tangent.device == "cuda"
    np.testing.assert_array_equal(host(tangent), 3.0)
    rows = wl.vmap(lambda r: (r.to("cuda") ** 2).sum())(x.detach())
    np.testing.assert_allclose(host(rows), (x.numpy() ** 2).sum(1))


def test_device_mismatch_is_an_error_naming_both_devices(cuda):
    a = wl.ones(3).to("cuda")
    b = wl.ones(3)
    for op in (lambda: a + b, lambda: wl.matmul(a, b), lambda: wl.where(a > 0, a, b)):
        with pytest.raises(B.DeviceMismatchError, match="cuda .* and cpu"):
            op()
    model = nn.Linear(3, 2).to("cuda")
    with pytest.raises(B.DeviceMismatchError, match="different devices"):
        model(wl.ones((4, 3)))
    with pytest.raises(B.DeviceMismatchError, match=r"inputs on different devices: cpu \(numpy\) "
                                                    r"and cuda \(fake-cuda\)"):
        B.check_same_device("add", [b, a])
    B.check_same_device("add", [a, a.data, 2.0])                 # scalars are fine


def test_a_failing_operation_on_two_devices_names_the_devices(cuda):
    # CuPy rejects a host array with a bare TypeError; apply turns any such failure with
    # inputs on two devices into a DeviceMismatchError naming the operation
    from wonderland.core.primitive import Primitive, apply

    def forward(x, y):
        raise TypeError("Unsupported type <class 'numpy.ndarray'>")

    prim = Primitive("mixed_op", forward, differentiable=False)
    with pytest.raises(B.DeviceMismatchError, match=r"mixed_op: inputs on different devices"):
        apply(prim, (wl.ones(3).to("cuda"), wl.ones(3)))
    with pytest.raises(TypeError, match="mixed_op: Unsupported type") as info:   # one device
        apply(prim, (wl.ones(3), wl.ones(3)))
    assert not isinstance(info.value, B.DeviceMismatchError)


def test_the_stand_in_device_refuses_what_cupy_lacks(cuda):
    import scipy.special

    a = wl.ones(3).to("cuda")
    with pytest.raises(TypeError, match="ufunc from outside NumPy"):
        scipy.special.erf(a.data)
    with pytest.raises(TypeError, match="use B.add_at"):
        np.add.at(a.data, [0, 0], 1.0)
    np.testing.assert_allclose(host(wl.erf(a)), scipy.special.erf(1.0))   # through the backend


def test_device_names_are_checked(cuda):
    x = wl.ones(2)
    with pytest.raises(ValueError, match="expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'"):
        x.to(device="tpu")
    with pytest.raises(ValueError, match="got 'cpu:1'"):
        x.to(device="cpu:1")
    with pytest.raises(ValueError, match="'cuda:1' is not the current CUDA device"):
        x.to("cuda:1")
    assert x.to("cuda:0").device == "cuda"
    with pytest.raises(TypeError, match="unexpected keyword"):
        x.to("cuda", non_blocking=True)
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        B.set_backend("nope")


def test_unknown_device_names_are_named_with_the_known_ones():
    x = wl.ones(2)
    for name in ("gpu", "mps", "GPU:0"):
        with pytest.raises(ValueError, match=rf"Tensor.to: unknown device '{name}' \(and not a "
                                             rf"dtype\); the devices are 'cpu', 'cuda' and "
                                             rf"'cuda:N'"):
            x.to(name)
    with pytest.raises(ValueError, match=r"Module.to: unknown device 'mps'"):
        nn.Linear(2, 2).to("mps")
    assert x.to("float64").dtype == np.float64 and x.to("cpu", "float16").dtype == np.float16


# ----------------------------------------------------------------------------- modules
# Training on the two devices, compared. Adam and RMSprop divide by sqrt(v) + 1e-8. The
# first convolution's bias feeds BatchNorm, so its gradient is zero up to rounding, made
# differently on each path: at most 245 summed terms × 1.1e-16 × sum|dz| (0.45 here)
# ≈ 1.2e-14, which one step turns into up to lr 0.01 × 1.2e-14 / 1e-8 = 1.2e-8 of the
# bias (and a tenth of that into BatchNorm's running mean). TRAINED_ATOL is three steps
# of it. Every other parameter differs by a few roundings per summed term, ~1e-14 of its
# size after three steps: TRAINED_RTOL leaves a factor 1e5.
TRAINED_ATOL = 4e-8
TRAINED_RTOL = 1e-9


def _cnn(seed=0):
    wl.random.seed(seed)
    return nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.MaxPool2d(2, padding=1), nn.Conv2d(6, 6, 3, groups=3, stride=2),
                         nn.ReLU(), nn.GlobalAvgPool(), nn.Linear(6, 4))


def test_module_to_moves_parameters_and_buffers_in_place(cuda):
    model = _cnn().double()
    params = list(model.parameters())
    assert model.to("cuda") is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    for t in list(model.parameters()) + list(model.buffers()):
        assert type(t.data) is FakeDeviceArray
        assert t.dtype == wl.float64 or t.dtype.kind == "i"      # BatchNorm's step count
    model.to("cpu", wl.float32)
    assert all(type(p.data) is np.ndarray and p.dtype == wl.float32 for p in model.parameters())
    model.to(wl.float64)                                   # the dtype form still works
    assert all(p.dtype == wl.float64 for p in model.parameters())


@pytest.mark.parametrize("make_opt", [lambda ps: wl.optim.Adam(ps, lr=0.01),
                                      lambda ps: wl.optim.SGD(ps, lr=0.05, momentum=0.9,
                                                              nesterov=True),
                                      lambda ps: wl.optim.RMSprop(ps, lr=0.01)])
def test_training_on_the_device_equals_training_on_the_cpu(cuda, make_opt):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(5, 7, 7, 2)) for _ in range(3)]
    ys = [rng.integers(0, 4, size=5) for _ in range(3)]
    runs = []
    for device in ("cpu", "cuda"):
        model = _cnn(1).double().to(device)
        opt = make_opt(model.parameters())
        for x, y in zip(xs, ys):
            opt.zero_grad()
            out = model(wl.tensor(x).to(device))
            nn.functional.cross_entropy(out, wl.tensor(y).to(device)).backward()
            opt.step()
        runs.append((model, opt))
    (cpu_model, cpu_opt), (dev_model, dev_opt) = runs
    for p, q in zip(cpu_model.parameters(), dev_model.parameters()):
        np.testing.assert_allclose(host(q), p.numpy(), rtol=TRAINED_RTOL, atol=TRAINED_ATOL)
    for b, c in zip(cpu_model.buffers(), dev_model.buffers()):
        np.testing.assert_allclose(host(c), b.numpy(), rtol=TRAINED_RTOL, atol=TRAINED_ATOL)
    dev_arrays = [v for s in dev_opt.state.values() for v in s.values() if hasattr(v, "shape")
                  and v.ndim]
    assert dev_arrays and all(type(v) is FakeDeviceArray for v in dev_arrays)


def test_checkpoints_load_onto_either_device(cuda, tmp_path):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 7, 7, 2)), rng.integers(0, 4, size=6)

    def train(model, opt, device, steps=2):
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(wl.tensor(x).to(device)),
                                        wl.tensor(y).to(device)).backward()
            opt.step()

    model = _cnn(3).double().to("cuda")
    opt = wl.optim.Adam(model.parameters(), lr=0.01)
    train(model, opt, "cuda")
    path = tmp_path / "ckpt.safetensors"
    wl.io.save_checkpoint(path, model, opt)
    train(model, opt, "cuda")                       # the run that was not interrupted
    for device in ("cpu", "cuda"):
        other = _cnn(9).double().to(device)
        other_opt = wl.optim.Adam(other.parameters(), lr=0.01)
        wl.io.load_checkpoint(path, other, other_opt)
        kind = np.ndarray if device == "cpu" else FakeDeviceArray
        assert all(type(p.data) is kind for p in other.parameters())
        assert all(type(v) is kind for s in other_opt.state.values() for v in s.values()
                   if hasattr(v, "ndim") and v.ndim)
        train(other, other_opt, device)
        for p, q in zip(model.parameters(), other.parameters()):     # Adam: see TRAINED_ATOL
            np.testing.assert_allclose(host(q), host(p), rtol=TRAINED_RTOL, atol=TRAINED_ATOL)


def test_a_checkpoint_keeps_zero_dimensional_buffers(tmp_path):
    """BatchNorm's step count is a 0-d buffer; a checkpoint must give it back as 0-d."""
    bn = nn.BatchNorm2d(3)
    bn(wl.random.normal((2, 4, 4, 3)))
    wl.io.save_checkpoint(tmp_path / "bn.safetensors", bn)
    other = nn.BatchNorm2d(3)
    wl.io.load_checkpoint(tmp_path / "bn.safetensors", other)
    assert other.num_batches_tracked.shape == () and int(other.num_batches_tracked) == 1


# ----------------------------------------------------------------------------- kernels
CONV_CASES = [  # (x shape, kernel, groups, stride, dilation)
    ((2, 9, 8, 4), (3, 3), 1, (1, 1), (1, 1)),
    ((2, 9, 8, 4), (3, 2), 2, (2, 1), (1, 2)),
    ((3, 11, 6), (5,), 6, (2,), (2,)),                 # depthwise 1-D
    ((1, 5, 6, 7, 2), (2, 3, 2), 1, (1, 2, 1), (2, 1, 1)),
    ((2, 6, 6, 3), (1, 1), 1, (1, 1), (1, 1)),
]


@pytest.mark.parametrize("shape, kernel, groups, stride, dilation", CONV_CASES)
def test_device_convolution_kernels_match_the_numpy_kernels(cuda, shape, kernel, groups, stride,
                                                           dilation):
    rng = np.random.default_rng(4)
    cin = shape[-1]
    cout = 2 * groups if groups > 1 else 5
    x = rng.normal(size=shape)
    w = rng.normal(size=kernel + (cin // groups, cout))
    bias = rng.normal(size=cout)
    ref = B.NUMPY_KERNELS
    dev = cuda
    X, W, Bias = dev.from_numpy(x), dev.from_numpy(w), dev.from_numpy(bias)
    geo = dict(stride=stride, dilation=dilation, groups=groups)
    out = ref["wonderland.ops.conv._conv_forward"](x, w, **geo)
    got = device_kernels.conv_forward(X, W, **geo)
    # sums of at most 36 products of N(0, 1) numbers in another order: ≤ 36 × 1.1e-16 × 36
    # ≈ 1.4e-13; the weight gradient sums 144 positions: ≤ 144 × 1.1e-16 × 144 ≈ 2.3e-12
    assert type(got) is FakeDeviceArray
    np.testing.assert_allclose(dev.to_numpy(got), out, rtol=1e-12, atol=1e-12)
    got_b = device_kernels.conv_bias_forward(X, W, Bias, **geo)
    np.testing.assert_allclose(dev.to_numpy(got_b), out + bias, rtol=1e-12, atol=1e-12)
    g = rng.normal(size=out.shape)
    G = dev.from_numpy(g)
    np.testing.assert_allclose(
        dev.to_numpy(device_kernels.conv_transpose_forward(G, W, in_shape=x.shape, **geo)),
        ref["wonderland.ops.conv._conv_transpose_forward"](g, w, in_shape=x.shape, **geo),
        rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        dev.to_numpy(device_kernels.conv_weight_forward(X, G, kernel=kernel, **geo)),
        ref["wonderland.ops.conv._conv_weight_forward"](x, g, kernel=kernel, **geo),
        rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("kernel, stride, pads", [((2, 2), (2, 2), ()),
                                                  ((3, 3), (2, 1), ((1, 1), (1, 1))),
                                                  ((3,), (1,), ((1, 1),))])
def test_device_pooling_kernels_match_the_numpy_kernels(cuda, kernel, stride, pads):
    rng = np.random.default_rng(5)
    shape = (2, 7, 6, 3) if len(kernel) == 2 else (2, 9, 3)
    x = rng.normal(size=shape).round(1)                     # ties: the first maximum wins
    x[0, 1, 1] = np.nan                                     # NaN wins its windows
    if pads:                              # the padded border holds -inf, as max pooling pads
        inner = np.zeros(shape, dtype=bool)
        inner[(slice(None),) + tuple(slice(a, n - b) for (a, b), n in zip(pads, shape[1:-1]))] = True
        x[~inner] = -np.inf
    dev = cuda
    geo = dict(kernel=kernel, stride=stride, dilation=(1,) * len(kernel))
    ref = B.NUMPY_KERNELS
    values, (idx,) = ref["wonderland.ops.pool._max_pool_forward"](x, pads=pads, **geo)
    got_v, (got_i,) = device_kernels.max_pool_forward(dev.from_numpy(x), pads=pads, **geo)
    # pooling selects, it does not add: the device kernels must give the same bits
    np.testing.assert_array_equal(dev.to_numpy(got_v), values)
    np.testing.assert_array_equal(dev.to_numpy(got_i), idx)
    assert dev.to_numpy(got_i).dtype == idx.dtype
    g = rng.normal(size=values.shape)
    np.testing.assert_allclose(
        dev.to_numpy(device_kernels.scatter_forward(dev.from_numpy(g), got_i, in_shape=x.shape,
                                                    **geo)),
        ref["wonderland.ops.pool._scatter_forward"](g, idx, in_shape=x.shape, **geo))
    np.testing.assert_array_equal(
        dev.to_numpy(device_kernels.gather_forward(dev.from_numpy(x), got_i, **geo)),
        ref["wonderland.ops.pool._gather_forward"](x, idx, **geo))


def test_every_numpy_kernel_has_a_device_version_or_is_declared_host_only():
    assert len(B.NUMPY_KERNELS) >= 20
    versions = {name: k.device for name, k in B.NUMPY_KERNELS.items()}
    for name, device in versions.items():
        assert callable(device) or (isinstance(device, B.HostOnly) and device.reason), name
    # the whole-array versions are functions of device_kernels, one per kernel
    native = [d for d in versions.values() if callable(d)]
    assert all(d.__module__ == device_kernels.__name__ for d in native)
    assert len({id(d) for d in native}) == len(native) == 9
    with pytest.raises(TypeError, match="device must be a function or HostOnly"):
        B.numpy_kernel(lambda x: x, device="wonderland.ops.conv._conv_forward")


def test_a_backend_without_a_kernel_runs_it_on_the_host_with_a_warning():
    class Bare(DeviceBackend):
        runs_device_kernels = False

    base = make("bare-device")
    bare = Bare("bare-device", base.xp, FakeDeviceArray, "cuda", special=base._special,
                scatter_add=base._scatter_add, as_strided=base._as_strided, host=base._host,
                to_device=base._to_device, solve_triangular=base._solve_triangular)
    B.register(bare, device_kind="cuda")
    try:
        x = wl.random.normal((2, 5, 5, 3), dtype=wl.float64)
        conv = nn.Conv2d(3, 4, 3).double()
        ref = conv(x).numpy()
        conv.to("cuda")
        B.HOST_FALLBACKS.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = conv(x.to("cuda"))
            conv(x.to("cuda"))
        assert type(out.data) is FakeDeviceArray
        # the same NumPy kernel on the same numbers, run on the host: identical bits
        np.testing.assert_allclose(host(out), ref, rtol=1e-12)
        said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(said) == 1 and "no bare-device kernel; running it on the host" in said[0]
        assert B.HOST_FALLBACKS[("bare-device", "wonderland.ops.conv._conv_bias_forward")] == 2
    finally:
        B.unregister(bare)


# ----------------------------------------------------------------------------- suites
def test_core_nn_and_optim_suites_pass_on_the_stand_in_device():
    """Every tensor of these suites lives on the stand-in device (the default backend);
    two tests that state CPU facts (``x.device == "cpu"``, ``as_tensor`` sharing a NumPy
    array's memory) do not apply there."""
    from test_second_backend import SUITES

    env = dict(os.environ, WONDERLAND_BACKEND="fake-cuda")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow",
         "--deselect", "tests/core/test_tensor.py::test_attributes_and_conversion",
         "--deselect", "tests/core/test_semantics.py::test_tensor_copies_numpy_input",
         *[os.path.join("tests", s) for s in SUITES]],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


# ----------------------------------------------------------------------------- real GPU
GPU_MISSING = unavailable_reason()


@pytest.mark.skipif(GPU_MISSING is None, reason="a GPU is present")
def test_asking_for_the_gpu_without_one_says_why():
    with pytest.raises(RuntimeError, match="the cupy backend needs CuPy and an NVIDIA GPU"):
        B.get("cupy")
    assert not wl.device.is_available()


@pytest.mark.skipif(GPU_MISSING is not None, reason=f"no GPU: {GPU_MISSING}")
def test_cupy_training_step_matches_the_cpu():
    import cupy

    model = _cnn(5).double()
    x = wl.random.normal((4, 7, 7, 2), dtype=wl.float64)
    y = wl.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(model(x), y).backward()
    cpu_grads = [p.grad.numpy() for p in model.parameters()]
    model.zero_grad()
    model.to("cuda")
    out = model(x.to("cuda"))
    assert isinstance(out.data, cupy.ndarray)
    nn.functional.cross_entropy(out, y.to("cuda")).backward()
    for p, g in zip(model.parameters(), cpu_grads):   # one backward pass, another summation order;
        # atol: the bias before BatchNorm has a zero gradient up to ~1e-14 of rounding
        np.testing.assert_allclose(p.grad.to("cpu").numpy(), g, rtol=1e-9, atol=1e-11)
