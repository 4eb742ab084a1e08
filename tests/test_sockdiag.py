"""The kernel's answer to "who owns this TCP socket" (sock_diag), and the /proc
tables it falls back to: parsed from captured bytes, and asked about live sockets."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

import pytest

from ccxray import peeruid
from ccxray.sockdiag import Answer, DiagUnavailable, encode_request, parse_answer, query_uid

# Captured on x86-64 Linux 6.x: the request for 127.0.0.1:45274 -> 127.0.0.1:34221 and the
# kernel's answers: the socket of a client run as nobody (ESTABLISHED, uid 65534, with the
# attributes the kernel appends unasked), a TIME_WAIT leftover, and "no such socket".
REQUEST = bytes.fromhex(
    "4800000014000100010000000000000002060000ffffffffb0da85ad7f0000010000000000000000000000007f000001"
    "00000000000000000000000000000000ffffffffffffffff")
NOBODYS_SOCKET = bytes.fromhex(
    "7c0000001400000001000000b75a000002010000b0da85ad7f0000010000000000000000000000007f000001000000000000"
    "000000000000000000000110000000000000000000000000000000000000feff000047cf2000050008000000000008000f00"
    "000000000c00150001000000000000000600160052000000")
TIME_WAIT_ROW = bytes.fromhex(
    "600000001400000001000000b75a000002060300b0dc85ad7f0000010000000000000000000000007f000001000000000000"
    "000000000000000000000600000000000000fce900000000000000000000000000000000000008000f0000000000")
NOT_FOUND = bytes.fromhex(
    "5c0000000200000001000000265a0000feffffff4800000014000100010000000000000002060000ffffffff0001a0ad7f00"
    "00010000000000000000000000007f00000100000000000000000000000000000000ffffffffffffffff")

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="bytes captured on a little-endian host")
needs_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")


@little_endian
def test_request_for_the_exact_four_tuple():
    assert encode_request(("127.0.0.1", 45274), ("127.0.0.1", 34221)) == REQUEST
    # a dual-stack socket's IPv4 peer is asked for in the IPv4 table
    assert encode_request(("::ffff:127.0.0.1", 45274), ("::ffff:127.0.0.1", 34221)) == REQUEST


def test_request_for_ipv6_carries_all_sixteen_bytes():
    data = encode_request(("::1", 1), ("::1", 2))
    assert len(data) == 72 and data[16] == socket.AF_INET6
    assert data[24:28] == b"\x00\x01\x00\x02" and data[28:44] == data[44:60] == socket.inet_pton(socket.AF_INET6, "::1")
    with pytest.raises(ValueError, match="mixed address families"):
        encode_request(("::1", 1), ("127.0.0.1", 2))


@little_endian
def test_answers_parsed():
    assert parse_answer(NOBODYS_SOCKET) == Answer(uid=65534, state=1)
    assert parse_answer(TIME_WAIT_ROW) == Answer(uid=0, state=6)
    with pytest.raises(DiagUnavailable) as caught:
        parse_answer(NOT_FOUND)
    assert caught.value.errno == errno.ENOENT


@pytest.mark.parametrize("data", [b"", NOBODYS_SOCKET[:40], NOT_FOUND[:16], b"\x10\0\0\0\3\0\0\0" + bytes(8)])
def test_short_or_foreign_answers_are_unavailable_not_a_uid(data):
    with pytest.raises(DiagUnavailable):
        parse_answer(data)


def _live_pair(host: str, family: socket.AddressFamily):
    try:
        listener = socket.create_server((host, 0), family=family)
    except OSError as exc:
        pytest.skip(f"no {host} here: {exc}")
    client = socket.create_connection(listener.getsockname()[:2])
    served, peer = listener.accept()
    listener.close()
    return client, served, peer[:2], served.getsockname()[:2]


@pytest.mark.skipif(not hasattr(socket, "AF_NETLINK"), reason="needs Linux netlink")
@pytest.mark.parametrize("host,family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
def test_kernel_names_the_owner_of_a_live_connection(host, family):
    client, served, peer, ours = _live_pair(host, family)
    with client, served:
        try:
            assert query_uid(peer, ours) == os.geteuid()
        except DiagUnavailable as exc:
            pytest.skip(f"sock_diag unavailable here: {exc}")
        with pytest.raises(DiagUnavailable):
            query_uid((peer[0], 1), ours)


@needs_proc
def test_tables_answer_when_the_kernel_cannot():
    def no_netlink(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
        raise DiagUnavailable(errno.EAFNOSUPPORT, "no netlink here")

    client, served, peer, ours = _live_pair("127.0.0.1", socket.AF_INET)
    with client, served:
        assert peeruid.socket_owner(peer, ours, ask_kernel=no_netlink) == os.geteuid()
        assert peeruid.socket_owner((peer[0], 1), ours, ask_kernel=no_netlink) is None
        assert peeruid.table_owner(peer, ours) == os.geteuid()


def test_kernel_answer_is_taken_as_is():
    assert peeruid.socket_owner(("127.0.0.1", 1), ("127.0.0.1", 2), ask_kernel=lambda l, r: 4242) == 4242
