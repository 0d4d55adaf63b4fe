"""The CPU memory allocator: glibc's malloc keeps freed tensor memory for the next frame (``keep_freed_memory``),
and the tiler counts what it keeps as room a model call can use (``held_free_bytes``).

By default glibc serves every allocation above its mmap threshold (at most 32 MiB) with fresh pages and unmaps
them on free, so on the CPU each full-size tensor of each frame faults its pages in again: kernel time that grows
with the frame size (``python tools/profile_model.py`` prints page faults and kernel time per call;
``FRAMEFILL_MALLOC_TUNING=0`` in the environment turns the tuning off, to compare).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from collections.abc import Callable

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (glibc's malloc.h)
_KEEP_BYTES = 1 << 30
_kept: bool | None = None


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.cache  # held_free_bytes runs before every model call (the tiler's headroom)
def _libc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed tensor memory for reuse instead of handing it back to the kernel.

    Raising the mmap and trim thresholds to 1 GiB keeps large blocks in the heap for the next frame, at a higher
    resident size (which ``held_free_bytes`` reports, so the tiler still sees it as room). Applied once per
    process, with glibc only, unless ``FRAMEFILL_MALLOC_TUNING=0``; returns whether it is in effect.
    """
    global _kept
    if _kept is None:
        _kept = False
        libc = _libc() if os.environ.get("FRAMEFILL_MALLOC_TUNING", "1") != "0" else None
        if libc is not None:
            try:
                _kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                             _KEEP_BYTES))
            except AttributeError:
                pass
    return _kept


def held_free_bytes() -> int:
    """Bytes malloc holds free in this process's heap (glibc's ``mallinfo2().fordblks``): memory the next
    allocations reuse without asking the system, which ``MemAvailable`` does not count. 0 without glibc."""
    mallinfo2 = _mallinfo2() if _kept else None
    return int(mallinfo2().fordblks) if mallinfo2 is not None else 0


@functools.cache
def _mallinfo2() -> Callable[[], _Mallinfo2] | None:
    libc = _libc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None  # (None before glibc 2.33)
    if mallinfo2 is not None:
        mallinfo2.restype = _Mallinfo2
    return mallinfo2
