"""The descriptor budget: raise the soft fd limit, and size the connection cap from it.

Every client connection costs its own socket plus, while it is relayed, one
upstream socket; a reserve covers what is held besides: the idle upstream
pool at its fullest, the frame logs kept open, the listener and log files,
and the short-lived sockets of refused clients.
"""

from __future__ import annotations

import resource

from .netio import MAX_IDLE_TOTAL
from .store import MAX_OPEN_FRAME_LOGS

FDS_PER_CONNECTION = 2
OWN_FDS = 32  # the listener, the index and its directory, stdio, a sidecar being written, hub files, refused clients
RESERVED_FDS = MAX_IDLE_TOTAL + MAX_OPEN_FRAME_LOGS + OWN_FDS
# a hard limit of "unlimited" still has a kernel ceiling (fs.nr_open); ask for no more than this
UNLIMITED_TARGET = 1 << 20


def raise_soft_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard one; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # e.g. above fs.nr_open: keep what we have
    return UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft


def connections_for(fd_limit: int) -> int:
    """How many client connections ``fd_limit`` descriptors can carry, reserve kept aside."""
    return max(1, (fd_limit - RESERVED_FDS) // FDS_PER_CONNECTION)
