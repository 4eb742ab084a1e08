"""Who owns one TCP socket, asked of the kernel by its exact 4-tuple (Linux sock_diag).

One ``SOCK_DIAG_BY_FAMILY`` request over ``NETLINK_SOCK_DIAG`` carrying an
``inet_diag_req_v2`` for the socket's local and remote address; the kernel
answers with one ``inet_diag_msg`` (its ``idiag_uid`` is the owner) or an
``NLMSG_ERROR``. Unlike reading ``/proc/net/tcp``, the cost does not grow with
the number of sockets on the machine (TIME_WAIT rows included).

:func:`encode_request` and :func:`parse_answer` are pure (tested on captured
bytes); :func:`query_uid` is the thin socket layer around them.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_TIME_WAIT = 6
ALL_STATES = 0xFFFFFFFF
NO_COOKIE = 0xFFFFFFFF  # INET_DIAG_NOCOOKIE: match whatever socket holds the 4-tuple

NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host byte order)
REQ_HEAD = struct.Struct("=BBBxI")      # family, protocol, extensions, pad, states
SOCKID = struct.Struct(">HH16s16s")     # ports and addresses in network byte order ...
SOCKID_TAIL = struct.Struct("=III")     # ... interface and cookie in host order
MSG_HEAD = struct.Struct("=BB")         # inet_diag_msg: family, state
UID_OFFSET = 4 + SOCKID.size + SOCKID_TAIL.size + 12  # after expires, rqueue, wqueue
ANSWER_BYTES = 8192
IPV4_MAPPED = b"\0" * 10 + b"\xff\xff"  # ::ffff:a.b.c.d


class DiagUnavailable(OSError):
    """The kernel cannot answer this query (no netlink, no inet_diag, or not found)."""


@dataclass(frozen=True)
class Answer:
    uid: int
    state: int


def _packed(host: str) -> tuple[int, bytes]:
    """(family, address bytes) of a numeric address (inet_pton: a sixth of ipaddress's cost,
    paid on every new loopback connection)."""
    host = host.split("%", 1)[0]
    try:
        return socket.AF_INET, socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        raw = socket.inet_pton(socket.AF_INET6, host)
    except OSError as exc:
        raise ValueError(f"not an IP address: {host!r}") from exc
    if raw.startswith(IPV4_MAPPED):
        return socket.AF_INET, raw[12:]  # a dual-stack socket's IPv4 peer lives in the IPv4 table
    return socket.AF_INET6, raw


def encode_request(local: tuple[str, int], remote: tuple[str, int], seq: int = 1) -> bytes:
    """The netlink message asking for the TCP socket bound to ``local`` and connected to ``remote``."""
    (family, src), (dst_family, dst) = _packed(local[0]), _packed(remote[0])
    if family != dst_family:
        raise ValueError(f"mixed address families: {local[0]} and {remote[0]}")
    body = (REQ_HEAD.pack(family, socket.IPPROTO_TCP, 0, ALL_STATES)
            + SOCKID.pack(local[1], remote[1], src.ljust(16, b"\0"), dst.ljust(16, b"\0"))
            + SOCKID_TAIL.pack(0, NO_COOKIE, NO_COOKIE))
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + body


def parse_answer(data: bytes) -> Answer:
    """The owner and TCP state from the kernel's answer; DiagUnavailable for an error answer."""
    if len(data) < NLMSG_HEADER.size:
        raise DiagUnavailable(errno.EPROTO, f"sock_diag answer of {len(data)} bytes is shorter than its header")
    length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(data)
    payload = data[NLMSG_HEADER.size:min(length, len(data))]
    if kind == NLMSG_ERROR:
        code = -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else errno.EPROTO
        raise DiagUnavailable(code, f"sock_diag refused the query: {errno.errorcode.get(code, code)}")
    if kind != SOCK_DIAG_BY_FAMILY or len(payload) < UID_OFFSET + 4:
        raise DiagUnavailable(errno.EPROTO, f"unexpected sock_diag answer (type {kind}, {len(payload)} bytes)")
    _family, state = MSG_HEAD.unpack_from(payload)
    (uid,) = struct.unpack_from("=I", payload, UID_OFFSET)
    return Answer(uid, state)


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def query_uid(local: tuple[str, int], remote: tuple[str, int], timeout_s: float = 1.0) -> int | None:
    """The uid owning the TCP socket at ``local`` connected to ``remote``.

    None for a socket in TIME_WAIT (its row carries uid 0, not its owner's).
    Raises DiagUnavailable (an OSError) when the kernel gives no answer,
    which includes "no such socket": callers fall back to a slower source
    that can tell the two apart.
    """
    try:
        request = encode_request(local, remote)
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
            # a kernel timeout, not settimeout: the kernel answers during sendto, so the
            # recv never waits, and Python's own timeout would poll before each call
            nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout_s))
            nl.sendto(request, (0, 0))
            answer = parse_answer(nl.recv(ANSWER_BYTES))
    except (AttributeError, ValueError) as exc:  # no AF_NETLINK on this platform, or odd addresses
        raise DiagUnavailable(errno.EAFNOSUPPORT, f"sock_diag unavailable: {exc}") from exc
    return None if answer.state == TCP_TIME_WAIT else answer.uid
