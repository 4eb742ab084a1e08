"""The cyclic garbage collector's settings for a proxy process, applied once its server is built.

A proxy's heap is mostly long-lived (modules, the price table, the server,
the session index) plus a stream of short-lived containers per frame and
per call that reference counting frees. With CPython's defaults a young
collection runs every 700 net new containers, and the older collections
they lead to walk the long-lived objects (and the recorder's backlog) again
and again: under the bench's WebSocket load (50 connections, 1 frame in :
10 out) about 1,000 collections took 4 % of the proxy's CPU. Freezing what
exists once the server is built takes the startup objects out of every
later collection, and a young generation of YOUNG_THRESHOLD containers
makes collections rare: in that load about 30 collections took 0.8 %, with
the same memory per idle WebSocket session and no higher peak RSS in any
scenario of the bench (medians of 3 runs, the defaults interleaved).
Garbage in cycles still goes: it waits for at most YOUNG_THRESHOLD
container allocations.

Only a serving process calls this (``hubserve.start_server``, the start of
both the foreground and the background proxy); a test that builds a server
in its own process keeps the interpreter's defaults.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect once, freeze the survivors, widen the young generation (keeping the older ones' ratios)."""
    gc.collect()  # garbage frozen now would never be freed
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
