import os
import shutil
import sys

import numpy as np
import pytest

import wonderland as wl

try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False


def _mpiexec():
    """The ``mpiexec`` beside this Python (the ``mpich`` wheel's), else one on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(not (HAVE_MPI4PY and MPIEXEC),
                               reason="mpi4py and mpiexec are needed (pip install \".[mpi]\")")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def f64(a):
    return wl.tensor(np.asarray(a, dtype=np.float64))


def numerical_jacobian(f, args, eps=1e-6):
    """Central-difference Jacobian of a tensor-valued f with respect to every argument."""
    base = [np.array(a.data, dtype=np.float64) for a in args]
    out = np.asarray(f(*[wl.tensor(b) for b in base]).data)
    jacs = []
    for i, b in enumerate(base):
        jac = np.zeros(out.shape + b.shape)
        for idx in np.ndindex(*b.shape):
            plus = [x.copy() for x in base]
            minus = [x.copy() for x in base]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            fp = np.asarray(f(*[wl.tensor(x) for x in plus]).data)
            fm = np.asarray(f(*[wl.tensor(x) for x in minus]).data)
            jac[(Ellipsis,) + idx] = (fp - fm) / (2 * eps)
        jacs.append(jac)
    return jacs


def check_primitive(f, *args, order=2, atol=1e-6, rtol=1e-6):
    """Full Jacobian by reverse and forward mode against central differences, then
    wl.testing.check_grads (JVP, VJP and their agreement) up to ``order``."""
    args = [a if isinstance(a, wl.Tensor) else f64(a) for a in args]
    nums = tuple(range(len(args)))
    jac_rev = wl.jacrev(f, argnums=nums)(*args)
    jac_fwd = wl.jacfwd(f, argnums=nums)(*args)
    jac_num = numerical_jacobian(f, args)
    for r, fw, n in zip(jac_rev, jac_fwd, jac_num):
        np.testing.assert_allclose(r.numpy(), n, atol=atol, rtol=rtol, err_msg="reverse vs FD")
        np.testing.assert_allclose(fw.numpy(), n, atol=atol, rtol=rtol, err_msg="forward vs FD")
    wl.testing.check_grads(f, tuple(args), order=order, atol=max(atol, 1e-5), rtol=max(rtol, 1e-5))


@pytest.fixture
def shared_data():
    """The shared data folder: $WONDERLAND_DATA, else ../shared/data beside the repository."""
    import os
    default = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
    return os.environ.get("WONDERLAND_DATA", os.path.abspath(default))


@pytest.fixture
def set_threads():
    """``wl.set_num_threads`` for one test; the thread count is restored afterwards."""
    before = wl.get_num_threads()
    yield wl.set_num_threads
    wl.set_num_threads(before)
