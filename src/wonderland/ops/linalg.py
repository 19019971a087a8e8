"""Products: matmul (vectors, matrices, batched with broadcast batch dims), einsum and
tensordot. Contractions go to BLAS through the backend's ``matmul``/``einsum``.
"""

from __future__ import annotations

import string

import numpy as np

from .. import backend as B
from ..backend import threads
from ..core.primitive import Primitive, apply
from ..core.structural import reshape as _reshape
from ..core.tensor import Tensor
from ..core.vmap import moveaxis
from .arguments import constant, namespace, operands, to_tensor
from .shape import _transpose


# ----------------------------------------------------------------------------- matmul
_GEMM_SPLIT = 1 << 24        # multiply-adds below which one thread does the whole product
                             # (handing blocks to the pool costs ~50-100 us: the split only
                             # pays off from ~8M multiply-adds, ~0.2 ms of one core)


def gemm(a, b, out=None):
    """``a @ b`` for 2-D NumPy arrays, split into row (or column) blocks on the library's
    thread pool, each block a single-threaded BLAS call: the pool's idle threads sleep, so
    a busy machine slows the product down in proportion instead of stalling a spinning
    BLAS team."""
    m, k = a.shape
    n = b.shape[1]
    if m * k * n < _GEMM_SPLIT or not isinstance(a, np.ndarray):     # the common, small case
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    parts = threads.get_num_threads()
    if out is None:
        out = B.ns(a).empty((m, n), dtype=np.result_type(a.dtype, b.dtype))
    if parts == 1:
        return np.matmul(a, b, out=out)
    if m >= 4 * parts:                                   # row blocks: contiguous output
        threads.parallel_for(m, lambda lo, hi, _: np.matmul(a[lo:hi], b, out=out[lo:hi]))
    else:
        threads.parallel_for(n, lambda lo, hi, _: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]))
    return out


def _matrix_shape(shape: tuple) -> tuple:
    """``shape`` folded into a matrix ``(product of the leading dims, last dim)``: the
    row count is spelled out, since ``-1`` cannot be inferred when the last dim is 0."""
    n = 1
    for d in shape[:-1]:
        n *= d
    return (n, shape[-1])


def _matmul_forward(a, b):
    if a.ndim == 2 and b.ndim == 2:
        return gemm(a, b)
    if a.ndim > 2 and b.ndim == 2 and a.flags.c_contiguous:
        # one large GEMM instead of a loop of small ones over the batch
        return gemm(a.reshape(_matrix_shape(a.shape)), b).reshape(a.shape[:-1] + (b.shape[-1],))
    return np.matmul(a, b)


_SWAP_LAST: dict = {}


def _mT(t: Tensor) -> Tensor:
    """Swap the last two axes (params cached per rank: this sits on the hot path)."""
    params = _SWAP_LAST.get(t.ndim)
    if params is None:
        nd = t.ndim
        params = _SWAP_LAST[nd] = {"axes": tuple(range(nd - 2)) + (nd - 1, nd - 2)}
    return apply(_transpose, (t,), params)


def _mm(a: Tensor, b: Tensor) -> Tensor:
    return apply(_matmul, (a, b))


def _matmul_vjp_a(g, out, a, b):
    if b.ndim == 1:
        if a.ndim == 1:
            return g * b
        return g.expand_dims(-1) * b                        # (..., n, 1) * (k,)
    if a.ndim == 1:
        return _mm(g.expand_dims(-2), _mT(b)).squeeze(-2)    # (..., k), summed by the engine
    return _mm(g, _mT(b))                                 # batch dims summed by the engine


def _matmul_vjp_b(g, out, a, b):
    if a.ndim == 1:
        if b.ndim == 1:
            return g * a
        return a.expand_dims(-1) * g.expand_dims(-2)        # (k, 1) * (..., 1, m)
    if b.ndim == 1:
        return _mm(_mT(a), g.expand_dims(-1)).squeeze(-1)
    if b.ndim == 2 and a.ndim > 2:                         # fold the batch into one GEMM
        return _mm(_mT(a.reshape(_matrix_shape(a.shape))), g.reshape(_matrix_shape(g.shape)))
    return _mm(_mT(a), g)


def _matmul_batch(args, axes):
    """Batch axes first; 1-D operands made matrices; per-example ranks padded with ones
    (unbatched operands get a size-1 batch axis), so NumPy's broadcasting lines them up."""
    (a, b), (ax, bx) = args, axes
    a_vec = (a.ndim - (ax is not None)) == 1
    b_vec = (b.ndim - (bx is not None)) == 1
    a = a if ax is None else moveaxis(a, ax, 0)
    b = b if bx is None else moveaxis(b, bx, 0)
    if a_vec:
        a = _reshape(a, a.shape[:-1] + (1, a.shape[-1]))
    if b_vec:
        b = _reshape(b, b.shape + (1,))
    rank = max(a.ndim - (ax is not None), b.ndim - (bx is not None))
    a = _lead(a, ax is not None, rank)
    b = _lead(b, bx is not None, rank)
    out = apply(_matmul, (a, b))
    if a_vec:
        out = _reshape(out, out.shape[:-2] + out.shape[-1:])
    if b_vec:
        out = _reshape(out, out.shape[:-1])
    return out, 0


def _lead(x, batched, rank):
    """``x`` as ``(B or 1, 1, ..., *matrix dims)`` with ``rank`` per-example dims."""
    per = x.ndim - batched
    shape = ((x.shape[0],) if batched else (1,)) + (1,) * (rank - per) + x.shape[batched:]
    return _reshape(x, shape)


_matmul = Primitive(
    "matmul", _matmul_forward, save={0: (1,), 1: (0,)},
    onnx=lambda g, inputs, outputs: g.elementwise("MatMul", inputs, outputs[0]),
    vjp=(_matmul_vjp_a, _matmul_vjp_b),
    jvp=(lambda t, out, a, b: _mm(t, b), lambda t, out, a, b: _mm(a, t)),
    batch=_matmul_batch)


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's rules: 1-D operands are vectors, leading dims batch.

    Costs O(n·k·m) for ``(n, k) @ (k, m)``.
    """
    a, b = operands(a, b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    inner_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if a.shape[-1] != inner_b:
        raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape}")
    return apply(_matmul, (a, b))


# ----------------------------------------------------------------------------- einsum
_LETTERS = string.ascii_letters
_paths: dict = {}


def _einsum_forward(*arrays, spec):
    key = (spec, tuple(a.shape for a in arrays))
    path = _paths.get(key)
    if path is None:
        if len(arrays) <= 1:
            path = False
        else:               # the order depends on shapes only: plan on stand-in arrays
            stand_ins = [np.broadcast_to(np.empty((), a.dtype), a.shape) for a in arrays]
            path = np.einsum_path(spec, *stand_ins, optimize="greedy")[0]
        if len(_paths) > 4096:
            _paths.clear()
        _paths[key] = path
    return B.ns(arrays[0]).einsum(spec, *arrays, optimize=path)


def _einsum_operand_grad(g, operands_, index, ins, out_sub):
    """Cotangent of operand ``index`` of ``ins -> out_sub`` given output cotangent ``g``."""
    target = ins[index]
    shape = operands_[index].shape
    sizes = dict(zip(target, shape))
    unique = "".join(dict.fromkeys(target))
    others = [(s, operands_[j]) for j, s in enumerate(ins) if j != index]
    available = set(out_sub).union(*[set(s) for s, _ in others]) if others else set(out_sub)
    produced = "".join(c for c in unique if c in available)
    spec = ",".join([out_sub] + [s for s, _ in others]) + "->" + produced
    grad = einsum(spec, g, *[t for _, t in others])
    if produced != unique:                       # letters summed inside this operand only
        expanded = grad.reshape(tuple(sizes[c] if c in produced else 1 for c in unique))
        grad = expanded.broadcast_to(tuple(sizes[c] for c in unique))
    if len(unique) != len(target):              # repeated letters: put values on the diagonal
        fresh = iter(c for c in _LETTERS if c not in set("".join(ins) + out_sub))
        result_sub, deltas, seen = "", [], set()
        for c in target:
            if c in seen:
                new = next(fresh)
                deltas.append((c + new, constant(namespace(g).eye(sizes[c], dtype=g.dtype))))
                result_sub += new
            else:
                seen.add(c)
                result_sub += c
        spec = ",".join([unique] + [s for s, _ in deltas]) + "->" + result_sub
        grad = einsum(spec, grad, *[d for _, d in deltas])
    return grad


def _einsum_vjp_all(g, out, inputs, needs, *, spec):
    ins, out_sub = spec.split("->")
    ins = ins.split(",")
    return [_einsum_operand_grad(g, inputs, i, ins, out_sub) if need else None
            for i, need in enumerate(needs)]


def _einsum_jvp_all(tangents, out, inputs, *, spec):
    total = None
    for i, t in enumerate(tangents):
        if t is None:
            continue
        ops_ = list(inputs)
        ops_[i] = t
        term = apply(_einsum, tuple(ops_), {"spec": spec})
        total = term if total is None else total + term
    return total


def _einsum_batch(args, axes, *, spec):
    """A fresh letter for the batch axis, in every batched operand and the output."""
    ins, out = spec.split("->")
    ins = ins.split(",")
    used = set(spec)
    letter = next(c for c in _LETTERS if c not in used)
    new_ins = [s if ax is None else s[:ax] + letter + s[ax:] for s, ax in zip(ins, axes)]
    new_spec = ",".join(new_ins) + "->" + letter + out
    return apply(_einsum, tuple(args), {"spec": new_spec}), 0


_einsum = Primitive("einsum", _einsum_forward, vjp_all=_einsum_vjp_all, jvp_all=_einsum_jvp_all,
                    save="inputs", batch=_einsum_batch,
                    onnx=lambda g, inputs, outputs, *, spec:
                        g.elementwise("Einsum", inputs, outputs[0], equation=spec))


def _parse_einsum(subscripts: str, ndims):
    subs = subscripts.replace(" ", "")
    if "->" in subs:
        lhs, out = subs.split("->")
        explicit = True
    else:
        lhs, out, explicit = subs, None, False
    ins = lhs.split(",")
    if len(ins) != len(ndims):
        raise ValueError(f"einsum: {subscripts!r} names {len(ins)} operands but "
                         f"{len(ndims)} were given")
    used = set(c for c in subs if c.isalpha())
    for c in subs:
        if not (c.isalpha() or c in ",.->"):
            raise ValueError(f"einsum: invalid character {c!r} in {subscripts!r}")
    spare = iter(c for c in _LETTERS if c not in used)
    ell_len = 0
    for s, nd in zip(ins, ndims):
        if "..." in s:
            ell_len = max(ell_len, nd - (len(s) - 3))
    ell = "".join(next(spare) for _ in range(ell_len))
    expanded = []
    for s, nd in zip(ins, ndims):
        if "..." in s:
            k = nd - (len(s) - 3)
            if k < 0:
                raise ValueError(f"einsum: operand subscripts {s!r} have more letters than "
                                 f"the operand's {nd} dimensions")
            s = s.replace("...", ell[ell_len - k:])
        if len(s) != nd:
            raise ValueError(f"einsum: operand subscripts {s!r} name {len(s)} dimensions "
                             f"but the operand has {nd}")
        expanded.append(s)
    if explicit:
        out = out.replace("...", ell)
        for c in out:
            if c not in "".join(expanded):
                raise ValueError(f"einsum: output letter {c!r} does not appear in the inputs")
    else:
        counts = {}
        for c in "".join(expanded):
            counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return expanded, out, ell


def einsum(subscripts: str, *operands_) -> Tensor:
    """Einstein summation, NumPy's notation (``"bij,bjk->bik"``, ``...`` allowed).

    Differentiable in every operand, including repeated letters (traces, diagonals);
    contraction orders are chosen once per spec and shape and cached.
    """
    if not isinstance(subscripts, str):
        raise TypeError("einsum: the first argument must be the subscripts string")
    if not operands_:
        raise ValueError("einsum: at least one operand is required")
    tensors = [to_tensor(o, "einsum") for o in operands_]
    ins, out, ell = _parse_einsum(subscripts, [t.ndim for t in tensors])
    sizes = {}
    for s, t in zip(ins, tensors):
        for c, n in zip(s, t.shape):
            if c in ell:
                continue
            if sizes.setdefault(c, n) != n:
                raise ValueError(f"einsum: letter {c!r} has size {sizes[c]} in one operand "
                                 f"and {n} in another ({subscripts!r}, shapes "
                                 f"{[t.shape for t in tensors]})")
    if ell:                                       # broadcast the ellipsis dims explicitly
        batch = np.broadcast_shapes(*[tuple(n for c, n in zip(s, t.shape) if c in ell)
                                      for s, t in zip(ins, tensors)])
        bsize = dict(zip(ell[len(ell) - len(batch):], batch))
        for i, (s, t) in enumerate(zip(ins, tensors)):
            want = tuple(bsize[c] if c in ell else n for c, n in zip(s, t.shape))
            if want != t.shape:
                tensors[i] = t.broadcast_to(want)
    if len({t.dtype for t in tensors}) > 1:
        common = np.result_type(*[t.dtype for t in tensors])
        tensors = [t.astype(common) for t in tensors]
    spec = ",".join(ins) + "->" + out
    return apply(_einsum, tuple(tensors), {"spec": spec})


# ----------------------------------------------------------------------------- tensordot
def tensordot(a, b, axes=2) -> Tensor:
    """Sum products over the given axes, NumPy's ``tensordot`` (via one matmul)."""
    a, b = operands(a, b, "tensordot")
    if isinstance(axes, int):
        if axes < 0 or axes > min(a.ndim, b.ndim):
            raise ValueError(f"tensordot: axes={axes} is invalid for shapes {a.shape} and {b.shape}")
        axes_a = list(range(a.ndim - axes, a.ndim))
        axes_b = list(range(axes))
    else:
        try:
            axes_a, axes_b = axes
        except (TypeError, ValueError):
            raise ValueError(f"tensordot: axes must be an int or a pair of axis lists, got "
                             f"{axes!r}") from None
        axes_a = [axes_a] if isinstance(axes_a, int) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, int) else list(axes_b)
        if len(axes_a) != len(axes_b):
            raise ValueError(f"tensordot: {len(axes_a)} axes of a but {len(axes_b)} of b")
        axes_a = [x % a.ndim if -a.ndim <= x < a.ndim else _bad_axis(x, a) for x in axes_a]
        axes_b = [x % b.ndim if -b.ndim <= x < b.ndim else _bad_axis(x, b) for x in axes_b]
    for i, j in zip(axes_a, axes_b):
        if a.shape[i] != b.shape[j]:
            raise ValueError(f"tensordot: shape mismatch for sum: axis {i} of a has size "
                             f"{a.shape[i]} but axis {j} of b has size {b.shape[j]}")
    free_a = [i for i in range(a.ndim) if i not in axes_a]
    free_b = [j for j in range(b.ndim) if j not in axes_b]
    k = 1
    for i in axes_a:
        k *= a.shape[i]
    a2 = a.transpose(free_a + axes_a).reshape(-1, k)
    b2 = b.transpose(axes_b + free_b).reshape(k, -1)
    out_shape = tuple(a.shape[i] for i in free_a) + tuple(b.shape[j] for j in free_b)
    return matmul(a2, b2).reshape(out_shape)


def _bad_axis(x, t):
    raise ValueError(f"tensordot: axis {x} is out of range for shape {t.shape}")


def outer(a, b) -> Tensor:
    """Outer product of two vectors (inputs are flattened, as in NumPy)."""
    a, b = operands(a, b, "outer")
    return a.reshape(-1, 1) * b.reshape(1, -1)
