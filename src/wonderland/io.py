"""Saving and loading tensors and training checkpoints in safetensors files.

Files are written atomically: a temporary file in the same folder is written, flushed to
disk (``fsync``), renamed over the target, and the folder itself is flushed, so an
interrupted save or a power loss never destroys the previous file. Every tensor's bytes
carry a CRC-32 checksum in the file's metadata, verified on load, so a damaged file is
detected rather than loaded. Reading never unpickles: a damaged or foreign file is
reported as a :class:`CheckpointError`.

Loading a checkpoint is all or nothing: everything in the file is checked against the
model, optimiser and schedules first, and only then assigned.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import secrets
import zlib

import numpy as np

from . import backend as B
from ._version import __version__
from .core.tensor import Tensor


class CheckpointError(ValueError):
    """A checkpoint file is damaged, not a wonderland file, or does not fit the model."""


def _arrays(tensors: dict) -> dict:
    out = {}
    for k, v in tensors.items():
        if not isinstance(k, str):
            raise TypeError(f"save: keys must be strings, got {type(k).__name__}")
        arr = v.data if isinstance(v, Tensor) else v
        arr = B.to_numpy(arr) if B.is_array(arr) else np.asarray(arr)   # device arrays: a copy
        if arr.dtype == object:
            raise TypeError(f"save: {k!r} is not a numeric array")
        out[k] = np.ascontiguousarray(arr).reshape(arr.shape)   # 0-d stays 0-d
    return out


def checksum(array) -> str:
    """CRC-32 of an array's bytes in C order, as 8 hex digits."""
    data = np.ascontiguousarray(array)
    return f"{zlib.crc32(data.reshape(-1).view(np.uint8)) & 0xFFFFFFFF:08x}"


def _fsync_folder(folder) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened on some systems
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _fsync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_folder(folder) -> None:
    """Raise ``NotADirectoryError`` when a file stands where a parent folder must be."""
    ancestor = folder
    while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise NotADirectoryError(errno.ENOTDIR, f"{ancestor} is a file, not a folder")


TEMP_PREFIX = ".tmp-"


def temporary_files(path) -> list:
    """The temporary files that writes of ``path`` (by :func:`atomic_write`) left beside
    it: ``.tmp-<random>-<name>``, or ``.tmp-<random><name>`` from earlier versions."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    return sorted(glob.glob(os.path.join(glob.escape(folder),
                                         glob.escape(TEMP_PREFIX) + "*" + glob.escape(name))))


def remove_temporary_files(path) -> list:
    """Delete what :func:`temporary_files` finds (a write that a hard kill stopped before
    it could clean up); returns the paths removed."""
    removed = []
    for tmp in temporary_files(path):
        try:
            os.remove(tmp)
            removed.append(tmp)
        except OSError:
            pass
    return removed


def atomic_write(path, write) -> None:
    """Call ``write(tmp_path)``, flush the file to disk, rename it to ``path`` and flush
    the folder. An error names ``path`` (never the temporary file) and leaves any
    previous file at ``path`` as it was; an error or an interruption (Ctrl-C) also removes
    the temporary file. Its name is chosen before it is created, so that no moment exists
    when a temporary file is on disk but unknown to the clean-up."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        _check_folder(folder)
        os.makedirs(folder, exist_ok=True)
        while True:
            tmp = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(6)}-"
                                       f"{os.path.basename(path)}")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(folder)
    except OSError as exc:
        message = f"save: cannot write {path}: {exc.strerror or exc}"
        raise (type(exc)(exc.errno, message) if exc.errno else OSError(message)) from None
    except Exception as exc:
        raise OSError(f"save: cannot write {path}: {type(exc).__name__}: {exc}") from None
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass


def save(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write a dict of tensors (and optional JSON-able metadata) to a safetensors file,
    with a checksum of every tensor."""
    from safetensors.numpy import save_file

    arrays = _arrays(tensors)
    meta = {"format": "wonderland", "version": __version__,
            "checksums": json.dumps({k: checksum(v) for k, v in arrays.items()})}
    if metadata is not None:
        meta["metadata"] = json.dumps(metadata)
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def _verify_checksums(path, meta, arrays) -> None:
    if "checksums" not in meta:
        return                                # a file written elsewhere: nothing to check
    try:
        sums = json.loads(meta["checksums"])
    except json.JSONDecodeError:
        sums = None
    if not isinstance(sums, dict):
        raise CheckpointError(f"load: the checksums in {path} are damaged")
    if set(sums) != set(arrays):
        raise CheckpointError(f"load: {path} is damaged: its tensors "
                              f"{sorted(set(arrays) ^ set(sums))} do not match its checksums")
    bad = sorted(k for k, a in arrays.items() if checksum(a) != sums[k])
    if bad:
        raise CheckpointError(f"load: {path} is damaged: the data of {bad} does not match "
                              f"its checksum")


def load(path, with_metadata: bool = False):
    """Read a file written by :func:`save`: a dict of tensors (and its metadata).
    Checksums, when the file has them, are verified."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: {path}")
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"load: cannot read {path}: damaged or not a safetensors file "
                              f"({type(exc).__name__}: {exc})") from None
    _verify_checksums(path, meta, arrays)
    tensors = {k: Tensor(a) for k, a in arrays.items()}
    if not with_metadata:
        return tensors
    try:
        extra = json.loads(meta["metadata"]) if "metadata" in meta else None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"load: the metadata of {path} is damaged ({exc})") from None
    return tensors, extra


# ----------------------------------------------------------------------------- checkpoints
def _schedulers(scheduler) -> list:
    if scheduler is None:
        return []
    return list(scheduler) if isinstance(scheduler, (list, tuple)) else [scheduler]


def save_checkpoint(path, model=None, optimizer=None, scheduler=None, extra=None) -> None:
    """Save model parameters/buffers, optimiser state, schedule (one scheduler or a
    list), the global random generator's state and any JSON-able ``extra`` (e.g.
    epoch, step) in one file."""
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
                if (isinstance(v, np.ndarray) or B.is_array(v)) and v.ndim:
                    tensors[f"optimizer/{idx}/{k}"] = v
                else:
                    scalars.setdefault(str(idx), {})[k] = \
                        v.item() if isinstance(v, np.ndarray) or B.is_array(v) else v
        meta["optimizer"] = {"type": type(optimizer).__name__, "param_groups": sd["param_groups"],
                             "scalars": scalars}
    if scheduler is not None:
        states = [s.state_dict() for s in _schedulers(scheduler)]
        meta["scheduler"] = states if isinstance(scheduler, (list, tuple)) else states[0]
    meta["rng"] = wl_random.get_state()
    meta["extra"] = extra or {}
    save(tensors, path, meta)


def check_generator_state(state, generator, what) -> None:
    """Raise :class:`CheckpointError` unless ``state`` would restore ``generator``
    (a ``wl.random.Generator``); nothing is changed."""
    probe = type(generator._rng.bit_generator)()
    try:
        probe.state = state
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"load_checkpoint: {what} is not a valid random generator state "
                              f"({type(exc).__name__}: {exc})") from None


def _model_state(path, tensors, model, strict):
    """The model's entries of the file, checked against the model's own state."""
    state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    problems = []
    if strict and missing:
        problems.append(f"missing keys {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for k, v in state.items():
        if k not in own:
            continue
        if v.shape != own[k].shape:
            problems.append(f"{k!r} has shape {v.shape} in the file, {own[k].shape} in the model")
        elif not np.can_cast(v.dtype, own[k].dtype, "same_kind"):
            problems.append(f"{k!r} has dtype {v.dtype} in the file, {own[k].dtype} in the model")
    if problems:
        raise CheckpointError(f"load_checkpoint: {path} does not fit the model: "
                              + "; ".join(problems))
    return state


def _optimizer_state(path, tensors, info, optimizer):
    """The optimiser's ``state_dict`` rebuilt from the file, with every entry checked."""
    name = type(optimizer).__name__
    if not isinstance(info, dict):
        raise CheckpointError(f"load_checkpoint: {path} holds no optimizer state")
    kind = info.get("type")
    if not isinstance(kind, str):
        raise CheckpointError(f"load_checkpoint: {path} does not name the optimizer type of its "
                              f"state")
    if kind != name:
        raise CheckpointError(f"load_checkpoint: {path} holds {kind} state, not {name}")
    groups, scalars = info.get("param_groups"), info.get("scalars", {})
    if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups)
            and isinstance(scalars, dict) and all(isinstance(s, dict) for s in scalars.values())):
        raise CheckpointError(f"load_checkpoint: the optimizer state in {path} is damaged "
                              f"(param_groups must be a list of dicts, scalars a dict of dicts)")
    state = {}
    for k, v in tensors.items():
        if not k.startswith("optimizer/"):
            continue
        parts = k.split("/", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2]:
            raise CheckpointError(f"load_checkpoint: {path} has a malformed optimizer entry "
                                  f"{k!r} (expected optimizer/<parameter index>/<name>)")
        state.setdefault(int(parts[1]), {})[parts[2]] = v.data
    for idx, scal in scalars.items():
        if not str(idx).isdigit():
            raise CheckpointError(f"load_checkpoint: {path} has a malformed optimizer entry "
                                  f"for parameter {idx!r}")
        state.setdefault(int(idx), {}).update(scal)
    groups = [dict(g) for g in groups]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    sd = {"state": state, "param_groups": groups}
    try:
        optimizer.check_state_dict(sd)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"load_checkpoint: {path} does not fit the optimizer: {exc}") from None
    return sd


def _scheduler_states(path, meta, schedulers):
    if not schedulers:
        return []
    stored = meta.get("scheduler")
    if stored is None:
        raise CheckpointError(f"load_checkpoint: {path} holds no learning-rate schedule")
    stored = stored if isinstance(stored, list) else [stored]
    if len(stored) != len(schedulers):
        raise CheckpointError(f"load_checkpoint: {path} holds {len(stored)} schedule(s), "
                              f"{len(schedulers)} given")
    for s, state in zip(schedulers, stored):
        try:
            s.check_state_dict(state)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"load_checkpoint: the schedule state in {path} does not fit "
                                  f"{type(s).__name__}: {exc}") from None
    return stored


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, strict=True,
                    check_extra=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote into the given objects; returns
    ``extra``. Everything is checked before anything is assigned: a missing, damaged or
    mismatched entry raises :class:`CheckpointError` and leaves the model, optimiser,
    schedule and random generator untouched. ``check_extra(extra)``, if given, is part
    of that check (it should raise :class:`CheckpointError`)."""
    from . import random as wl_random

    tensors, meta = load(path, with_metadata=True)
    if not isinstance(meta, dict) or meta.get("kind") != "checkpoint":
        raise CheckpointError(f"load_checkpoint: {path} is not a wonderland checkpoint")
    if "rng" not in meta:
        raise CheckpointError(f"load_checkpoint: {path} holds no random generator state")
    check_generator_state(meta["rng"], wl_random._global, f"the random state in {path}")
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise CheckpointError(f"load_checkpoint: the extra entries of {path} are damaged")
    model_state = _model_state(path, tensors, model, strict) if model is not None else None
    optim_state = (_optimizer_state(path, tensors, meta.get("optimizer"), optimizer)
                   if optimizer is not None else None)
    schedulers = _schedulers(scheduler)
    sched_states = _scheduler_states(path, meta, schedulers)
    if check_extra is not None:
        check_extra(extra)
    # everything fits: assign
    if model is not None:
        model.load_state_dict(model_state, strict=strict)
    for s, state in zip(schedulers, sched_states):
        s.load_state_dict(state)
    if optimizer is not None:          # after the schedules: its saved rates are the truth
        optimizer.load_state_dict(optim_state)
    wl_random.set_state(meta["rng"])
    return extra
