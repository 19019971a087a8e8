"""The core, nn and optim suites pass on a second array backend.

The ``checked`` backend holds NumPy arrays of a subclass that refuses to meet a plain
NumPy array made by wonderland's own code: a layer or optimiser that calls NumPy
directly instead of going through the backend fails here (a GPU backend would fail
the same way)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import wonderland as wl
from wonderland import backend as B

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITES = ["core/test_tensor.py", "ops/test_primitive_grads.py", "core/test_transforms.py",
          "core/test_engine.py", "core/test_semantics.py", "core/test_vmap.py",
          "core/test_scan.py", "core/test_graph_memory.py", "core/test_versions_and_state.py",
          "nn/test_nn.py", "nn/test_norm.py", "optim/test_optim.py", "ops/test_conv.py",
          "ops/test_losses.py", "test_linalg.py", "nn/test_layer_and_optimiser_checks.py",
          "train/test_train.py", "data/test_data.py", "models/test_models.py",
          "test_distributions.py", "ops/test_torch_parity.py"]


def test_core_nn_and_optim_suites_pass_on_the_checked_backend():
    env = dict(os.environ, WONDERLAND_BACKEND="checked")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "-m", "not slow",
                          *[os.path.join(TESTS, s) for s in SUITES]],
                         capture_output=True, text=True, env=env, cwd=os.path.dirname(TESTS))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def test_the_checked_backend_catches_a_stray_numpy_array():
    B.set_backend("checked")
    try:
        x = wl.tensor([1.0, 2.0])
        assert type(x.data) is B.CheckedArray
        stray = wl.Primitive("stray", lambda a: a + np.ones(a.shape), vjp=lambda g, out, a: g,
                             jvp=lambda t, out, a: t, save=())
        with B.strict_checking(), pytest.raises(TypeError, match="plain NumPy array"):
            wl.apply(stray, (x,))
        fine = wl.Primitive("fine", lambda a: a + B.ns(a).ones(a.shape), vjp=lambda g, out, a: g,
                            jvp=lambda t, out, a: t, save=())
        np.testing.assert_allclose(wl.apply(fine, (x,)).numpy(), [2.0, 3.0])
    finally:
        B.set_backend("numpy")


def test_tensors_carry_their_backend():
    B.set_backend("checked")
    try:
        x = wl.ones(3)
    finally:
        B.set_backend("numpy")
    y = x * 2.0                                   # runs on x's backend, wherever made
    assert type(y.data) is B.CheckedArray and y.device == "cpu"
    assert B.of(y.data).name == "checked"
    assert type(wl.ones(3).data) is np.ndarray
