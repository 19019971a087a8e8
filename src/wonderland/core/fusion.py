"""Elementwise fusion for ``wl.jit`` programs: a chain of elementwise steps becomes one
compiled loop.

A recorded program computes, say, layer norm's backward as ``subtract``, ``multiply``,
``multiply``: three passes over memory, three temporary arrays and three calls. When
each intermediate is read by the next step only, the chain computes each element
independently of the others, and one loop can do it all::

    for i in range(rows):
        for j in range(cols):
            v0 = a0[i, j]; v1 = a1[i]; v2 = a2[j]
            t0 = np.float32(np.float32(v0) - np.float32(v1))
            t1 = np.float32(t0 * np.float32(v2))
            out[i, j] = t1

**What fuses.** A step whose primitive declares a *scalar form* (``Primitive(...,
scalar=...)``, checked by :func:`scalar_form`: the arithmetic and comparisons, ``sqrt``,
``abs``, ``maximum``/``minimum``, ``where``, ReLU and dropout's scaling), reading NumPy
arrays of booleans,
integers or floats. ``exp``, ``log`` and ``tanh`` stay NumPy's: its vectorised
implementations beat a loop calling the C library per element (a fused tanh-GELU chain
made a GPT step 12% slower), so they split chains. A step joins the step
that reads its result when that result has the reader's shape (no element computed
twice), is read by no other step and is not an output of the program, and no step between
them updates arrays in place: groups are trees whose root's result is the only one kept. Each operand of the group must broadcast over
the result along whole leading or trailing axes (full, a row, a column, a scalar), so
that the loop is two plain nested loops over contiguous memory.

**Same numbers.** Every intermediate is converted to the dtype NumPy gave it when
traced, operands first to the dtype NumPy's loop would compute in: a float32 chain is
computed in float32, operation by operation in the same order, so arithmetic gives the
same bits (``sqrt`` is correctly rounded in both). Each
fused loop is run once when the program is built, on the traced arrays, and compared
with the traced result; a group that disagrees or fails to compile stays unfused.

**Compiled once.** The loop's source depends only on the group's operations, shapes'
broadcasting and dtypes, so the same chain in every layer shares one kernel. Sources are
written to ``$WONDERLAND_CACHE_DIR/fused`` (``~/.cache/wonderland/fused`` by default) and
compiled by numba with ``cache=True``: later processes load the machine code.
``WONDERLAND_FUSION=0`` (or ``wl.jit(fn, fuse=False)``) turns fusion off.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings

import numpy as np

from ..backend import compiled

__all__ = ["scalar_form", "fuse", "enabled"]

_KINDS = "biuf"              # dtypes the loops handle


def scalar_form(template, cast="out") -> tuple:
    """Check a primitive's declaration of how it computes one element (its ``scalar=``),
    so that ``jit`` can fuse it; returns ``(template, cast)``.

    ``template`` is a Python expression over ``{0}``, ``{1}``... (one element of each
    operand) and ``{name}`` (the step's parameter ``name``, a number, written as a
    constant of the result's dtype). ``cast`` says what the operands are converted to
    first, as NumPy's ufunc loops do: ``"out"`` the result's dtype, ``"common"`` the
    operands' common dtype (comparisons), or a tuple of the operand positions converted
    to the result's dtype (the others are used as they are: ``where``'s condition)."""
    if not isinstance(template, str) or "{0}" not in template:
        raise ValueError(f"scalar_form: template must be a string using {{0}}, got {template!r}")
    if not (cast in ("out", "common") or (isinstance(cast, tuple)
                                          and all(isinstance(k, int) for k in cast))):
        raise ValueError(f"scalar_form: cast must be 'out', 'common' or a tuple of operand "
                         f"positions, got {cast!r}")
    return template, cast


def enabled() -> bool:
    """Whether fusion can compile its loops here: numba present, compiled kernels not
    switched off, and ``WONDERLAND_FUSION`` not ``0``."""
    return compiled.ENABLED and os.environ.get("WONDERLAND_FUSION", "1") != "0"


# ----------------------------------------------------------------------------- grouping
class _Seen:
    """What tracing saw of one value: shape, dtype, whether it is a NumPy array."""

    __slots__ = ("shape", "dtype", "plain")

    def __init__(self, array):
        self.plain = type(array) is np.ndarray
        self.shape = getattr(array, "shape", None)
        self.dtype = getattr(array, "dtype", None)


def _fusable(step, form, meta) -> bool:
    fn, params, ins, layout = step
    if form is None or type(layout) is not int or not ins:
        return False
    if any(not isinstance(v, numbers.Number) or isinstance(v, bool) for v in params.values()):
        return False
    values = [meta[s] for s in ins] + [meta[layout]]
    return all(m.plain and m.dtype.kind in _KINDS and (m.dtype.kind != "f" or m.dtype.itemsize >= 4)
               for m in values)                   # no float16: numba computes it poorly


def _groups(steps, forms, meta, keep_to_end):
    """Lists of step indices (in order) that fuse, each ending with the step whose
    result the group gives."""
    producer, readers, updates = {}, {}, []
    for i, (_, _, ins, layout) in enumerate(steps):
        for s in set(ins):
            readers[s] = readers.get(s, 0) + 1
        if type(layout) is int:
            producer[layout] = i
        elif layout is None:                      # updates arrays in place (running stats)
            updates.append(i)
    fusable = [_fusable(step, form, meta) for step, form in zip(steps, forms)]
    members = {}
    for c, (_, _, ins, out) in enumerate(steps):
        if not fusable[c]:
            continue
        group = [c]
        for s in dict.fromkeys(ins):
            p = producer.get(s)
            if (p is not None and p in members and readers[s] == 1 and s not in keep_to_end
                    and meta[s].shape == meta[out].shape
                    and not any(p < u < c for u in updates)):   # inputs may change between
                group = members.pop(p) + group
        members[c] = sorted(group)
    return [g for g in members.values() if len(g) > 1]


# ----------------------------------------------------------------------------- the loop
def _split(out_shape, operand_shapes):
    """``(q, kinds)``: the result's axes ``< q`` become rows and the rest columns, and each
    operand varies along rows, columns, both or neither (``kinds``: pairs of booleans);
    None if no split fits every operand."""
    d = len(out_shape)
    varies = []
    for shape in operand_shapes:
        padded = (1,) * (d - len(shape)) + tuple(shape)
        varies.append([n == m and m != 1 for n, m in zip(padded, out_shape)])
    for q in range(d + 1):                       # as few row axes as possible
        kinds = []
        for v in varies:
            rows, cols = v[:q], v[q:]
            live_rows = [x for x, m in zip(rows, out_shape[:q]) if m != 1]
            live_cols = [x for x, m in zip(cols, out_shape[q:]) if m != 1]
            if (any(live_rows) and not all(live_rows)) or (any(live_cols) and not all(live_cols)):
                break
            kinds.append((any(live_rows), any(live_cols)))
        else:
            return q, kinds
    return None


_LOAD = {(True, True): "a{k}[i, j]", (False, True): "a{k}[j]", (True, False): "a{k}[i]",
         (False, False): "a{k}[0]"}


def _source(group, steps, forms, meta, operands, kinds):
    """The kernel's module source for ``group`` reading ``operands`` (slots)."""
    names = {s: f"v{k}" for k, s in enumerate(operands)}
    body = [f"v{k} = " + _LOAD[kind].format(k=k) for k, kind in enumerate(kinds)]
    for n, i in enumerate(group):
        fn, params, ins, out = steps[i]
        template, cast = forms[i]
        out_type = f"np.{meta[out].dtype.name}"
        if cast == "out":
            args = [f"{out_type}({names[s]})" for s in ins]
        elif cast == "common":
            common = np.result_type(*[meta[s].dtype for s in ins]).name
            args = [f"np.{common}({names[s]})" for s in ins]
        else:
            args = [f"{out_type}({names[s]})" if k in cast else names[s]
                    for k, s in enumerate(ins)]
        consts = {k: f"{out_type}({v!r})" for k, v in params.items()}
        body.append(f"t{n} = {out_type}({template.format(*args, **consts)})")
        names[out] = f"t{n}"
    body.append(f"out[i, j] = t{len(group) - 1}")
    args = ", ".join(f"a{k}" for k in range(len(operands)))
    lines = ["import numpy as np", "from numba import njit", "",
             "", '@njit(cache=True, nogil=True, error_model="numpy")',
             f"def fused(out, {args}):",
             "    rows, cols = out.shape",
             "    for i in range(rows):",
             "        for j in range(cols):"]
    lines += ["            " + line for line in body]
    return "\n".join(lines) + "\n"


def _kernel(source):
    """The compiled ``fused`` function of a generated ``source`` (see
    :func:`wonderland.backend.compiled.load_generated`)."""
    return compiled.load_generated(source, "fused").fused


class FusedStep:
    """One fused group as a program step: ``step(*operands)`` returns the group's
    result, a new array of the traced shape and dtype."""

    def __init__(self, kernel, shape, dtype, rows, cols, kinds, names):
        self.kernel = kernel
        self.shape, self.dtype = shape, dtype
        self.grid = (rows, cols)
        self.operand_shapes = [(rows, cols) if r and c else (cols,) if c else (rows,) if r
                               else (1,) for r, c in kinds]
        self.__name__ = f"fused({','.join(names)})"

    def __call__(self, *operands):
        out = np.empty(self.shape, self.dtype)
        self.kernel(out.reshape(self.grid),
                    *[a.reshape(s) for a, s in zip(operands, self.operand_shapes)])
        return out


def _build(group, steps, forms, meta, names, traced):
    """The fused step of ``group`` (with its operand slots), or None if it does not apply
    or does not reproduce the traced result."""
    inside = {steps[i][3] for i in group}
    operands = list(dict.fromkeys(s for i in group for s in steps[i][2] if s not in inside))
    out = steps[group[-1]][3]
    shape = tuple(meta[out].shape)
    if not shape or any(len(meta[s].shape) > len(shape) for s in operands):
        return None
    split = _split(shape, [meta[s].shape for s in operands])
    if split is None:
        return None
    q, kinds = split
    rows, cols = math.prod(shape[:q]), math.prod(shape[q:])
    try:
        kernel = _kernel(_source(group, steps, forms, meta, operands, kinds))
        step = FusedStep(kernel, shape, meta[out].dtype, rows, cols, kinds,
                         [names[i] for i in group])
        got = step(*[traced[s] for s in operands])
    except Exception as exc:                      # a form numba cannot type: stay unfused
        warnings.warn(f"jit: could not fuse {'/'.join(names[i] for i in group)} "
                      f"({type(exc).__name__}: {str(exc)[:200]}); its steps run one by one",
                      RuntimeWarning, stacklevel=2)
        return None
    want = traced[out]
    if want.dtype.kind == "f":
        ok = np.allclose(got, want, rtol=1e-5 if want.dtype.itemsize <= 4 else 1e-12,
                         atol=0.0, equal_nan=True)
    else:
        ok = np.array_equal(got, want)
    return (step, operands) if ok else None


def fuse(steps, names, forms, traced, keep_to_end):
    """``(steps, names)`` with the program's elementwise chains fused (see the module).
    ``forms``: each step's scalar form (its primitive's ``scalar``) or ``None``;
    ``traced``: every slot's array as tracing saw it; ``keep_to_end``: slots that must
    stay values of their own (outputs, constants)."""
    meta = [_Seen(a) for a in traced]
    fused_at, dropped = {}, set()
    for group in _groups(steps, forms, meta, keep_to_end):
        built = _build(group, steps, forms, meta, names, traced)
        if built is None:
            continue
        step, operands = built
        fused_at[group[-1]] = (step, {}, tuple(operands), steps[group[-1]][3])
        dropped.update(group[:-1])
    if not fused_at:
        return steps, names
    new_steps, new_names = [], []
    for i, (step, name) in enumerate(zip(steps, names)):
        if i in dropped:
            continue
        if i in fused_at:
            step = fused_at[i]
            name = step[0].__name__
        new_steps.append(step)
        new_names.append(name)
    return new_steps, new_names
