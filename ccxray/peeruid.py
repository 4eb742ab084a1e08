"""Which user owns the other end of a loopback TCP connection (Linux).

Asked of the kernel first (:mod:`sock_diag <ccxray.sockdiag>`, one netlink
round trip for the exact 4-tuple); where that is unavailable (no netlink, no
inet_diag module, or the kernel does not find the socket), read the tables.

A loopback client's socket is listed in ``/proc/net/tcp`` (or ``tcp6``)
with its local address = our peer's address and its remote address = ours;
the ``uid`` column is the user that created it. Addresses there are hex,
each 32-bit word in the host's byte order, ports big-endian hex. An
IPv4 client on a dual-stack socket appears in ``tcp6`` as ``::ffff:a.b.c.d``.

:func:`find_uid` is pure (tested on sample text); :func:`socket_owner` is the
thin reader around it.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Callable, Iterable, Literal

from .sockdiag import query_uid

PROC_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
TIME_WAIT = "06"  # a dead socket's leftover row: it carries uid 0, not its owner's


def encode_address(host: str, port: int, byteorder: Literal["little", "big"] = sys.byteorder) -> list[str]:
    """The ``ADDR:PORT`` spellings /proc/net/tcp* use for this address."""
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    forms = [ip.packed]
    if ip.version == 4:
        forms.append(ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed)
    elif ip.ipv4_mapped is not None:
        forms.append(ip.ipv4_mapped.packed)
    out = []
    for packed in forms:
        words = (int.from_bytes(packed[i:i + 4], byteorder) for i in range(0, len(packed), 4))
        out.append("".join(f"{w:08X}" for w in words) + f":{port:04X}")
    return out


def find_uid(table: str, local: Iterable[str], remote: Iterable[str]) -> int | None:
    """The uid of the row whose local and remote addresses are among the given spellings.

    Looks the pair up as a substring rather than splitting every row: the
    table holds a row per socket on the machine, TIME_WAIT ones included.
    """
    for pair in (f" {mine} {theirs} " for mine in local for theirs in remote):
        at = table.find(pair)
        while at >= 0:
            start = table.rfind("\n", 0, at) + 1
            end = table.find("\n", at)
            fields = table[start:end if end >= 0 else len(table)].split()
            if len(fields) >= 8 and fields[3] != TIME_WAIT and fields[7].isdigit():
                return int(fields[7])
            at = table.find(pair, at + 1)
    return None


def socket_owner(peer: tuple[str, int], ours: tuple[str, int],
                 ask_kernel: Callable[[tuple[str, int], tuple[str, int]], int | None] = query_uid) -> int | None:
    """The uid owning the socket at ``peer`` connected to ``ours``; None if not found.

    Raises OSError when neither the kernel nor the tables can tell (not Linux, no /proc).
    """
    try:
        return ask_kernel(peer, ours)
    except OSError:
        return table_owner(peer, ours)


def table_owner(peer: tuple[str, int], ours: tuple[str, int]) -> int | None:
    """:func:`socket_owner` from ``/proc/net/tcp*``: reads every socket's row, so its cost grows with them."""
    peer_forms = encode_address(peer[0], peer[1])
    our_forms = encode_address(ours[0], ours[1])
    for path in PROC_TABLES:
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                table = fh.read()
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        uid = find_uid(table, peer_forms, our_forms)
        if uid is not None:
            return uid
    return None
