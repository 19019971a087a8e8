"""The export graph that primitives' ONNX rules write into, and :class:`Dim`, a size that
follows the dynamic axes.

A rule is ``rule(graph, inputs, outputs, **params)``: ``inputs`` are the names of the
step's input values, ``outputs`` the names its results must get (a flat list in the order
of the step's results; ``None`` for a result nothing reads, which the rule may skip), and
``params`` the step's parameters. The rule adds nodes with :meth:`ExportGraph.node` and the
helpers below; it may ask for the traced shape and dtype of any value the exporter knows
(every input and output of every step, and what the helpers declare).

Shapes are tuples of ints and :class:`Dim` objects: a ``Dim`` is a size that changes with
the dynamic axes (``batch``, ``7*batch``). A parameter that holds such a size (reshape's
target, a slice bound) reaches the rule as a ``Dim`` too. Using one as a number raises
:class:`ExportError`; :meth:`ExportGraph.shape_tensor` turns a mix of ints and ``Dim`` s
into a 1-D int64 value computed at run time from the inputs' shapes.

This module imports the ``onnx`` package only when a graph is made.
"""

from __future__ import annotations

import math

import numpy as np

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


class ExportError(RuntimeError):
    """A program that ONNX export cannot translate (the message says what and why)."""


class Dim:
    """A size that follows dynamic axes: ``coef × product of the named axes' sizes``
    (``coef`` is ``None`` for a size that changes with them without being such a
    multiple, which only rules that need not know it can take)."""

    __slots__ = ("coef", "symbols")

    def __init__(self, coef, symbols):
        self.coef = None if coef is None else int(coef)
        self.symbols = tuple(sorted(symbols))

    def __eq__(self, other):
        return isinstance(other, Dim) and other.coef == self.coef and \
            other.symbols == self.symbols and self.coef is not None

    def __hash__(self):
        return hash((self.coef, self.symbols))

    def __repr__(self):
        if self.coef is None:
            return f"<a size varying with {', '.join(self.symbols)}>"
        factors = ([str(self.coef)] if self.coef != 1 else []) + list(self.symbols)
        return "*".join(factors)

    def _refuse(self, *_):
        raise ExportError(f"onnx export: the size {self!r} follows a dynamic axis but was "
                          f"used as a number; this operation can only be exported with "
                          f"that axis static (leave it out of dynamic_axes)")

    __index__ = __int__ = __float__ = __bool__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __floordiv__ = __mod__ = __truediv__ = _refuse


def is_static(dims) -> bool:
    """Whether every size of ``dims`` is a plain int."""
    return not any(isinstance(d, Dim) for d in dims)


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("wonderland.onnx: exporting needs the 'onnx' package: "
                          "pip install 'wonderland[onnx]' (or pip install onnx)") from None
    return onnx


class ExportGraph:
    """The ONNX graph being built: nodes, initializers, and what is known of each value
    (traced shape, dtype, and for values fixed at export time, the array itself)."""

    def __init__(self, opset: int, symbol_sources=None):
        self.onnx = _onnx()
        self.opset = int(opset)
        self.nodes = []
        self.initializers = []
        self.step = "export"              # the step being translated (for messages)
        self._taken, self._counts = set(), {}
        self.produced = set()             # names some node, initializer or input gives
        self._shapes, self._dtypes, self._values = {}, {}, {}
        self._symbols = dict(symbol_sources or {})   # axis name -> (input name, axis)
        self._cache = {}

    # ------------------------------------------------------------------ names and facts
    def fresh(self, hint: str = "t") -> str:
        """A value name not used yet, made from ``hint``."""
        name, k = hint, self._counts.get(hint, 1)
        while name in self._taken:
            name, k = f"{hint}_{k}", k + 1
        self._counts[hint] = k
        self._taken.add(name)
        return name

    def reserve(self, name: str) -> str:
        """Claim ``name`` exactly (graph inputs and outputs); it must be free."""
        if name in self._taken:
            raise ValueError(f"onnx export: the name {name!r} is used twice")
        self._taken.add(name)
        return name

    def declare(self, name, shape=None, dtype=None, value=None) -> str:
        """Record what is known of value ``name``."""
        if shape is not None:
            self._shapes[name] = tuple(shape)
        if dtype is not None:
            self._dtypes[name] = np.dtype(dtype)
        if value is not None:
            self._values[name] = value
        return name

    def shape(self, name) -> tuple:
        """The traced shape of ``name`` (ints and :class:`Dim` s)."""
        try:
            return self._shapes[name]
        except KeyError:
            raise ExportError(f"onnx export ({self.step}): the shape of {name!r} is not "
                              f"known to the exporter") from None

    def has_shape(self, name) -> bool:
        return name in self._shapes

    def dtype(self, name) -> np.dtype:
        try:
            return self._dtypes[name]
        except KeyError:
            raise ExportError(f"onnx export ({self.step}): the dtype of {name!r} is not "
                              f"known to the exporter") from None

    def ndim(self, name) -> int:
        return len(self.shape(name))

    @staticmethod
    def static(dims) -> bool:
        """Whether every size of ``dims`` is a plain int (no :class:`Dim`)."""
        return is_static(dims)

    def value(self, name):
        """The array ``name`` holds when it is fixed at export time (an initializer, or
        computed from initializers only), else ``None``."""
        return self._values.get(name)

    # ------------------------------------------------------------------ nodes and constants
    def node(self, op_type: str, inputs, outputs=None, **attrs):
        """Add one ONNX node. ``inputs``: value names (``None`` or ``""`` for an optional
        input left out); ``outputs``: ``None`` (one new value: its name is returned), a
        name (returned), or a list of names (returned). Attributes with value ``None``
        are left out."""
        single = outputs is None or isinstance(outputs, str)
        outs = [self.fresh(op_type.lower())] if outputs is None else \
            [outputs] if isinstance(outputs, str) else list(outputs)
        for key, val in attrs.items():
            if _holds_dim(val):
                raise ExportError(f"onnx export ({self.step}): attribute {key}={val!r} of "
                                  f"{op_type} follows a dynamic axis; ONNX attributes are "
                                  f"fixed numbers (leave that axis out of dynamic_axes)")
        kept = {k: v for k, v in attrs.items() if v is not None}
        ins = ["" if i is None else i for i in inputs]
        self.nodes.append(self.onnx.helper.make_node(
            op_type, ins, outs, name=self.fresh(f"{self.step}/{op_type}"), **kept))
        self.produced.update(outs)
        return outs[0] if single else outs

    def constant(self, value, dtype=None, name=None) -> str:
        """An initializer holding ``value`` (small constants are shared)."""
        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64 and dtype is None and not isinstance(value, np.ndarray):
            raise ExportError(f"onnx export ({self.step}): a Python float constant needs an "
                              f"explicit dtype")
        key = None
        if name is None and arr.size <= 16:
            key = ("const", arr.dtype.str, arr.shape, arr.tobytes())
            found = self._cache.get(key)
            if found is not None:
                return found
        out = self.fresh(name or "const")
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")   # keeps 0-d arrays 0-d
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, out))
        self.produced.add(out)
        self.declare(out, arr.shape, arr.dtype, arr)
        if key is not None:
            self._cache[key] = out
        return out

    def scalar(self, value, dtype) -> str:
        """A 0-d constant of ``dtype``."""
        return self.constant(np.asarray(value, dtype=dtype))

    def ints(self, values) -> str:
        """A 1-D int64 constant."""
        return self.constant(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def onnx_type(self, dtype) -> int:
        return self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def require_opset(self, version: int, what: str) -> None:
        """Refuse to translate ``what`` below operator set ``version``."""
        if self.opset < version:
            raise ExportError(f"onnx export ({self.step}): {what} needs opset {version} or "
                              f"later; this export uses opset {self.opset} (pass opset=)")

    def cached(self, key, build) -> str:
        """The value made by ``build()`` the first time ``key`` is asked for (a causal
        mask shared by every layer, say)."""
        key = ("rule", key)
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def prune(self, outputs) -> None:
        """Drop the nodes and initializers no output depends on (a rule may compute a
        value another rule then reads from its constant instead)."""
        needed, kept = set(outputs), []
        for node in reversed(self.nodes):
            if any(o in needed for o in node.output):
                kept.append(node)
                needed.update(i for i in node.input if i)
        self.nodes = kept[::-1]
        self.initializers = [t for t in self.initializers if t.name in needed]

    # ------------------------------------------------------------------ typed helpers
    def cast(self, x: str, dtype, out=None) -> str:
        """``x`` as ``dtype`` (no node when it already is)."""
        dtype = np.dtype(dtype)
        if self._dtypes.get(x) == dtype:
            return x if out is None else self.node("Identity", [x], out)
        y = self.node("Cast", [x], out, to=self.onnx_type(dtype))
        return self.declare(y, self._shapes.get(x), dtype)

    def elementwise(self, op_type: str, inputs, out, **attrs) -> str:
        """An elementwise node computing in the dtype of ``out`` (inputs cast to it)."""
        dtype = self.dtype(out) if out in self._dtypes else None
        ins = [self.cast(i, dtype) if dtype is not None and i in self._dtypes else i
               for i in inputs]
        return self.node(op_type, ins, out, **attrs)

    def compare(self, op_type: str, inputs, out) -> str:
        """A comparison: inputs cast to their common dtype."""
        common = np.result_type(*[self.dtype(i) for i in inputs])
        return self.node(op_type, [self.cast(i, common) for i in inputs], out)

    def transpose(self, x: str, perm, out=None) -> str:
        perm = [int(p) for p in perm]
        if out is None and perm == list(range(len(perm))):
            return x
        y = self.node("Transpose", [x], out, perm=perm)
        if x in self._shapes:
            self.declare(y, [self._shapes[x][p] for p in perm], self._dtypes.get(x))
        return y

    def unsqueeze(self, x: str, axes, out=None) -> str:
        return self.node("Unsqueeze", [x, self.ints(axes)], out)

    def squeeze(self, x: str, axes, out=None) -> str:
        return self.node("Squeeze", [x, self.ints(axes)], out)

    def reduce(self, op_type: str, x: str, axes, keepdims: bool, out=None) -> str:
        """``op_type`` (ReduceSum, ReduceMax...) over ``axes``; no axes: ``x`` itself."""
        axes = [int(a) for a in axes]
        if not axes:
            return self.node("Identity", [x], out)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.ints(axes)], out, keepdims=int(keepdims))
        return self.node(op_type, [x], out, axes=axes, keepdims=int(keepdims))

    def matmul(self, a: str, b: str, out=None) -> str:
        return self.node("MatMul", [a, b], out)

    # ------------------------------------------------------------------ sizes at run time
    def symbol_size(self, symbol: str) -> str:
        """A 1-D int64 value ``[size]`` of the dynamic axis ``symbol``, read from the
        shape of the input that carries it."""
        key = ("symbol", symbol)
        if key not in self._cache:
            source, axis = self._symbols[symbol]
            shape = self.node("Shape", [source])
            self._cache[key] = self.node("Gather", [shape, self.ints([axis])], axis=0)
        return self._cache[key]

    def dim_size(self, dim: Dim) -> str:
        """A 1-D int64 value ``[size]`` of ``dim`` at run time."""
        if dim.coef is None:
            raise ExportError(f"onnx export ({self.step}): a size of the program changes "
                              f"with {', '.join(dim.symbols)} without being a multiple of "
                              f"{'their product' if len(dim.symbols) > 1 else 'it'}, so it "
                              f"cannot be computed from the inputs' shapes; export with "
                              f"that axis static")
        key = ("dim", dim.coef, dim.symbols)
        if key not in self._cache:
            size = self.symbol_size(dim.symbols[0])
            for s in dim.symbols[1:]:
                size = self.node("Mul", [size, self.symbol_size(s)])
            if dim.coef != 1:
                size = self.node("Mul", [size, self.ints([dim.coef])])
            self._cache[key] = size
        return self._cache[key]

    def shape_tensor(self, dims) -> str:
        """A 1-D int64 value holding ``dims`` (ints and :class:`Dim` s): a constant when
        every entry is an int, else ints and run-time sizes concatenated."""
        dims = list(dims)
        if is_static(dims):
            return self.ints(dims)
        pieces, run = [], []
        for d in dims:
            if isinstance(d, Dim):
                if run:
                    pieces.append(self.ints(run))
                    run = []
                pieces.append(self.dim_size(d))
            else:
                run.append(int(d))
        if run:
            pieces.append(self.ints(run))
        return pieces[0] if len(pieces) == 1 else self.node("Concat", pieces, axis=0)

    def reshape(self, x: str, shape, out=None) -> str:
        """``x`` reshaped to ``shape`` (ints and ``Dim`` s). A dynamic size equal to the
        input's at the same position becomes ONNX's 0 (copy), one other becomes -1, and
        any further ones are computed from the inputs' shapes."""
        shape = list(shape)
        src = self._shapes.get(x)
        if is_static(shape) or 0 in shape or src is None:
            target = self.shape_tensor(shape)
        else:
            spec = [0 if isinstance(d, Dim) and i < len(src) and src[i] == d else d
                    for i, d in enumerate(shape)]
            unknown = [i for i, d in enumerate(spec) if isinstance(d, Dim)]
            if len(unknown) == 1:
                spec[unknown[0]] = -1
            target = self.shape_tensor(spec)
        y = self.node("Reshape", [x, target], out)
        return self.declare(y, shape, self._dtypes.get(x))

    def expand(self, x: str, shape, out=None) -> str:
        """``x`` broadcast to ``shape``; dynamic sizes ``x`` already has become 1 (ONNX's
        Expand broadcasts both ways)."""
        shape = list(shape)
        src = self._shapes.get(x)
        if src is not None:
            lead = len(shape) - len(src)
            shape_spec = [1 if isinstance(d, Dim) and i >= lead and src[i - lead] == d else d
                          for i, d in enumerate(shape)]
        else:
            shape_spec = shape
        y = self.node("Expand", [x, self.shape_tensor(shape_spec)], out)
        return self.declare(y, shape, self._dtypes.get(x))

    def slice(self, x: str, starts, ends, axes, steps=None, out=None) -> str:
        """ONNX Slice; bounds may be ``Dim`` s."""
        ins = [x, self.shape_tensor(starts), self.shape_tensor(ends), self.ints(axes)]
        if steps is not None:
            ins.append(self.ints(steps))
        return self.node("Slice", ins, out)


def _holds_dim(value) -> bool:
    if isinstance(value, Dim):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_dim(v) for v in value)
    return False


def product(dims):
    """The product of static sizes."""
    return math.prod(int(d) for d in dims)
