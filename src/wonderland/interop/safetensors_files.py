"""Safetensors files from anywhere: read without pickle, write atomically.

The format (https://huggingface.co/docs/safetensors): 8 bytes, a little-endian unsigned
integer ``n``; ``n`` bytes of JSON mapping each tensor's name to its ``dtype`` (``"F32"``,
``"BF16"``, ...), ``shape`` and ``data_offsets`` (begin and end in the data block), plus an
optional ``"__metadata__"`` of strings; then the data block. :func:`read_safetensors`
parses that header itself and maps the data block read-only, so a file of any writer
(PyTorch's ``safetensors.torch``, ``transformers``, NumPy) is read the same way, and
bfloat16 (which NumPy lacks) arrives as float32. Every offset and size is checked: a
damaged file is a :class:`wonderland.io.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from ..core.tensor import Tensor
from ..io import CheckpointError, atomic_write

__all__ = ["read_safetensors", "write_safetensors", "parse_size"]

# safetensors dtype names -> NumPy dtypes (little endian, as the format stores them)
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
           "BOOL": "?"}
_NAMES = {np.dtype(v).str.lstrip("<|>="): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2 ** 20


def _damaged(path, why):
    return CheckpointError(f"read_safetensors: {path} is damaged or not a safetensors file: "
                           f"{why}")


def _header(path, f, size):
    head = f.read(8)
    if len(head) < 8:
        raise _damaged(path, f"it holds {size} bytes, fewer than the 8 of the header length")
    n = int.from_bytes(head, "little")
    if n > min(size - 8, _MAX_HEADER):
        raise _damaged(path, f"its header claims {n} bytes, the file holds {size - 8} after "
                             f"the length")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, f"its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _damaged(path, f"its header is a JSON {type(header).__name__}, not an object")
    return n, header


def _entry(path, name, info, data_len):
    """``(dtype name, shape, begin, end)`` of one header entry, checked."""
    if not isinstance(info, dict):
        raise _damaged(path, f"the entry of {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _DTYPES and dtype != "BF16":
        raise CheckpointError(f"read_safetensors: {path}: tensor {name!r} has dtype {dtype!r}, "
                              f"which cannot be read (known: {sorted(_DTYPES) + ['BF16']})")
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise _damaged(path, f"the shape of {name!r} is {shape!r}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_len):
        raise _damaged(path, f"the data offsets of {name!r} are {offsets!r}, outside the "
                             f"{data_len} data bytes")
    itemsize = 2 if dtype == "BF16" else np.dtype(_DTYPES[dtype]).itemsize
    need = int(np.prod(shape, dtype=np.int64)) * itemsize
    if offsets[1] - offsets[0] != need:
        raise _damaged(path, f"{name!r} of shape {tuple(shape)} and dtype {dtype} needs {need} "
                             f"bytes, its offsets span {offsets[1] - offsets[0]}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def read_safetensors(path, with_metadata: bool = False):
    """The tensors of the safetensors file ``path`` as a dict of read-only NumPy arrays
    (mapped from the file, in the file's order), and with ``with_metadata`` its
    ``"__metadata__"`` dict too. bfloat16 tensors are widened to float32 (exactly)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_safetensors: no such file: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        n, header = _header(path, f, size)
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise _damaged(path, "its __metadata__ is not an object")
    start = 8 + n
    data_len = size - start
    entries = {name: _entry(path, name, info, data_len) for name, info in header.items()}
    data = (np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(data_len,))
            if data_len else np.zeros(0, np.uint8))
    arrays = {}
    for name, (dtype, shape, begin, end) in entries.items():
        raw = data[begin:end]
        if dtype == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
            arr.flags.writeable = False
        else:
            arr = np.asarray(raw.view(_DTYPES[dtype]).reshape(shape)).view(np.ndarray)
        arrays[name] = arr
    return (arrays, dict(meta)) if with_metadata else arrays


def _as_numpy(name, value):
    if isinstance(value, Tensor):
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype.str.lstrip("<|>=") not in _NAMES:
        raise TypeError(f"write_safetensors: {name!r} has dtype {arr.dtype}; the format holds "
                        f"{sorted(_DTYPES)}")
    return np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``tensors`` (name → array or tensor) to ``path`` atomically (a temporary file
    renamed over it), with ``metadata`` (strings to strings) in the header."""
    from safetensors.numpy import save_file

    for k in tensors:
        if not isinstance(k, str):
            raise TypeError(f"write_safetensors: names must be strings, got {type(k).__name__}")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str)
                                        for k, v in metadata.items()):
        raise TypeError(f"write_safetensors: metadata must map strings to strings, got "
                        f"{metadata!r}")
    arrays = {k: _as_numpy(k, v) for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=metadata))


_UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
          "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_size(size, what="size") -> int:
    """A byte count from an int or a string such as ``"5GB"`` (10⁹ bytes) or ``"200MiB"``
    (2²⁰ bytes each)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        n = int(size)
    elif isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", size)
        if not m or m.group(2).upper() not in _UNITS:
            raise ValueError(f"{what}: expected a byte count such as 5000000, '5MB' or '2GiB', "
                             f"got {size!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    else:
        raise TypeError(f"{what}: expected an int or a string such as '5GB', got "
                        f"{type(size).__name__}")
    if n <= 0:
        raise ValueError(f"{what}: must be positive, got {size!r}")
    return n
