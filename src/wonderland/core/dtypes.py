"""Data types: NumPy dtype objects under short names, and the default float type."""

from __future__ import annotations

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int8 = np.dtype("int8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
uint8 = np.dtype("uint8")
bool_ = np.dtype("bool")

_default_float = float32


def get_default_dtype() -> np.dtype:
    """The float dtype used for Python floats and new float tensors (float32 unless set)."""
    return _default_float


def set_default_dtype(dtype) -> None:
    """Set the float dtype used when none is given (``float32`` or ``float64``)."""
    global _default_float
    d = np.dtype(dtype)
    if d.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {d}")
    _default_float = d


def as_dtype(dtype) -> np.dtype | None:
    """Normalise anything NumPy accepts as a dtype (``None`` stays ``None``)."""
    if dtype is None:
        return None
    if dtype is float:
        return _default_float
    try:
        return np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: cannot interpret {dtype!r} as a data type") from exc


def is_floating(dtype) -> bool:
    return dtype.kind == "f"
