"""The optimiser base class: parameter groups, per-parameter state, state_dict.

Optimisers update parameters in place on their backend arrays, outside the graph,
from the gradients in ``.grad``. Hyper-parameters live in ``param_groups`` (a list of
dicts, as in PyTorch) so that schedules can change them between steps.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import backend as B
from ..core.structural import zeros_like

from ..backend import threads
from ..core.tensor import Tensor
from ..core.modes import enable_grad

# Parameters with at least this many elements are updated in slices on several threads:
# the update is a handful of memory-bound passes, and NumPy releases the GIL in them.
_SPLIT = 1 << 16


def run_elementwise(jobs, kernel) -> None:
    """Run ``kernel(p, g, state, group, hyper)`` for each job, slicing large parameters
    (and their same-shaped state arrays) across the library's thread pool."""
    workers = threads.get_num_threads()
    total = sum(job[0].size for job in jobs)
    if workers == 1 or total < 2 * _SPLIT or (jobs and B.of(jobs[0][0]).device != "cpu"):
        for job in jobs:
            kernel(*job)
        return
    tasks = []
    for p, g, state, group, hyper in jobs:
        n = p.size
        pieces = workers if n >= _SPLIT else 1
        if pieces == 1:
            tasks.append((n, (p, g, state, group, hyper)))
            continue
        flat = {k: v.reshape(-1) for k, v in state.items()
                if _is_array(v) and v.shape == p.shape}
        pf, gf = p.reshape(-1), g.reshape(-1)
        bounds = np.linspace(0, n, pieces + 1).astype(int)
        for a, b in zip(bounds[:-1], bounds[1:]):
            sub = dict(state)
            sub.update({k: v[a:b] for k, v in flat.items()})
            tasks.append((b - a, (pf[a:b], gf[a:b], sub, group, hyper)))
    tasks.sort(key=lambda t: -t[0])
    lanes, load = [[] for _ in range(workers)], [0] * workers
    for size, job in tasks:
        i = load.index(min(load))
        lanes[i].append(job)
        load[i] += size

    def run(lane):
        for job in lane:
            kernel(*job)

    threads.run_parallel([(lambda lane=lane: run(lane)) for lane in lanes if lane])


def _is_array(v) -> bool:
    """An array of any backend (NumPy's, or a device's such as CuPy's, which is not an
    ``np.ndarray``)."""
    return isinstance(v, np.ndarray) or B.is_array(v)


def check_number(owner, name, value, low, high=None, high_included=False):
    """Raise ``TypeError`` unless ``value`` is a real number, ``ValueError`` unless it is
    finite and in ``[low, high)`` (``[low, high]`` with ``high_included``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r} "
                        f"({type(value).__name__})")
    above = high is not None and (value > high if high_included else value >= high)
    if not np.isfinite(value) or value < low or above:
        span = "" if high is None else (f" and at most {high:g}" if high_included
                                         else f" and below {high:g}")
        raise ValueError(f"{owner}: {name} must be a finite number of at least {low:g}{span}, "
                         f"got {value!r}")


class Optimizer:
    """Base class: parameter groups (``param_groups``), per-parameter ``state``,
    ``step()``, ``zero_grad()``, ``state_dict()`` / ``load_state_dict()``."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        self._flats = {}
        if isinstance(params, Tensor):
            raise TypeError("optimizer: params must be an iterable of tensors or of dicts, "
                            "got a single tensor (wrap it in a list)")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("add_param_group: a group is a dict with a 'params' entry")
        group = dict(group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer: parameter {i} is a {type(p).__name__}, not a tensor")
            if p.data.dtype.kind != "f":
                raise TypeError(f"optimizer: parameter {i} has dtype {p.dtype}; only floating "
                                f"tensors can be optimised")
            if not p.is_leaf:
                raise ValueError(f"optimizer: parameter {i} is not a leaf tensor")
            if not p.data.flags.writeable or not p.data.flags.c_contiguous:
                p.data = p.data.copy()              # own a writeable copy to update in place
                p.bump_version()
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in ps):
            raise ValueError("optimizer: a parameter appears in more than one group")
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    # hyper-parameter name -> (lowest value, bound above or None, upper bound included)
    _RANGES = {"lr": (0.0, None, False)}

    def _check_group(self, group):
        """Raise a clear error for a hyper-parameter of the wrong type or out of range."""
        name = type(self).__name__
        for key, (low, high, closed) in self._RANGES.items():
            if key in group:
                check_number(name, key, group[key], low, high, closed)
        for key in ("nesterov", "maximize", "amsgrad", "centered"):
            if key in group and not isinstance(group[key], (bool, np.bool_)):
                raise TypeError(f"{name}: {key} must be True or False, got {group[key]!r}")
        if "betas" in group:
            betas = group["betas"]
            if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
                raise TypeError(f"{name}: betas must be a pair of numbers in [0, 1), got {betas!r}")
            for i, b in enumerate(betas):
                check_number(name, f"betas[{i}]", b, 0.0, 1.0, False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = zeros_like(p)

    def step(self, closure=None):
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        jobs = []
        for gi, group in enumerate(self.param_groups):
            with_grad = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.data.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: gradient of shape {p.grad.shape} "
                                     f"for a parameter of shape {p.shape}")
                with_grad.append(p)
            if not with_grad:
                continue
            if len(with_grad) == len(group["params"]) and self._flat_step(gi, group, jobs):
                continue
            for p in with_grad:
                state = self.state.get(p)
                first = state is None
                if first:
                    state = self.state[p] = self._init_state(p.data, group)
                hyper = self._prepare(state, group, first)
                jobs.append((p.data, p.grad.data.astype(p.data.dtype, copy=False), state, group, hyper))
        run_elementwise(jobs, self._kernel)
        for group in self.param_groups:                 # the values changed in place
            for p in group["params"]:
                if p.grad is not None:
                    p.bump_version()
        return loss

    # ------------------------------------------------------------------ flat groups
    # When every parameter of a group is updated and the parameters are small on
    # average, the group's parameters and state live in one flat buffer each (the
    # parameters' arrays become views into it), so an update is a few passes over one
    # array instead of a few NumPy calls per parameter.
    def _flat_step(self, gi, group, jobs) -> bool:
        params = group["params"]
        if sum(p.data.size for p in params) >= _SPLIT * len(params):
            return False          # large parameters: per-call overhead is already negligible
        flat = self._flats.get(gi)
        if flat is None or not flat.intact(params, self.state):
            flat = _FlatGroup.build(params, self.state, self, group)
            if flat is None:
                return False
            self._flats[gi] = flat
        hypers = []
        for p in params:
            state = self.state.get(p)
            first = "_flat_fresh" in state
            state.pop("_flat_fresh", None)
            hypers.append(self._prepare(state, group, first))
        if any(h != hypers[0] for h in hypers[1:]):        # e.g. different step counts
            for p, h in zip(params, hypers):
                jobs.append((p.data, p.grad.data.astype(p.data.dtype, copy=False),
                             self.state[p], group, h))
            return True
        grad = flat.gather_grads(params)
        jobs.append((flat.param, grad, flat.state, group, hypers[0]))
        return True

    # The update of one parameter is split in two: ``_prepare`` advances per-parameter
    # counters and returns the scalars of this step; ``_kernel`` is purely elementwise,
    # so it may run on slices of large parameters in parallel (see run_elementwise).
    def _init_state(self, param, group) -> dict:
        return {}

    def _prepare(self, state, group, first) -> dict:
        return {}

    def _kernel(self, p, g, state, group, hyper):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [...]}`` with
        parameters numbered in group order, as in PyTorch."""
        index = {}
        groups = []
        for g in self.param_groups:
            entry = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            entry["params"] = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: (v.copy() if _is_array(v) else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def check_state_dict(self, state_dict: dict) -> None:
        """Raise ``ValueError``/``TypeError`` if ``state_dict`` does not fit this optimiser
        (group sizes, parameter indices, state shapes, hyper-parameters); change nothing."""
        self._restored(state_dict)

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a :meth:`state_dict`: it is checked in full before anything changes."""
        state, hypers = self._restored(state_dict)
        self.state = state
        self._flats = {}
        for mine, theirs in zip(self.param_groups, hypers):
            mine.update(theirs)

    def _restored(self, state_dict):
        """``(state, group hyper-parameters)`` from a state dict, every entry checked."""
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list) \
                or not isinstance(state_dict.get("state", {}), dict):
            raise TypeError("load_state_dict: expected {'state': dict, 'param_groups': list}")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the state has {len(groups)} parameter groups, "
                             f"the optimizer {len(self.param_groups)}")
        params, hypers = {}, []
        for mine, theirs in zip(self.param_groups, groups):
            ids = theirs.get("params") if isinstance(theirs, dict) else None
            if not isinstance(ids, list) or len(mine["params"]) != len(ids):
                raise ValueError("load_state_dict: a parameter group's size differs "
                                 f"({len(ids) if isinstance(ids, list) else ids!r} in the state, "
                                 f"{len(mine['params'])} here)")
            params.update(zip((str(i) for i in ids), mine["params"]))
            hyper = {k: copy.deepcopy(v) for k, v in theirs.items() if k != "params"}
            missing = sorted(k for k in self.defaults if k not in hyper)
            if missing:
                raise ValueError(f"load_state_dict: a parameter group lacks {missing}")
            self._check_group(hyper)
            hypers.append(hyper)
        state = {}
        for idx, entries in state_dict.get("state", {}).items():
            p = params.get(str(idx))
            if p is None:
                raise ValueError(f"load_state_dict: state for parameter {idx!r}, but the "
                                 f"optimizer's parameters are numbered 0 to {len(params) - 1}")
            if not isinstance(entries, dict):
                raise TypeError(f"load_state_dict: the state of parameter {idx!r} is not a dict")
            state[p] = {k: self._restored_entry(k, v, p) for k, v in entries.items()}
        return state, hypers

    @staticmethod
    def _restored_entry(name, value, p):
        if not (_is_array(value) or isinstance(value, Tensor)):
            return value
        arr = B.asarray(value.data if isinstance(value, Tensor) else value, like=p.data).copy()
        if arr.ndim == 0:
            return arr
        if arr.shape != p.shape:
            raise ValueError(f"load_state_dict: state {name!r} has shape {arr.shape} "
                             f"but its parameter has shape {p.shape}")
        return arr.astype(p.data.dtype)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


class _FlatGroup:
    """One flat buffer for a group's parameters and one per state array."""

    def __init__(self, param, state, offsets, dicts):
        self.param = param          # flat parameter buffer; each p.data is a view into it
        self.state = state          # flat state arrays (and the group's scalars)
        self.offsets = offsets
        self.dicts = dicts          # the per-parameter state dicts (views into the buffers)
        self.grad = np.empty_like(param)

    @classmethod
    def build(cls, params, states, optimizer, group):
        dtype = params[0].data.dtype
        if any(p.data.dtype != dtype for p in params) or len(params) < 2:
            return None
        have = [p in states for p in params]
        if any(have) and not all(have):
            return None
        sizes = [p.data.size for p in params]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        buf = B.ns(params[0].data).empty(int(offsets[-1]), dtype=dtype)
        for p, a, b in zip(params, offsets[:-1], offsets[1:]):
            buf[a:b] = p.data.ravel()
        template = optimizer._init_state(buf, group)
        flat_state = {}
        for k, v in template.items():
            if _is_array(v) and v.shape == buf.shape:
                if all(have):
                    if any(not _is_array(states[p].get(k)) for p in params):
                        return None
                    for p, a, b in zip(params, offsets[:-1], offsets[1:]):
                        v[a:b] = states[p][k].ravel()
                flat_state[k] = v
        dicts = []
        for p, a, b in zip(params, offsets[:-1], offsets[1:]):
            p.data = buf[a:b].reshape(p.data.shape)    # same values, memory in the buffer
            p.bump_version()
            old = states.get(p, {})
            d = {k: (old[k] if k in old else v) for k, v in template.items()
                 if not (_is_array(v) and v.shape == buf.shape)}
            for k, v in flat_state.items():
                d[k] = v[a:b].reshape(p.data.shape)
            if not all(have):
                d["_flat_fresh"] = True
            states[p] = d
            dicts.append(d)
        return cls(buf, flat_state, offsets, dicts)

    def intact(self, params, states) -> bool:
        return all(p.data.base is self.param and states.get(p) is d
                   for p, d in zip(params, self.dicts))

    def gather_grads(self, params):
        for p, a, b in zip(params, self.offsets[:-1], self.offsets[1:]):
            self.grad[a:b] = p.grad.data.ravel()
        return self.grad
