"""Saving and loading tensors and training checkpoints in safetensors files.

Files are written atomically (a temporary file in the same folder, then a rename), so
an interrupted save never destroys the previous file. Reading never unpickles: a
damaged or foreign file is reported as a :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from ._version import __version__
from .core.tensor import Tensor


class CheckpointError(ValueError):
    """A checkpoint file is damaged, not a wonderland file, or does not fit the model."""


def _arrays(tensors: dict) -> dict:
    out = {}
    for k, v in tensors.items():
        if not isinstance(k, str):
            raise TypeError(f"save: keys must be strings, got {type(k).__name__}")
        arr = v.data if isinstance(v, Tensor) else np.asarray(v)
        if arr.dtype == object:
            raise TypeError(f"save: {k!r} is not a numeric array")
        out[k] = np.ascontiguousarray(arr)
    return out


def atomic_write(path, write) -> None:
    """Call ``write(tmp_path)`` then move the file to ``path`` in one rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write a dict of tensors (and optional JSON-able metadata) to a safetensors file."""
    from safetensors.numpy import save_file

    arrays = _arrays(tensors)
    meta = {"format": "wonderland", "version": __version__}
    if metadata is not None:
        meta["metadata"] = json.dumps(metadata)
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def load(path, with_metadata: bool = False):
    """Read a file written by :func:`save`: a dict of tensors (and its metadata)."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: Tensor(f.get_tensor(k)) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"load: cannot read {path}: damaged or not a safetensors file "
                              f"({type(exc).__name__}: {exc})") from None
    if not with_metadata:
        return tensors
    try:
        extra = json.loads(meta["metadata"]) if "metadata" in meta else None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"load: the metadata of {path} is damaged ({exc})") from None
    return tensors, extra


def save_checkpoint(path, model=None, optimizer=None, scheduler=None, extra=None) -> None:
    """Save model parameters/buffers, optimiser state, schedule, the global random
    generator's state and any JSON-able ``extra`` (e.g. epoch, step) in one file."""
    from . import random as wl_random

    tensors, meta = {}, {"kind": "checkpoint"}
    if model is not None:
        for k, v in model.state_dict().items():
            tensors[f"model/{k}"] = v
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if isinstance(v, np.ndarray) and v.ndim:
                    tensors[f"optimizer/{idx}/{k}"] = v
                else:
                    scalars.setdefault(str(idx), {})[k] = v.item() if isinstance(v, np.ndarray) else v
        meta["optimizer"] = {"type": type(optimizer).__name__, "param_groups": sd["param_groups"],
                             "scalars": scalars}
    if scheduler is not None:
        meta["scheduler"] = scheduler.state_dict()
    meta["rng"] = wl_random.get_state()
    meta["extra"] = extra or {}
    save(tensors, path, meta)


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, strict=True) -> dict:
    """Restore what :func:`save_checkpoint` wrote into the given objects; returns
    ``extra``. Missing or mismatched entries raise :class:`CheckpointError`."""
    from . import random as wl_random

    tensors, meta = load(path, with_metadata=True)
    if not isinstance(meta, dict) or meta.get("kind") != "checkpoint":
        raise CheckpointError(f"load_checkpoint: {path} is not a wonderland checkpoint")
    if model is not None:
        state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        try:
            model.load_state_dict(state, strict=strict)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"load_checkpoint: {path} does not fit the model: {exc}") from None
    if optimizer is not None:
        info = meta.get("optimizer")
        if info is None:
            raise CheckpointError(f"load_checkpoint: {path} holds no optimizer state")
        if info["type"] != type(optimizer).__name__:
            raise CheckpointError(f"load_checkpoint: {path} holds {info['type']} state, not "
                                  f"{type(optimizer).__name__}")
        state = {}
        for k, v in tensors.items():
            if k.startswith("optimizer/"):
                _, idx, name = k.split("/", 2)
                state.setdefault(int(idx), {})[name] = v.data
        for idx, scal in info["scalars"].items():
            state.setdefault(int(idx), {}).update(scal)
        groups = info["param_groups"]
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except ValueError as exc:
            raise CheckpointError(f"load_checkpoint: {path} does not fit the optimizer: {exc}") from None
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    wl_random.set_state(meta["rng"])
    return meta.get("extra", {})
