"""The pump pair on real sockets (socketpairs, two real pump threads): what
reaches each peer and the recorder, and how the deadlines end a pair whose
peer stops answering (no timed assertions: each wait has a generous bound)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection

from ccxray import ws_pair
from ccxray.netio import RECV_BYTES, make_blocking
from ccxray.record import WsRun
from ccxray.ws_pair import Pair, Reader
from ccxray.wsbridge import Side, WsBridge
from ccxray.wsscan import HOLD_BYTES

from .test_ws_verbatim import close_payload, frame

BOUND_S = 20.0  # far above any deadline used here: only a hang reaches it


class Rig:
    """A pair between two socketpairs; the test plays both peers."""

    def __init__(self, idle_s: float) -> None:
        self.client_proxy, self.client = socket.socketpair()
        self.up_proxy, self.upstream = socket.socketpair()
        for sock in (self.client_proxy, self.up_proxy):
            make_blocking(sock, 5.0)
        self.submitted: list[list[WsRun]] = []
        self.pair = Pair("ws-1", self.client_proxy, self.up_proxy, WsBridge(), self.submitted.append, idle_s)
        self.threads = [threading.Thread(target=self.pair.pump_guarded, args=(side,)) for side in Side]
        for thread in self.threads:
            thread.start()

    def read(self, sock: socket.socket, role: ConnectionType) -> list:
        """What the proxy sent ``sock`` until it stopped (wsproto events)."""
        conn = Connection(role)
        sock.settimeout(BOUND_S)
        while True:
            data = sock.recv(65536)
            conn.receive_data(data or None)
            events = list(conn.events())
            if not data or any(isinstance(e, CloseConnection) for e in events):
                return events

    def ended(self) -> bool:
        for thread in self.threads:
            thread.join(BOUND_S)
        return not any(thread.is_alive() for thread in self.threads)

    def close(self) -> None:
        self.pair.terminate()
        for thread in self.threads:
            thread.join(BOUND_S)
        for sock in (self.client_proxy, self.client, self.up_proxy, self.upstream):
            sock.close()


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setattr(ws_pair, "CLOSE_TIMEOUT_S", 0.3)
    made: list[Rig] = []

    def make(idle_s: float = 120.0) -> Rig:
        made.append(Rig(idle_s))
        return made[-1]

    yield make  # type: ignore[misc]
    for r in made:
        r.close()


def receive(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(BOUND_S)
    data = b""
    while len(data) < size:
        data += sock.recv(65536) or b"EOF"
    return data


def test_frames_pass_both_ways_and_are_recorded_in_order_with_one_stamp_per_recv(rig):
    r = rig()
    request = frame(0x1, b'{"type":"response.create"}', True) + frame(0x2, b"\x00", True)
    r.client.sendall(request)
    assert receive(r.upstream, len(request)) == request
    replies = b"".join(frame(0x1, f'{{"n":{i}}}'.encode(), False) for i in range(10))
    r.upstream.sendall(replies)
    assert receive(r.client, len(replies)) == replies
    r.client.sendall(frame(0x8, close_payload(1000), True))
    assert r.ended()
    frames = sorted((f for batch in r.submitted for run in batch for f in run.frames()), key=lambda f: f.seq)  # (as the recorder does)
    assert [(f.direction, f.text, f.seq) for f in frames] == (
        [("c2u", '{"type":"response.create"}', 1), ("c2u", None, 2)] + [("u2c", f'{{"n":{i}}}', 3 + i) for i in range(10)])
    assert all(len({run.ts for run in batch}) == 1 for batch in r.submitted)


@pytest.mark.parametrize("closer", list(Side))
def test_a_close_the_other_peer_never_answers_ends_at_the_close_deadline_not_the_idle_one(rig, closer):
    r = rig(idle_s=120.0)
    sender, silent = (r.client, r.upstream) if closer is Side.CLIENT else (r.upstream, r.client)
    silent_role = ConnectionType.SERVER if closer is Side.CLIENT else ConnectionType.CLIENT
    sender.sendall(frame(0x8, close_payload(4000, b"done"), closer is Side.CLIENT))
    events = r.read(silent, silent_role)  # the close passed on; this peer never answers it
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 4000
    assert r.ended()  # at CLOSE_TIMEOUT_S (0.3 s here), long before the 120 s idle timeout
    assert r.pair.bridge.close is not None and r.pair.bridge.close.code == 4000


def test_idle_pair_is_closed_with_1011_both_ways(rig):
    r = rig(idle_s=0.2)
    to_client = r.read(r.client, ConnectionType.CLIENT)
    to_upstream = r.read(r.upstream, ConnectionType.SERVER)
    assert [(e.code, e.reason) for e in to_client + to_upstream] == [(1011, "idle timeout")] * 2
    assert r.ended()  # neither peer answered: the close deadline ends it
    assert r.pair.bridge.close is not None and r.pair.bridge.close.side == "proxy"


def test_traffic_on_one_side_keeps_the_pair_open_past_the_other_sides_receive_timeout(rig):
    r = rig(idle_s=1.5)  # (a stall of the whole process this long would read as idle)
    timeouts: list[int] = []
    on_timeout = r.pair._on_timeout
    r.pair._on_timeout = lambda: (timeouts.append(1), on_timeout())  # type: ignore[method-assign]
    for i in range(10_000_000):  # until upstream's silent pump has woken: the pair is not idle
        if timeouts:
            break
        sent = frame(0x1, b"%d" % i, True)
        r.client.sendall(sent)
        assert receive(r.upstream, len(sent)) == sent
    assert timeouts
    assert not r.pair.terminated.is_set() and r.pair.bridge.close is None
    events = r.read(r.client, ConnectionType.CLIENT)  # then silence from both: idle
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1011
    assert r.ended()


def test_reader_reports_timeout_bytes_and_eof():
    near, far = socket.socketpair()
    try:
        make_blocking(near, 5.0)
        reader = Reader(near)
        assert reader.read(0.05) is None  # nothing came: the readiness wait timed out
        far.sendall(b"abc")
        assert reader.read(0.05) == b"abc"
        far.close()
        assert reader.read(BOUND_S) == b""  # EOF
    finally:
        near.close()
        far.close()


def test_reader_waits_on_readiness_not_in_recv():
    """The design's idle detection is a readiness wait: the socket keeps no
    receive timeout and no Python timeout (a recv never polls twice)."""
    near, far = socket.socketpair()
    try:
        make_blocking(near, 5.0)
        reader = Reader(near)
        assert reader.read(0.02) is None
        assert near.gettimeout() is None
        assert near.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == bytes(16)
    finally:
        near.close()
        far.close()


def test_reader_on_a_shut_down_socket_reports_eof():
    near, far = socket.socketpair()
    try:
        make_blocking(near, 5.0)
        near.shutdown(socket.SHUT_RDWR)
        assert Reader(near).read(BOUND_S) == b""
    finally:
        near.close()
        far.close()


def test_a_frame_too_large_to_hold_streams_through_and_a_close_mid_frame_hangs_that_side_up(rig):
    r = rig()
    big = frame(0x2, b"x" * (HOLD_BYTES + 4096), False)
    head = big[:HOLD_BYTES + 100]
    r.upstream.sendall(head)
    assert receive(r.client, len(head)) == head  # all of it, before the rest of the frame exists
    r.pair.close_both(1001, "shutting down")  # the client is mid-frame: no close frame fits there
    assert r.client.recv(65536) == b""  # hung up instead
    events = r.read(r.upstream, ConnectionType.SERVER)
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1001
    assert r.ended()


def test_reader_takes_a_burst_larger_than_its_buffer_whole_and_in_order_then_waits_again():
    """After a recv that filled the buffer the next read skips the wait; the
    bytes still come whole and in order, and once they are all taken the
    reader waits (and times out) as usual."""
    near, far = socket.socketpair()
    try:
        make_blocking(near, 5.0)
        reader = Reader(near)
        burst = bytes(range(256)) * (3 * RECV_BYTES // 256) + b"tail"
        sender = threading.Thread(target=far.sendall, args=(burst,))
        sender.start()
        got = b""
        while len(got) < len(burst):
            data = reader.read(BOUND_S)
            assert data
            got += data
        sender.join(BOUND_S)
        assert got == burst
        assert reader.read(0.02) is None  # nothing more: the readiness wait timed out
        far.close()
        assert reader.read(BOUND_S) == b""
    finally:
        near.close()
        far.close()
