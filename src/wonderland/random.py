"""Seeded, reproducible randomness.

There is one global generator (seeded with 0 at import, so two runs of a program give
the same numbers) and any number of explicit :class:`Generator` objects. Every
sampling function takes ``generator=`` to use an explicit one::

    wl.random.seed(42)
    x = wl.random.normal((3, 4))                 # global generator
    g = wl.random.Generator(7)
    y = wl.random.uniform((2,), generator=g)     # explicit generator
    z = g.normal((2, 2), std=0.1)                # same, as a method

Samples carry no gradient; use them as inputs (``rsample`` in distributions builds
differentiable samples on top of these). Every draw tells the core which generator it
used, so ``wl.checkpoint`` can replay exactly the generators a function drew from.
"""

from __future__ import annotations

import numpy as np

from . import backend as B
from .core import dtypes, rng
from .core.tensor import Tensor, from_array
from .core.tracing import record_call


def _out(array):
    """A NumPy sample as an array of the default backend."""
    return B.default().from_numpy(array)


def _shape(shape, what):
    if shape is None:
        return ()
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{what}: shape must be an int or a tuple of ints, got "
                        f"{shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{what}: negative dimension in shape {shape}")
    return shape


def _float_dtype(dtype, what):
    d = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    if d.kind != "f":
        raise TypeError(f"{what}: dtype must be a floating type, got {d}")
    return d


class Generator:
    """A random number generator with its own seeded state (PCG64)."""

    def __init__(self, seed=None):
        self._rng = B.default().default_rng(seed)

    def seed(self, seed) -> None:
        """Reset this generator to the stream of ``seed``."""
        self._rng = B.default().default_rng(seed)

    manual_seed = seed

    def get_state(self) -> dict:
        """The generator's state as a JSON-serialisable dict."""
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        """Restore a state returned by :meth:`get_state`."""
        try:
            self._rng.bit_generator.state = state
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"Generator.set_state: not a valid generator state ({exc})") from None

    def _draw(self, sample, *arrays, **params):
        """``sample(numpy_generator, *arrays, **params)`` as an array of the default
        backend. A function ``wl.jit`` traces records the draw as a step, so that every
        replay draws new numbers from this generator."""
        rng.touch(self)
        return record_call(_sampled, *arrays, gen=self, sample=sample, **params)

    def normal(self, shape=(), mean=0.0, std=1.0, *, dtype=None, requires_grad=False) -> Tensor:
        """Samples from N(mean, std²) of the given shape."""
        shape = _shape(shape, "normal")
        d = _float_dtype(dtype, "normal")
        if std < 0:
            raise ValueError(f"normal: std must be non-negative, got {std}")
        t = from_array(self._draw(_normal, shape=shape, mean=mean, std=std, dtype=d))
        return t.requires_grad_(True) if requires_grad else t

    def uniform(self, shape=(), low=0.0, high=1.0, *, dtype=None, requires_grad=False) -> Tensor:
        """Samples from the uniform distribution on [low, high)."""
        shape = _shape(shape, "uniform")
        d = _float_dtype(dtype, "uniform")
        if not high >= low:
            raise ValueError(f"uniform: need low <= high, got low={low}, high={high}")
        t = from_array(self._draw(_uniform, shape=shape, low=low, high=high, dtype=d))
        return t.requires_grad_(True) if requires_grad else t

    def randint(self, low, high=None, shape=(), *, dtype=None) -> Tensor:
        """Integers in [low, high) (or [0, low) when ``high`` is omitted)."""
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError(f"randint: need low < high, got low={low}, high={high}")
        shape = _shape(shape, "randint")
        d = dtypes.as_dtype(dtype) or dtypes.int64
        return from_array(self._draw(_randint, low=low, high=high, shape=shape, dtype=d))

    def permutation(self, n) -> Tensor:
        """A random permutation of ``range(n)`` (or of a tensor's first axis)."""
        if isinstance(n, Tensor):
            return n[self.permutation(n.shape[0] if n.ndim else 0)]
        n = int(n)
        if n < 0:
            raise ValueError(f"permutation: n must be non-negative, got {n}")
        return from_array(self._draw(_permutation, n=n))

    def bernoulli(self, p, shape=None, *, dtype=None) -> Tensor:
        """0/1 samples that are 1 with probability ``p`` (a number or a tensor)."""
        probs = p.data if isinstance(p, Tensor) else np.asarray(p, dtype=np.float64)
        shape = tuple(probs.shape) if shape is None else _shape(shape, "bernoulli")
        d = dtypes.as_dtype(dtype) or (probs.dtype if probs.dtype.kind == "f"
                                       else dtypes.get_default_dtype())
        # probabilities computed by the function are an input of the recorded draw, which
        # checks them at every call
        return from_array(self._draw(_bernoulli, probs, shape=shape, dtype=d))

    def beta(self, a, b, shape=(), *, dtype=None) -> Tensor:
        """Samples of the Beta(a, b) distribution (used by mixup and cutmix)."""
        if a <= 0 or b <= 0:
            raise ValueError(f"beta: parameters must be positive, got a={a}, b={b}")
        d = _float_dtype(dtype, "beta")
        return from_array(self._draw(_beta, a=a, b=b, shape=_shape(shape, "beta"), dtype=d))

    def choice(self, n, size=(), replace=True, p=None) -> Tensor:
        """Indices drawn from ``range(n)``, optionally with probabilities ``p``."""
        probs = () if p is None else (p.data if isinstance(p, Tensor)
                                      else np.asarray(p, dtype=np.float64),)
        return from_array(self._draw(_choice, *probs, n=int(n), size=_shape(size, "choice"),
                                replace=replace))


# the samplers: NumPy arrays from a NumPy generator (``Generator._draw``)
def _sampled(*arrays, gen, sample, **params):
    return _out(sample(gen._rng, *arrays, **params))


def _normal(r, *, shape, mean, std, dtype):
    x = r.standard_normal(shape, dtype=dtype if dtype in (dtypes.float32, dtypes.float64)
                          else dtypes.float64)
    if std != 1.0:
        x *= x.dtype.type(std)
    if mean != 0.0:
        x += x.dtype.type(mean)
    return x.astype(dtype, copy=False)


def _uniform(r, *, shape, low, high, dtype):
    x = r.random(shape, dtype=dtype if dtype in (dtypes.float32, dtypes.float64) else dtypes.float64)
    x = x * x.dtype.type(high - low) + x.dtype.type(low)
    return x.astype(dtype, copy=False)


def _randint(r, *, low, high, shape, dtype):
    return r.integers(low, high, size=shape, dtype=dtype)


def _permutation(r, *, n):
    return r.permutation(n).astype(dtypes.int64)


def _bernoulli(r, probs, *, shape, dtype):
    probs = B.to_numpy(probs)
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise ValueError("bernoulli: probabilities must lie in [0, 1]")
    u = r.random(shape)
    return (u < probs).astype(dtype)


def _beta(r, *, a, b, shape, dtype):
    return r.beta(a, b, size=shape).astype(dtype)


def _choice(r, *p, n, size, replace):
    probs = np.asarray(B.to_numpy(p[0]), dtype=np.float64) if p else None
    return r.choice(n, size=size, replace=replace, p=probs).astype(dtypes.int64)


_global = Generator(0)


def default_generator() -> Generator:
    """The global generator used when no ``generator=`` is given."""
    return _global


def seed(s) -> None:
    """Seed the global generator: the same seed gives the same numbers."""
    _global.seed(s)


manual_seed = seed


def get_state() -> dict:
    return _global.get_state()


def set_state(state: dict) -> None:
    _global.set_state(state)


def get_generator(generator=None) -> Generator:
    """The generator to draw from: ``generator`` itself, or the global one when it is
    ``None`` (what every ``generator=`` argument of the library means)."""
    if generator is None:
        return _global
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a wonderland.random.Generator, got "
                        f"{type(generator).__name__}")
    return generator


def normal(shape=(), mean=0.0, std=1.0, *, dtype=None, requires_grad=False, generator=None):
    """Samples from N(mean, std²); see :meth:`Generator.normal`."""
    return get_generator(generator).normal(shape, mean, std, dtype=dtype, requires_grad=requires_grad)


def uniform(shape=(), low=0.0, high=1.0, *, dtype=None, requires_grad=False, generator=None):
    """Samples from U[low, high); see :meth:`Generator.uniform`."""
    return get_generator(generator).uniform(shape, low, high, dtype=dtype, requires_grad=requires_grad)


def randint(low, high=None, shape=(), *, dtype=None, generator=None):
    """Random integers in [low, high); see :meth:`Generator.randint`."""
    return get_generator(generator).randint(low, high, shape, dtype=dtype)


def permutation(n, *, generator=None):
    """A random permutation; see :meth:`Generator.permutation`."""
    return get_generator(generator).permutation(n)


def bernoulli(p, shape=None, *, dtype=None, generator=None):
    """0/1 samples with probability ``p``; see :meth:`Generator.bernoulli`."""
    return get_generator(generator).bernoulli(p, shape, dtype=dtype)


def choice(n, size=(), replace=True, p=None, *, generator=None):
    """Indices drawn from ``range(n)``; see :meth:`Generator.choice`."""
    return get_generator(generator).choice(n, size, replace, p)
