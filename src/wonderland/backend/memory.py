"""Keep freed memory in the process instead of handing it back to the system at once.

A training step allocates the same large arrays every time: activations, columns of a
convolution, gradients. With the C library's default settings a block above a threshold
(adjusted at run time, a few megabytes) is mapped fresh from the system on each
allocation and unmapped on release, and freed memory at the top of the heap is returned
as soon as it passes twice that threshold. Every fresh page then costs a page fault the
first time it is written: on the machines the benchmarks ran on, a convolution step of
~45 ms spent another 15–20 ms in ~4,000 page faults (``benchmarks/README.md``).

On Linux with the GNU C library, importing wonderland therefore raises two allocator
settings with ``mallopt``: blocks up to 32 MiB (the largest threshold the library
accepts) come from the heap, and freed heap memory is kept until 512 MiB of it sit
unused. Steps after the first reuse their own memory without faults. The cost is memory
the process keeps after a peak, at most about 512 MiB more than it would otherwise.
Set ``WONDERLAND_MALLOC_TUNING=0`` before importing wonderland to leave the allocator
as it is; elsewhere (macOS, Windows, other C libraries) nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import sys

MALLOC_TUNING_ENV = "WONDERLAND_MALLOC_TUNING"
MMAP_THRESHOLD = 32 << 20       # glibc refuses more than half its 64 MiB heap size
TRIM_THRESHOLD = 512 << 20

_M_TRIM_THRESHOLD = -1          # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3

_applied: dict = {}


def tune_allocator() -> dict:
    """Apply the settings above once; returns what was set (empty when nothing was)."""
    if _applied or os.environ.get(MALLOC_TUNING_ENV, "1").strip() in ("0", "false", "no"):
        return dict(_applied)
    if not sys.platform.startswith("linux"):
        return {}
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # present only in the GNU C library
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1:
        _applied["mmap_threshold"] = MMAP_THRESHOLD
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
        _applied["trim_threshold"] = TRIM_THRESHOLD
    return dict(_applied)


def allocator_settings() -> dict:
    """The allocator settings wonderland applied in this process (empty if none)."""
    return dict(_applied)
