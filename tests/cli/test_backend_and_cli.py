"""The backend seam's fast paths against NumPy, and the command line."""

import subprocess
import sys

import numpy as np
import pytest

import wonderland as wl
from wonderland import backend as B
from wonderland.cli import main


@pytest.mark.parametrize("src,shape", [((1, 4), (3, 4)), ((4,), (2, 3, 4)), ((3, 1), (3, 5)),
                                       ((1, 1), (0, 2)), ((2, 1, 3), (4, 2, 5, 3)), ((), (2, 2))])
def test_fast_broadcast_matches_numpy(src, shape):
    a = np.arange(int(np.prod(src)), dtype=np.float32).reshape(src)
    fast = B.broadcast_to(a, shape)
    np.testing.assert_array_equal(fast, np.broadcast_to(a, shape))
    assert not fast.flags.writeable
    strided = np.arange(2 * a.size, dtype=np.float32)[::2].reshape(src) if a.size else a
    np.testing.assert_array_equal(B.broadcast_to(strided, shape), np.broadcast_to(strided, shape))


def test_batched_matmul_fast_path_matches_numpy(rng):
    a = rng.standard_normal((3, 5, 4)).astype(np.float32)
    b = rng.standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose((wl.tensor(a) @ wl.tensor(b)).numpy(), np.matmul(a, b), rtol=1e-6)
    at = np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2)   # not C-contiguous
    np.testing.assert_allclose((wl.tensor(at) @ wl.tensor(b)).numpy(), np.matmul(at, b), rtol=1e-6)


def test_cli_version_and_info(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert wl.__version__ in capsys.readouterr().out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backend" in out and "BLAS threads" in out and "float32" in out
    assert "allocator" in out and "compiled kernels" in out and "jit fusion" in out


def test_cli_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "info" in out and "demo" in out


def test_demo_trains_to_high_accuracy(capsys):
    assert main(["demo", "--steps", "150"]) == 0
    out = capsys.readouterr().out
    assert "final training accuracy" in out and "gradient check" in out


def test_demo_rejects_bad_steps(capsys):
    assert main(["demo", "--steps", "0"]) == 2
    assert "--steps must be positive" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "wonderland", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.startswith("wonderland ")
