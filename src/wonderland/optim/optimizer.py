"""The optimiser base class: parameter groups, per-parameter state, state_dict.

Optimisers update parameters in place on their backend arrays, outside the graph,
from the gradients in ``.grad``. Hyper-parameters live in ``param_groups`` (a list of
dicts, as in PyTorch) so that schedules can change them between steps.
"""

from __future__ import annotations

import copy

import numpy as np

from ..core.tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
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
                p.data = np.array(p.data)          # own a writeable copy to update in place
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in ps):
            raise ValueError("optimizer: a parameter appears in more than one group")
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        if group.get("lr", 0.0) < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate {group['lr']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = Tensor(np.zeros_like(p.data))

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..core.modes import enable_grad

            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data
                if g.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}: gradient of shape {g.shape} for a "
                                     f"parameter of shape {p.shape}")
                state = self.state.setdefault(p, {})
                self._update(p.data, g.astype(p.data.dtype, copy=False), state, group)
        return loss

    def _update(self, param, grad, state, group):  # pragma: no cover - abstract
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
                    state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                           for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the state has {len(groups)} parameter groups, "
                             f"the optimizer {len(self.param_groups)}")
        params = []
        for mine, theirs in zip(self.param_groups, groups):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError("load_state_dict: a parameter group's size differs "
                                 f"({len(theirs['params'])} in the state, {len(mine['params'])} here)")
            params.extend(zip(theirs["params"], mine["params"]))
        self.state = {}
        for idx, p in params:
            s = state_dict["state"].get(idx, state_dict["state"].get(str(idx)))
            if s is None:
                continue
            restored = {}
            for k, v in s.items():
                if isinstance(v, (np.ndarray, Tensor)):
                    arr = np.array(v.data if isinstance(v, Tensor) else v)
                    if arr.shape != p.shape and arr.ndim > 0:
                        raise ValueError(f"load_state_dict: state {k!r} has shape {arr.shape} "
                                         f"but its parameter has shape {p.shape}")
                    restored[k] = arr.astype(p.data.dtype) if arr.ndim else arr
                else:
                    restored[k] = v
            self.state[p] = restored
        for mine, theirs in zip(self.param_groups, groups):
            for k, v in theirs.items():
                if k != "params":
                    mine[k] = copy.deepcopy(v)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"
