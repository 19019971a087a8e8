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

* **Start**: the ranks compare their parameters' names, shapes and dtypes (a mismatch is
  an error on every rank naming the first difference, not a hang), then rank 0's values
  are broadcast to all.
* **Buckets**: parameters are grouped, in reverse order of registration (the order in
  which backward reaches them), into flat buffers of about ``bucket_cap_mb``.
* **Hooks**: each forward runs the module with every parameter passed through an
  identity primitive, ``grad_ready``, whose VJP rule receives the parameter's complete
  gradient: all uses of the parameter in this forward go through that one node, and the
  engine runs a node only after every consumer of its output. The rule copies the
  gradient into its bucket; when a bucket is full, a non-blocking all-reduce of it starts
  (``MPI_Iallreduce``) while the backward pass goes on computing earlier layers' gradients.
  Buckets start in a fixed order, the same on every rank, as MPI requires.
* **Finish**: when the last parameter has reported, the rule waits for the buckets in
  flight and writes the averaged gradients to ``.grad``; the hooks return no cotangent,
  so the engine does not add the local gradient on top.
* **Weights**: each rank's gradient is weighted by its number of examples (the leading
  size of the first tensor argument) — one extra number per bucket — so ranks with
  batches of different sizes still give exactly the gradient of the concatenated batch
  for a mean loss. ``average="ranks"`` weights ranks equally (PyTorch's rule).

``no_sync()`` accumulates local gradients without communicating (gradient accumulation);
the next synchronised backward reduces the accumulated sum. Parameters that the loss does
not reach must be declared with ``find_unused_parameters=True`` (the graph is then walked
after each forward, and unreached parameters contribute zeros); otherwise the next forward
raises an error naming them. BatchNorm-style buffers are broadcast from rank 0 before each
training forward (``broadcast_buffers``). Not supported: calling the wrapped module twice
before one backward (an error says so), and differentiating through the gradients
(``create_graph``) — the averaged gradients are plain values.

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
from ..core.tensor import Tensor, _wrap
from .module import Module, functional_call

__all__ = ["DistributedDataParallel"]


class _Slot:
    """Where a parameter's gradient goes: its DDP wrapper and its position."""

    __slots__ = ("owner", "index", "step")

    def __init__(self, owner, index):
        self.owner = owner
        self.index = index
        self.step = -1

    def ready(self, g):
        return self.owner._grad_ready(self, g)


_READY = Primitive(
    "grad_ready", lambda x, *, slot: x, save=(), view=True,
    vjp=lambda g, out, x, *, slot: slot.ready(g),
    jvp=lambda t, out, x, *, slot: t)


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
                 broadcast_buffers: bool = True, find_unused_parameters: bool = False,
                 average: str = "examples"):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a Module, got "
                            f"{type(module).__name__}")
        if average not in ("examples", "ranks"):
            raise ValueError(f"DistributedDataParallel: average must be 'examples' or 'ranks', "
                             f"got {average!r}")
        if not (isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb > 0):
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive "
                             f"number, got {bucket_cap_mb!r}")
        dist.init()
        self.module = module
        object.__setattr__(self, "broadcast_buffers", bool(broadcast_buffers))
        object.__setattr__(self, "find_unused_parameters", bool(find_unused_parameters))
        object.__setattr__(self, "average", average)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        object.__setattr__(self, "_names", [n for n, _ in named])
        object.__setattr__(self, "_params", [p for _, p in named])
        object.__setattr__(self, "_slots", [_Slot(self, i) for i in range(len(named))])
        index = {id(p): i for i, (_, p) in enumerate(named)}
        bindings = []                    # every dotted name of a tracked parameter (ties too)
        for prefix, m in module.named_modules():
            for name, p in m._parameters.items():
                if p is not None and id(p) in index:
                    bindings.append((f"{prefix}.{name}" if prefix else name, index[id(p)]))
        object.__setattr__(self, "_bindings", bindings)
        object.__setattr__(self, "_sync", True)
        object.__setattr__(self, "_step", 0)
        object.__setattr__(self, "_armed", False)
        object.__setattr__(self, "_reported", 0)
        object.__setattr__(self, "_weight", 1.0)
        object.__setattr__(self, "_launched", 0)
        self._check_same_model()
        self._broadcast_state(buffers=True)
        object.__setattr__(self, "_buckets", self._make_buckets(bucket_cap_mb))
        where = {}
        for bi, bucket in enumerate(self._buckets):
            for k, i in enumerate(bucket.params):
                where[i] = (bi, bucket.offsets[k])
        object.__setattr__(self, "_where", where)

    # ------------------------------------------------------------------ start
    def _check_same_model(self):
        mine = [[n, list(p.shape), str(p.dtype)] for n, p in zip(self._names, self._params)]
        everyone = dist.all_gather_object(mine)
        for r, theirs in enumerate(everyone):
            if theirs == mine:
                continue
            detail = _first_difference(mine, theirs)
            raise dist.DistributedError(
                f"DistributedDataParallel: the model on rank {dist.rank()} differs from the "
                f"model on rank {r}: {detail}; every rank must build the same model")

    def _broadcast_state(self, buffers):
        if dist.world_size() == 1:
            return
        tensors = list(self._params) if not buffers else \
            list(self._params) + [b for b in self.module.buffers()]
        for t in tensors:
            B.copy_into(t.data, dist.broadcast(t.data, src=0))
            t.bump_version()

    def _make_buckets(self, cap_mb):
        cap = cap_mb * (1 << 20)
        buckets, current, size, dtype = [], [], 0, None
        for i in reversed(range(len(self._params))):          # backward reaches these first
            p = self._params[i]
            nbytes = p.data.size * p.data.dtype.itemsize
            if current and (size + nbytes > cap or p.data.dtype != dtype):
                buckets.append((current, dtype))
                current, size = [], 0
            current.append(i)
            size += nbytes
            dtype = p.data.dtype
        if current:
            buckets.append((current, dtype))
        out = []
        for indices, dtype in buckets:
            offsets = [0]
            for i in indices:
                offsets.append(offsets[-1] + self._params[i].data.size)
            out.append(_Bucket(indices, offsets, dtype))
        return out

    # ------------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        if dist.world_size() == 1 or not is_grad_enabled() or not self._params:
            return self.module(*args, **kwargs)
        if self._armed and self._reported:
            missing = [self._names[s.index] for s in self._slots if s.step != self._step]
            self._disarm()
            raise dist.DistributedError(
                f"DistributedDataParallel: the previous backward pass did not produce "
                f"gradients for {len(missing)} parameter(s) ({', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}), so their gradients were never "
                f"averaged; if the loss does not use them, pass find_unused_parameters=True")
        if self.training and self.broadcast_buffers and any(True for _ in self.module.buffers()):
            self._broadcast_buffers()
        self._arm(args, kwargs)
        hooked = [apply(_READY, (p,), {"slot": s}) for p, s in zip(self._params, self._slots)]
        out = functional_call(self.module, {n: hooked[i] for n, i in self._bindings},
                              *args, **kwargs)
        if self.find_unused_parameters:
            self._mark_unreached(out)
        return out

    def _broadcast_buffers(self):
        for b in self.module.buffers():
            B.copy_into(b.data, dist.broadcast(b.data, src=0))

    def _arm(self, args, kwargs):
        object.__setattr__(self, "_step", self._step + 1)
        object.__setattr__(self, "_armed", True)
        object.__setattr__(self, "_reported", 0)
        object.__setattr__(self, "_launched", 0)
        weight = 1.0
        if self.average == "examples":
            first = next((a for a in list(args) + list(kwargs.values())
                          if isinstance(a, Tensor) and a.ndim), None)
            weight = float(first.shape[0]) if first is not None else 1.0
        object.__setattr__(self, "_weight", weight)
        for bucket in self._buckets:
            bucket.pending = len(bucket.params)
            bucket.work = None

    def _disarm(self):
        object.__setattr__(self, "_armed", False)
        object.__setattr__(self, "_reported", 0)

    def _mark_unreached(self, out):
        """Report zeros for parameters whose hook the outputs do not depend on."""
        from ..core.pytree import flatten

        reached, seen = set(), set()
        stack = [t._node for t in flatten(out)[0] if isinstance(t, Tensor) and t._node is not None]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.prim is _READY:
                reached.add(node.params["slot"].index)
                continue
            for e in node.edges:
                if type(e) is tuple:
                    stack.append(e[0])
        for slot in self._slots:
            if slot.index not in reached:
                p = self._params[slot.index]
                self._grad_ready(slot, _wrap(B.ns(p.data).zeros_like(p.data)))

    # ------------------------------------------------------------------ backward
    def _grad_ready(self, slot, g):
        """The VJP of ``grad_ready``: parameter ``slot.index`` has its full gradient."""
        if not self._sync:
            return g                              # no_sync: the engine accumulates locally
        if not self._armed:
            raise dist.DistributedError(
                "DistributedDataParallel: a gradient arrived for a forward pass whose "
                "reduction already finished (backward through the same graph twice?)")
        i = slot.index
        if slot.step == self._step:
            raise dist.DistributedError(
                f"DistributedDataParallel: parameter {self._names[i]!r} received its gradient "
                f"twice in one step; call the wrapped model once per backward pass")
        slot.step = self._step
        p = self._params[i]
        local = g.data if p.grad is None else p.grad.data + g.data
        bi, offset = self._where[i]
        bucket = self._buckets[bi]
        host = B.to_numpy(local).reshape(-1)
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
        return None

    def _launch_ready(self):
        """Start every full bucket whose predecessors have started (a fixed order on
        every rank), and drive the progress of those in flight."""
        n = self._launched
        while n < len(self._buckets) and self._buckets[n].pending == 0:
            bucket = self._buckets[n]
            bucket.buffer[-1] = self._weight
            bucket.work = dist.iall_reduce(bucket.buffer, "sum")
            n += 1
        object.__setattr__(self, "_launched", n)
        dist.test_all([b.work for b in self._buckets[:n] if b.work is not None])

    def _finish(self):
        dist.wait_all([b.work for b in self._buckets])
        for bucket in self._buckets:
            total = bucket.buffer[-1]
            if not total > 0:
                raise dist.DistributedError(
                    f"DistributedDataParallel: the ranks' batch weights sum to {total}; "
                    f"every step needs at least one example across the ranks")
            averaged = bucket.buffer[:-1] / total
            for k, i in enumerate(bucket.params):
                p = self._params[i]
                piece = averaged[bucket.offsets[k]:bucket.offsets[k + 1]].reshape(p.data.shape)
                p.grad = _wrap(B.backend_of(p.data).from_numpy(
                    np.ascontiguousarray(piece, dtype=p.data.dtype)))
        self._disarm()

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


def _first_difference(mine, theirs) -> str:
    if len(mine) != len(theirs):
        return f"{len(mine)} parameters here, {len(theirs)} there"
    for (n1, s1, d1), (n2, s2, d2) in zip(mine, theirs):
        if n1 != n2:
            return f"parameter {n1!r} here, {n2!r} there"
        if s1 != s2:
            return f"{n1!r} has shape {tuple(s1)} here and {tuple(s2)} there"
        if d1 != d2:
            return f"{n1!r} has dtype {d1} here and {d2} there"
    return "their parameter lists differ"

