"""Data-parallel training: one model replica per rank, gradients averaged across ranks.

``DistributedDataParallel(model)`` wraps a module so that, after ``loss.backward()``,
every rank holds the same gradient — the gradient of the loss on the *concatenation* of
all ranks' batches — and so the same parameters after each optimiser step::

    wl.distributed.init()
    model = wl.nn.parallel.DistributedDataParallel(build_model())
    opt = wl.optim.Adam(model.parameters(), 1e-3)
    for x, y in loader:                               # each rank its own shard
        opt.zero_grad()
        wl.nn.functional.cross_entropy(model(x), y).backward()   # gradients averaged
        opt.step()

How it works, following PyTorch's DDP:

* **Buckets**: parameters are grouped, in reverse order of registration (roughly the order
  in which backward finishes them), into flat buffers of about ``bucket_cap_mb``.
* **Start**: the ranks compare their parameters' and buffers' names, shapes and dtypes,
  their options (``average``, ``broadcast_buffers``) and the bucket layout itself (each
  bucket's parameters, dtype and size, so ranks given different ``bucket_cap_mb`` are
  caught too) — a mismatch is an error on every rank naming the first difference, not a
  hang — then rank 0's values are broadcast to all. Having agreed on the layout once,
  the per-step bucket reductions skip ``wl.distributed``'s per-call header
  (``iall_reduce(..., check=False)``): every step reduces the same buckets in the same
  order.
* **Hooks**: the core has no "this leaf's gradient is final" callback, so DDP makes one.
  During each forward every parameter is read through an identity primitive,
  ``grad_ready``, whose VJP rule receives the gradient flowing into that read. Inside the
  forward of the module that owns the parameter, the read is *anchored* to that call's
  input: the ``grad_ready`` node takes the input as a second argument (it gets no
  gradient), which makes the engine run the node right after the layer's own backward
  step instead of at the end of the sweep. Reads elsewhere (a parent module using a
  child's weight) go through an unanchored node. After the forward, DDP walks the graph
  from the outputs and counts, per parameter, the ``grad_ready`` nodes the loss can reach;
  a parameter is final when that many gradients have arrived (parameters the outputs do
  not use are final at once, with a zero gradient).
* **Overlap**: a final gradient is copied into its bucket; a full bucket starts a
  non-blocking all-reduce (``MPI_Iallreduce``) at once, while the engine goes on with
  earlier layers; buckets start in one fixed order on every rank, as MPI requires, and
  every later rule drives the progress of those in flight.
* **Finish**: the rule that completes the last parameter waits for the buckets and writes
  the averaged gradients to ``.grad``; the rules return no cotangent to the parameters,
  so the engine does not add the local gradient on top.
* **Weights**: each rank's gradient is weighted by its number of examples (the leading
  size of the first tensor argument) — one extra number per bucket — so ranks with
  batches of different sizes still give exactly the gradient of the concatenated batch
  for a mean loss. ``average="ranks"`` weights ranks equally (PyTorch's rule).

``no_sync()`` accumulates local gradients without communicating (gradient accumulation);
the next synchronised backward reduces the accumulated sum. BatchNorm-style buffers are
broadcast from rank 0 before each training forward (``broadcast_buffers``). The loss must
be computed from what the wrapped module returns (a gradient that reaches a parameter
another way is an error). Not supported: ``wl.checkpoint`` inside the wrapped module, and
differentiating through the gradients (``create_graph``) — the averaged gradients are
plain values.

``state_dict`` and ``load_state_dict`` are the wrapped module's, so checkpoints of a
data-parallel run load into the plain model and back.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import backend as B
from .. import distributed as dist
from ..core.modes import is_grad_enabled
from ..core.primitive import Primitive, apply
from ..core.pytree import flatten
from ..core.tensor import Tensor, from_array
from .module import Module, functional_call

__all__ = ["DistributedDataParallel"]


class _Slot:
    """Where a parameter's gradient goes: its DDP wrapper and its position."""

    __slots__ = ("owner", "index")

    def __init__(self, owner, index):
        self.owner = owner
        self.index = index

    def ready(self, g, step):
        return self.owner._grad_ready(self, g, step)


def _identity(x, *anchor, slot, step):
    return x


# one node per read of a parameter; the optional second input (the owning module's input)
# only places the node in the engine's order and receives no gradient
_READY = Primitive(
    "grad_ready", _identity, save=(), view=True,
    vjp=(lambda g, out, x, *anchor, slot, step: slot.ready(g, step),
         lambda g, out, x, *anchor, slot, step: None),
    jvp=(lambda t, out, x, *anchor, slot, step: t, None))


class _Bucket:
    """Parameters (by index) whose gradients travel together in one flat buffer, with
    the rank's weight in its last element."""

    __slots__ = ("params", "offsets", "buffer", "pending", "work")

    def __init__(self, params, offsets, dtype):
        self.params = params
        self.offsets = offsets
        self.buffer = np.empty(offsets[-1] + 1, dtype=dtype)
        self.pending = 0
        self.work = None


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training across the ranks (see the module
    docstring). ``wl.distributed.init()`` is called if it has not been."""

    def __init__(self, module: Module, *, bucket_cap_mb: float = 4.0,
                 broadcast_buffers: bool = True, average: str = "examples"):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a Module, got "
                            f"{type(module).__name__}")
        if average not in ("examples", "ranks"):
            raise ValueError(f"DistributedDataParallel: average must be 'examples' or 'ranks', "
                             f"got {average!r}")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)) \
                or not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive "
                             f"number, got {bucket_cap_mb!r}")
        dist.init()
        self.module = module
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        index = {id(p): i for i, (_, p) in enumerate(named)}
        bindings, owners = [], []         # every dotted name of a tracked parameter (ties too)
        for prefix, m in module.named_modules():
            own = [(name, index[id(p)]) for name, p in m._parameters.items()
                   if p is not None and id(p) in index]
            bindings += [(f"{prefix}.{name}" if prefix else name, i) for name, i in own]
            if own:
                owners.append((m, own))
        state = dict(broadcast_buffers=bool(broadcast_buffers), average=average,
                     _names=[n for n, _ in named], _params=[p for _, p in named],
                     _bindings=bindings, _owners=owners, _sync=True, _armed=False,
                     _started=False, _reported=0, _weight=1.0, _launched=0, _step=0)
        state["_slots"] = [_Slot(self, i) for i in range(len(named))]
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_buckets", self._make_buckets(bucket_cap_mb))
        self._check_same_model(bucket_cap_mb)
        self._broadcast_state()
        where = {}
        for bi, bucket in enumerate(self._buckets):
            for k, i in enumerate(bucket.params):
                where[i] = (bi, bucket.offsets[k])
        object.__setattr__(self, "_where", where)
        n = len(named)
        object.__setattr__(self, "_expected", [0] * n)    # reachable reads per parameter
        object.__setattr__(self, "_arrived", [0] * n)
        object.__setattr__(self, "_partial", [None] * n)  # gradients of the reads so far

    # ------------------------------------------------------------------ start
    def _check_same_model(self, bucket_cap_mb):
        """Every rank must hold the same parameters and buffers, the same options and the
        same bucket layout (what each step's unchecked reductions rely on); otherwise
        every rank raises, naming the first difference. (``bucket_cap_mb`` itself may
        differ as long as the layouts it gives agree; it is only quoted.)"""
        mine = dict(
            parameters=[[n, list(p.shape), str(p.dtype)]
                        for n, p in zip(self._names, self._params)],
            buffers=[[n, list(b.shape), str(b.dtype)] for n, b in self.module.named_buffers()],
            options=dict(average=self.average, broadcast_buffers=self.broadcast_buffers),
            buckets=[[str(b.buffer.dtype), int(b.buffer.size), [self._names[i] for i in b.params]]
                     for b in self._buckets])
        everyone = dist.all_gather_object(dict(mine, bucket_cap_mb=bucket_cap_mb))
        me = dist.rank()
        for r, theirs in enumerate(everyone):
            cap = theirs.pop("bucket_cap_mb")
            if theirs == mine:
                continue
            if theirs["parameters"] != mine["parameters"]:
                detail = _first_difference(mine["parameters"], theirs["parameters"])
            elif theirs["buffers"] != mine["buffers"]:
                detail = _first_difference(mine["buffers"], theirs["buffers"], "buffer")
            elif theirs["options"] != mine["options"]:
                keys = [k for k in mine["options"] if mine["options"][k] != theirs["options"][k]]
                raise dist.DistributedError(
                    f"DistributedDataParallel: the options differ: rank {me} has "
                    f"{_options(mine['options'], keys)}, rank {r} has "
                    f"{_options(theirs['options'], keys)}; every rank must pass the same options")
            else:
                raise dist.DistributedError(
                    f"DistributedDataParallel: the gradient buckets on rank {me} differ from "
                    f"those on rank {r}: {_bucket_difference(mine['buckets'], theirs['buckets'])}"
                    f" (bucket_cap_mb={bucket_cap_mb!r} here, {cap!r} there); every rank "
                    f"must pass the same bucket_cap_mb")
            raise dist.DistributedError(
                f"DistributedDataParallel: the model on rank {me} differs from the "
                f"model on rank {r}: {detail}; every rank must build the same model")

    def _broadcast_state(self):
        if dist.world_size() == 1:
            return
        for t in list(self._params) + list(self.module.buffers()):
            B.copy_into(t.data, dist.broadcast(t.data, src=0))
            t.bump_version()

    def _make_buckets(self, cap_mb):
        cap = cap_mb * (1 << 20)
        groups, current, size, dtype = [], [], 0, None
        for i in reversed(range(len(self._params))):
            p = self._params[i]
            nbytes = p.data.size * p.data.dtype.itemsize
            if current and (size + nbytes > cap or p.data.dtype != dtype):
                groups.append((current, dtype))
                current, size = [], 0
            current.append(i)
            size += nbytes
            dtype = p.data.dtype
        if current:
            groups.append((current, dtype))
        buckets = []
        for indices, dtype in groups:
            offsets = [0]
            for i in indices:
                offsets.append(offsets[-1] + self._params[i].data.size)
            buckets.append(_Bucket(indices, offsets, dtype))
        return buckets

    # ------------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        if dist.world_size() == 1 or not is_grad_enabled() or not self._params \
                or not self._sync:                # no_sync: the engine accumulates locally
            return self.module(*args, **kwargs)
        if self._armed and self._started:
            missing = [self._names[i] for i in range(len(self._params))
                       if self._arrived[i] < self._expected[i]]
            self._reset()
            raise dist.DistributedError(
                f"DistributedDataParallel: the previous backward pass did not deliver the "
                f"gradients of {len(missing)} parameter(s) ({', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}), so they were never averaged; "
                f"compute the loss from the wrapped module's outputs and call backward once "
                f"per forward")
        if self.training and self.broadcast_buffers and any(True for _ in self.module.buffers()):
            for b in self.module.buffers():
                B.copy_into(b.data, dist.broadcast(b.data, src=0))
        self._arm(args, kwargs)
        step = self._step
        outer = [apply(_READY, (p,), {"slot": s, "step": step})
                 for p, s in zip(self._params, self._slots)]
        with self._anchored_reads():
            out = functional_call(self.module, {n: outer[i] for n, i in self._bindings},
                                  *args, **kwargs)
        self._count_reads(out)
        return out

    @contextlib.contextmanager
    def _anchored_reads(self):
        """While the module runs, each module that owns parameters reads them through
        ``grad_ready`` nodes anchored to its own call's first input."""
        slots = self._slots
        for m, own in self._owners:
            inner = m.forward

            def forward(*args, _m=m, _own=own, _inner=inner, **kwargs):
                anchor = next((a for a in list(args) + list(kwargs.values())
                               if isinstance(a, Tensor) and a.requires_grad), None)
                store = _m._parameters
                saved = [(name, store[name]) for name, _ in _own]
                for name, i in _own:
                    inputs = (self._params[i],) if anchor is None else (self._params[i], anchor)
                    store[name] = apply(_READY, inputs, {"slot": slots[i], "step": self._step})
                try:
                    return _inner(*args, **kwargs)
                finally:
                    for name, value in saved:
                        store[name] = value

            object.__setattr__(m, "forward", forward)
        try:
            yield
        finally:
            for m, _ in self._owners:
                m.__dict__.pop("forward", None)

    def _count_reads(self, out):
        """Count, per parameter, the ``grad_ready`` nodes the outputs depend on; a
        parameter with none is final now, with a zero gradient."""
        counts = self._expected
        stack = [t._node for t in flatten(out)[0] if isinstance(t, Tensor) and t._node is not None]
        seen = set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.prim is _READY:
                slot = node.params["slot"]
                if slot.owner is self and node.params["step"] == self._step:
                    counts[slot.index] += 1
            for e in node.edges:
                if type(e) is tuple:
                    stack.append(e[0])
        for i, n in enumerate(counts):
            if n == 0:
                counts[i] = 1
                p = self._params[i]
                self._deliver(i, from_array(B.ns(p.data).zeros_like(p.data)), started=False)

    def _arm(self, args, kwargs):
        for bucket in self._buckets:               # a forward whose backward never came
            if bucket.work is not None:
                bucket.work.wait()
        n = len(self._params)
        state = dict(_armed=True, _started=False, _reported=0, _launched=0, _step=self._step + 1,
                     _expected=[0] * n, _arrived=[0] * n, _partial=[None] * n)
        weight = 1.0
        if self.average == "examples":
            first = next((a for a in list(args) + list(kwargs.values())
                          if isinstance(a, Tensor) and a.ndim), None)
            weight = float(first.shape[0]) if first is not None else 1.0
        state["_weight"] = weight
        for k, v in state.items():
            object.__setattr__(self, k, v)
        for bucket in self._buckets:
            bucket.pending = len(bucket.params)
            bucket.work = None

    def _reset(self):
        object.__setattr__(self, "_armed", False)
        object.__setattr__(self, "_started", False)

    # ------------------------------------------------------------------ backward
    def _grad_ready(self, slot, g, step):
        """The VJP of ``grad_ready``: the gradient flowing into one read of a parameter."""
        if step != self._step:
            raise dist.DistributedError(
                f"DistributedDataParallel: a gradient of {self._names[slot.index]!r} belongs "
                f"to an earlier forward of the wrapped module; call the module once per "
                f"backward pass (two forwards before one backward are not supported)")
        if not self._armed:
            raise dist.DistributedError(
                "DistributedDataParallel: a gradient arrived for a forward pass whose "
                "reduction already finished (backward through the same graph twice?)")
        self._deliver(slot.index, g, started=True)
        return None

    def _deliver(self, i, g, started):
        if started:
            object.__setattr__(self, "_started", True)
        arrived = self._arrived[i] + 1
        if arrived > self._expected[i]:
            raise dist.DistributedError(
                f"DistributedDataParallel: parameter {self._names[i]!r} received more "
                f"gradients than the module's outputs can send it: compute the loss from "
                f"the wrapped module's outputs, and call the module once per backward pass")
        self._arrived[i] = arrived
        partial = self._partial[i]
        self._partial[i] = g if partial is None else partial + g
        if arrived < self._expected[i]:
            return
        p = self._params[i]
        total = self._partial[i].data if p.grad is None else p.grad.data + self._partial[i].data
        self._partial[i] = None
        bi, offset = self._where[i]
        bucket = self._buckets[bi]
        host = B.to_numpy(total).reshape(-1)
        target = bucket.buffer[offset:offset + host.size]
        if self._weight == 1.0:
            target[...] = host
        else:
            np.multiply(host, self._weight, out=target)
        bucket.pending -= 1
        object.__setattr__(self, "_reported", self._reported + 1)
        self._launch_ready()
        if self._reported == len(self._params):
            self._finish()

    def _launch_ready(self):
        """Start every full bucket whose predecessors have started (a fixed order on
        every rank), and drive the progress of those in flight."""
        n = self._launched
        while n < len(self._buckets) and self._buckets[n].pending == 0:
            bucket = self._buckets[n]
            bucket.buffer[-1] = self._weight
            # the layout was agreed on at construction: no header per bucket
            bucket.work = dist.iall_reduce(bucket.buffer, "sum", check=False)
            n += 1
        object.__setattr__(self, "_launched", n)
        dist.test_all([b.work for b in self._buckets[:n] if b.work is not None])

    def _finish(self):
        dist.wait_all([b.work for b in self._buckets])
        for bucket in self._buckets:
            bucket.work = None
            total = bucket.buffer[-1]
            if not total > 0:
                raise dist.DistributedError(
                    f"DistributedDataParallel: the ranks' batch weights sum to {total}; "
                    f"every step needs at least one example across the ranks")
            averaged = bucket.buffer[:-1] / total
            for k, i in enumerate(bucket.params):
                p = self._params[i]
                piece = averaged[bucket.offsets[k]:bucket.offsets[k + 1]].reshape(p.data.shape)
                p.grad = from_array(B.backend_of(p.data).from_numpy(
                    np.ascontiguousarray(piece, dtype=p.data.dtype)))
        self._reset()

    # ------------------------------------------------------------------ accumulation
    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate local gradients without communicating; the
        first synchronised backward after it averages the accumulated sum."""
        object.__setattr__(self, "_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_sync", True)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict=strict)

    def extra_repr(self) -> str:
        return (f"world_size={dist.world_size()}, buckets={len(self._buckets)}, "
                f"average={self.average!r}")


def _first_difference(mine, theirs, kind="parameter") -> str:
    if len(mine) != len(theirs):
        return f"{len(mine)} {kind}s here, {len(theirs)} there"
    for (n1, s1, d1), (n2, s2, d2) in zip(mine, theirs):
        if n1 != n2:
            return f"{kind} {n1!r} here, {n2!r} there"
        if s1 != s2:
            return f"{n1!r} has shape {tuple(s1)} here and {tuple(s2)} there"
        if d1 != d2:
            return f"{n1!r} has dtype {d1} here and {d2} there"
    return f"their {kind} lists differ"


def _options(options, keys) -> str:
    return ", ".join(f"{k}={options[k]!r}" for k in keys)


def _bucket_difference(mine, theirs) -> str:
    def words(bucket):
        dtype, size, names = bucket
        return (f"{len(names)} parameter(s) from {names[0]!r} to {names[-1]!r}, "
                f"{size} {dtype} values")

    if len(mine) != len(theirs):
        return f"{len(mine)} bucket(s) here, {len(theirs)} bucket(s) there"
    for k, (a, b) in enumerate(zip(mine, theirs)):
        if a != b:
            return f"bucket {k} holds {words(a)} here and {words(b)} there"
    return "their bucket lists differ"
