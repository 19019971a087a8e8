"""Fusion of elementwise chains in wl.jit programs: each fused loop gives what the NumPy
steps it replaces give; what must not fuse does not; models equal their unfused
programs; compiled loops are reused by a later process."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import wonderland as wl
from wonderland.backend import compiled
from wonderland.core import fusion

pytestmark = pytest.mark.skipif(not fusion.enabled(), reason="numba is not available")

nn = wl.nn
F = nn.functional


def _fused(f):
    return [n for n in f.last_program.names if n.startswith("fused(")]


def _data(rng, dtype, *shapes):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# Each case: the function (on tensors), its NumPy reference, the operands' shapes.
_CASES = {
    "bias row, relu": (lambda x, b: wl.relu(x * 2.0 + b) - 1.0,
                       lambda x, b: np.maximum(x * 2.0 + b, 0) - 1.0, [(6, 5), (5,)]),
    "per-row column": (lambda x, s: (x - x.mean(-1, keepdims=True)) * s * 3.0,
                       lambda x, s: (x - x.mean(-1, keepdims=True)) * s * 3.0,
                       [(4, 3, 5), (4, 3, 1)]),
    "comparison, where": (lambda x, y: wl.where(x > y, x * y, -y) + 1.0,
                          lambda x, y: np.where(x > y, x * y, -y) + 1.0, [(7, 3), (7, 3)]),
    "math": (lambda x, y: wl.tanh(wl.exp(x) * 0.5) + wl.sqrt(wl.abs(y)) - wl.log(wl.abs(x) + 1.0),
             lambda x, y: np.tanh(np.exp(x) * 0.5) + np.sqrt(np.abs(y)) - np.log(np.abs(x) + 1.0),
             [(3, 4, 5), (3, 4, 5)]),
    "maximum, minimum, scalar": (lambda x, y: wl.minimum(wl.maximum(x, y) * 2.0, 1.5) / 3.0,
                                 lambda x, y: np.minimum(np.maximum(x, y) * 2.0, 1.5) / 3.0,
                                 [(8,), ()]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(_CASES))
def test_fused_chains_equal_their_numpy_reference(case, dtype):
    fn, reference, shapes = _CASES[case]
    rng = np.random.default_rng(0)
    f = wl.jit(fn)
    for _ in range(3):                       # trace, checked replay, replay: new data each
        arrays = _data(rng, dtype, *shapes)
        got = f(*[wl.tensor(a) for a in arrays]).numpy()
        want = reference(*arrays)
        assert got.dtype == want.dtype == dtype
        # ≤ 6 elementwise steps, rounded (or contracted to FMAs, or through another exp/log) one
        # way in the loop and another in NumPy: a few ulps, ~1e-15 in float64
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    assert _fused(f), f.last_program.names


def test_float32_arithmetic_is_bit_for_bit_the_unfused_program():
    rng = np.random.default_rng(1)

    def fn(x, y, b):
        return ((x - y) * b + x * 0.25) / (y * y + 1.0)

    fused, plain = wl.jit(fn), wl.jit(fn, fuse=False)
    arrays = _data(rng, np.float32, (64, 33), (64, 33), (33,))
    fused(*arrays), plain(*arrays)
    arrays = _data(rng, np.float32, (64, 33), (64, 33), (33,))
    np.testing.assert_array_equal(fused(*arrays).numpy(), plain(*arrays).numpy())
    assert _fused(fused) and not _fused(plain)
    assert len(fused.last_program) < len(plain.last_program)


def test_nan_propagates_as_in_numpy():
    x = np.array([1.0, np.nan, -2.0, 3.0], np.float32)
    y = np.array([np.nan, 0.5, 1.0, -1.0], np.float32)
    f = wl.jit(lambda a, b: wl.maximum(a, b) * 2.0 + wl.minimum(a, b))
    f(x, y)
    got = f(x, y).numpy()
    np.testing.assert_array_equal(got, np.maximum(x, y) * 2.0 + np.minimum(x, y))
    assert _fused(f)


def _twice_read(x, y):
    h = x * y
    return h + 1.0, h - 1.0


def _kept(x, y):
    h = x * y
    return h, h + 1.0


def _broadcast(x, y):
    return (x[0] * 2.0) + y                     # x[0]*2 has 4 elements, the sum 20


@pytest.mark.parametrize("fn", [_twice_read, _kept, _broadcast])
def test_what_must_stay_a_value_of_its_own_is_not_fused(fn):
    """An intermediate read by two steps, one that is an output, one smaller than the
    result (it would be computed once per element)."""
    rng = np.random.default_rng(2)
    f, plain = wl.jit(fn), wl.jit(fn, fuse=False)
    for _ in range(2):
        args = _data(rng, np.float32, (5, 4), (5, 4))
        got, want = f(*args), plain(*args)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not _fused(f), f.last_program.names


def _steps_with_update_between():
    def update(a):                                  # an in-place step returns nothing
        a += 1.0

    traced = [np.ones((2, 3)), np.full((2, 3), 2.0), np.zeros((2, 3)), np.zeros((2, 3)),
              np.zeros((2, 3))]
    traced[2] = traced[0] + traced[1]
    traced[4] = traced[2] * traced[1]
    steps = [(np.add, {}, (0, 1), 2), (update, {}, (3,), None), (np.multiply, {}, (2, 1), 4)]
    return steps, ["add", "update", "multiply"], traced


ADD, MULTIPLY = fusion.scalar_form("{0} + {1}"), fusion.scalar_form("{0} * {1}")


def test_no_fusion_across_a_step_that_updates_arrays_in_place():
    steps, names, traced = _steps_with_update_between()
    assert fusion.fuse(steps, names, [ADD, None, MULTIPLY], traced, {4}) == (steps, names)
    no_update = [steps[0], steps[2]]
    fused, fused_names = fusion.fuse(no_update, ["add", "multiply"], [ADD, MULTIPLY], traced, {4})
    assert fused_names == ["fused(add,multiply)"]
    step, params, ins, out = fused[0]
    assert ins == (0, 1) and out == 4
    np.testing.assert_array_equal(step(traced[0], traced[1]), (traced[0] + traced[1]) * traced[1])


def test_a_form_that_does_not_compile_warns_and_stays_unfused():
    def twice(x):
        return x * 2.0

    forms = [fusion.scalar_form("no_such_function({0})"), ADD]
    traced = [np.ones(3), np.full(3, 2.0), np.full(3, 3.0)]
    steps = [(twice, {}, (0,), 1), (np.add, {}, (1, 0), 2)]
    with pytest.warns(RuntimeWarning, match="could not fuse twice/add"):
        assert fusion.fuse(steps, ["twice", "add"], forms, traced, {2}) == (steps, ["twice", "add"])


def test_transformer_block_with_dropout_equals_its_unfused_program():
    rng = np.random.default_rng(3)
    model = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1,
                                       activation="gelu", batch_first=True, norm_first=True)
    params = dict(model.named_parameters())

    def run(p, x, y):
        return wl.value_and_grad(lambda q: F.mse_loss(nn.functional_call(model, q, x), y))(p)

    programs = {fuse: wl.jit(run, fuse=fuse) for fuse in (True, False)}
    for _ in range(3):
        x, y = _data(rng, np.float32, (3, 7, 16), (3, 7, 16))
        results = {}
        for fuse, f in programs.items():
            wl.random.seed(5)                       # the same dropout masks for both
            results[fuse] = f(params, wl.tensor(x), wl.tensor(y))
        (l1, g1), (l0, g0) = results[True], results[False]
        np.testing.assert_allclose(l1.numpy(), l0.numpy(), rtol=1e-6)
        for k in g0:
            np.testing.assert_allclose(g1[k].numpy(), g0[k].numpy(), rtol=1e-5, atol=1e-7,
                                       err_msg=k)
    names = _fused(programs[True])
    assert any("masked_scale" in n for n in names), names     # dropout and residual sum
    assert len(programs[True].last_program) < len(programs[False].last_program)


def test_compiled_loops_are_reused_by_a_later_process(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, warnings, wonderland as wl
        warnings.simplefilter("error")
        f = wl.jit(lambda x, b: wl.relu(x * 2.0 + b) - 1.0)
        x, b = np.ones((3, 4), np.float32), np.arange(4, dtype=np.float32)
        f(x, b)
        print(f(x, b).numpy().sum(), [n for n in f.last_program.names if "fused" in n])
    """)
    env = dict(os.environ, WONDERLAND_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert r.stdout.split(" ", 1) == ["30.0", "['fused(multiply,add,relu,subtract)']\n"]
    sources = list((tmp_path / "fused").glob("fused_*.py"))
    assert len(sources) == 1
    assert list((tmp_path / "fused" / "__pycache__").glob("*.nbi"))      # numba's index


def test_a_cache_file_with_other_content_is_rewritten_before_it_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("WONDERLAND_CACHE_DIR", str(tmp_path))
    steps = [(np.add, {}, (0, 1), 2), (np.multiply, {}, (2, 1), 3)]
    traced = [np.ones(4), np.full(4, 2.0), np.full(4, 3.0), np.full(4, 6.0)]
    meta = [fusion._Seen(a) for a in traced]
    source = fusion._source([0, 1], steps, [ADD, MULTIPLY], meta, [0, 1], [(False, True)] * 2)
    digest = __import__("hashlib").sha1(source.encode()).hexdigest()[:20]
    planted = tmp_path / "fused" / f"fused_{digest}.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("raise SystemExit('a planted file was run')\n")
    compiled._GENERATED.pop(digest, None)
    kernel = fusion._kernel(source)
    assert planted.read_text() == source
    out = np.empty((1, 4))
    kernel(out, traced[0], traced[1])
    np.testing.assert_array_equal(out[0], (traced[0] + traced[1]) * traced[1])


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_cache_directory_others_may_write_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("WONDERLAND_CACHE_DIR", str(tmp_path / "mine"))
    assert compiled.cache_dir() == str(tmp_path / "mine" / "fused")
    os.chmod(tmp_path / "mine" / "fused", 0o777)              # ours: tightened again
    assert compiled.cache_dir() == str(tmp_path / "mine" / "fused")
    assert not os.stat(tmp_path / "mine" / "fused").st_mode & 0o022


def test_fusion_can_be_switched_off(monkeypatch):
    fn = _CASES["bias row, relu"][0]
    args = _data(np.random.default_rng(4), np.float32, (6, 5), (5,))
    off = wl.jit(fn, fuse=False)
    off(*args)
    monkeypatch.setenv("WONDERLAND_FUSION", "0")
    env_off = wl.jit(fn)
    env_off(*args)
    assert not _fused(off) and not _fused(env_off) and not env_off.fuse


@pytest.mark.parametrize("scalar,match", [
    (3, "template must be a string using"),
    ("x + 1", "template must be a string using"),
    (("{0}", "input"), "cast must be 'out', 'common' or a tuple"),
])
def test_scalar_forms_are_checked_where_a_primitive_declares_them(scalar, match):
    from wonderland.core.primitive import Primitive

    with pytest.raises((TypeError, ValueError), match=match):
        Primitive("twice", lambda x: x * 2.0, differentiable=False, scalar=scalar)
    assert Primitive("twice", lambda x: x * 2.0, differentiable=False,
                     scalar="{0} * 2.0").scalar == ("{0} * 2.0", "out")
