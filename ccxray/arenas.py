"""Bound glibc's malloc arenas for a process that runs a thread or two per connection.

glibc gives threads their own arenas (up to 8 per core) so they rarely
contend for a malloc lock. Under the GIL they hardly ever malloc at the same
moment, and each extra arena keeps its own free pages: with hundreds of relay
threads the memory per idle WebSocket session grows for nothing. Elsewhere
(musl, macOS, no ctypes) there is no such knob and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable, Optional

M_ARENA_MAX = -8  # glibc malloc.h
RELAY_ARENAS = 2

Mallopt = Callable[[int, int], int]


def find_mallopt() -> Optional[Mallopt]:
    """glibc's ``mallopt``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def bound_arenas(mallopt: Optional[Mallopt], count: int = RELAY_ARENAS) -> bool:
    """Ask ``mallopt`` (from :func:`find_mallopt`) for at most ``count`` arenas; True if taken.

    Call it before starting threads: arenas already handed out stay.
    """
    if mallopt is None:
        return False
    return mallopt(M_ARENA_MAX, count) == 1
