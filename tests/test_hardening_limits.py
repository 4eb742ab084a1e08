"""Descriptors and connections: the cap, reclaiming idle connections, EMFILE, many sessions.

The heavy cases run the proxy as its own process (``python -m ccxray``), so
its descriptor limit, its descriptor numbers and its CPU time are its own
and can be read from /proc.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from ccxray.fdlimit import RESERVED_FDS, connections_for, raise_soft_limit

from .conftest import ROOT, proxy_env, wait_until
from .test_http_proxy import MSG, request

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
STOP_DEADLINE_S = 45.0  # generous: the grace period is 10 s; a stuck thread holds it for minutes


def test_connections_for_keeps_a_reserve():
    assert connections_for(1024) == (1024 - RESERVED_FDS) // 2
    assert connections_for(10) == 1
    assert raise_soft_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_soft_limit_raised_to_the_hard_one_at_start():
    script = ("import resource; from ccxray.fdlimit import raise_soft_limit; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)); "
              "print(raise_soft_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["4096", "4096", "4096"], done.stderr


def test_default_cap_follows_the_fd_limit(make_proxy):
    proxy = make_proxy()
    assert proxy.server.max_connections == connections_for(proxy.server.fd_limit)
    assert make_proxy(CCXRAY_MAX_CONNECTIONS="7").server.max_connections == 7


def _is_closed_by_peer(sock: socket.socket) -> bool:
    poller = select.poll()  # select.select cannot take the descriptors above 1023 these tests hold
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionError:
        return True


def test_idle_connection_is_reclaimed_for_a_newcomer(fake, make_proxy):
    proxy = make_proxy(CCXRAY_MAX_CONNECTIONS="3")
    idle = [socket.create_connection(("127.0.0.1", proxy.port)) for _ in range(3)]
    try:
        wait_until(lambda: proxy.server.app.live_count() == 3, 10, "three idle connections held")
        assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 200
        wait_until(lambda: _is_closed_by_peer(idle[0]), 10, "the longest-idle connection to be closed")
        assert not any(_is_closed_by_peer(s) for s in idle[1:])
    finally:
        for sock in idle:
            sock.close()


def _start_stream(port: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/messages", body=MSG, headers={"x-fake-mode": "stepped:3"})
    return conn, conn.getresponse()


def test_when_all_are_busy_a_newcomer_gets_503_and_the_sessions_go_on(fake, make_proxy):
    proxy = make_proxy(CCXRAY_MAX_CONNECTIONS="2")
    conns, streams = zip(*(_start_stream(proxy.port) for _ in range(2)))
    try:
        assert [s.status for s in streams] == [200, 200]
        status, _, body = request(proxy.port, "POST", "/v1/messages", MSG)
        assert status == 503 and b"CCXRAY_MAX_CONNECTIONS" in body
        fake.step(6)
        assert all(s.read().count(b"data:") == 3 for s in streams)
    finally:
        for conn in conns:
            conn.close()
    lines = proxy.lines(2)
    assert sorted(line["status"] for line in lines) == [200, 200] and all(line["error"] is None for line in lines)
    wait_until(lambda: proxy.server.app.live_count() == 0, 10, "the streams' connections to close")
    assert request(proxy.port, "POST", "/v1/messages", MSG)[0] == 200
    assert len(fake.seen) == 3  # the refused request never reached upstream


# -- the proxy as its own process -------------------------------------------------------

# set the limit, then become the proxy (exec keeps it): no preexec_fn in a threaded test process
LIMIT_SCRIPT = ("import os, resource, sys; n = int(sys.argv[1]); "
                "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.executable, [sys.executable] + sys.argv[2:])")


class ProxyProcess:
    """``python -m ccxray`` on port 0, optionally under a descriptor limit."""

    def __init__(self, env: dict[str, str], fd_limit: int | None = None) -> None:
        cmd = [sys.executable, "-m", "ccxray", "--port", "0", "--no-browser"]
        if fd_limit is not None:
            cmd = [sys.executable, "-c", LIMIT_SCRIPT, str(fd_limit), "-m", "ccxray", "--port", "0", "--no-browser"]
        full = dict(os.environ, **env)
        full.pop("AUTH_TOKEN", None)
        # Not traced by coverage: tracing thousands of connection threads made the
        # proxy's SIGTERM exit outlast STOP_DEADLINE_S in full, loaded runs (the
        # limits code is measured by the in-process tests above).
        for name in [n for n in full if n.startswith("COVERAGE_")]:
            del full[name]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        self.proc.stdout.close()  # the proxy must not mind (see test_hardening_process)
        if b"http://127.0.0.1:" not in first:
            self.stop()
            raise AssertionError(f"proxy did not start: {first!r}")
        self.port = int(first.split(b"http://127.0.0.1:")[1].split(b"/")[0])
        self.pid = self.proc.pid

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def fds(self) -> list[int]:
        return [int(name) for name in os.listdir(f"/proc/{self.pid}/fd")]

    def stop(self) -> tuple[bool, bytes]:
        """SIGTERM; returns whether the proxy exited by itself (else it is killed) and its stderr."""
        clean = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                clean = False
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return clean, err


@pytest.fixture
def proxy_process(fake, tmp_path) -> Iterator[type[ProxyProcess]]:
    started: list[ProxyProcess] = []

    class Bound(ProxyProcess):
        def __init__(self, fd_limit: int | None = None, **extra: str) -> None:
            super().__init__(proxy_env(fake, tmp_path / f"home{len(started)}", **extra), fd_limit)
            started.append(self)

    yield Bound
    for proc in started:
        clean, err = proc.stop()
        assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]
        assert clean, f"the proxy ignored SIGTERM for {STOP_DEADLINE_S:g}s (a thread stuck waiting?)"


def _open_idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]


CPU_WINDOW_S = 3.0
CPU_SHARE_BOUND = 0.4  # generous: a spinning accept loop burns a whole core (1.0)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("cap", [None, "1000"], ids=["default-cap", "cap-above-fds-emfile"])
def test_ulimit_256_with_300_idle_connections_stays_calm_and_serves_again(proxy_process, cap):
    extra = {"CCXRAY_MAX_CONNECTIONS": cap} if cap else {}
    proxy = proxy_process(fd_limit=256, **extra)
    idle = _open_idle(proxy.port, 300)
    try:
        before = proxy.cpu_s()
        threading.Event().wait(CPU_WINDOW_S)  # a measuring window, not a synchronisation
        used = proxy.cpu_s() - before
        peak_fds = max(proxy.fds())
        print(f"\nulimit 256, 300 idle, cap {cap or 'default'}: proxy CPU {used:.2f}s in {CPU_WINDOW_S:g}s "
              f"({used / CPU_WINDOW_S:.0%}), highest fd {peak_fds}")
        assert used < CPU_SHARE_BOUND * CPU_WINDOW_S
        assert peak_fds < 256
        if cap is None:  # room is made by reclaiming idle connections: served even now
            assert request(proxy.port, "POST", "/v1/messages", MSG, timeout=30)[0] == 200
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: request(proxy.port, "POST", "/v1/messages", MSG, timeout=30)[0] == 200, 60,
               "the proxy to serve again once the idle connections are gone")


def _upgrade_request(port: int) -> bytes:
    return (f"GET /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def _await_101(sock: socket.socket) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "proxy closed during the WebSocket handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]


PING = b"\x89\x80\x00\x00\x00\x00"  # a masked, empty client ping (RFC 6455 5.5.2)
KEEP_ALIVE_S = 10.0  # the fake upstream drops a WebSocket silent for 30 s


def _open_websockets(port: int, count: int) -> list[socket.socket]:
    """All upgrades sent first, then all answers read: the handshakes overlap.

    Opening hundreds takes a while on a busy machine, so the open ones are
    pinged now and then to keep the fake upstream from dropping them.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=60))
            socks[-1].sendall(_upgrade_request(port))
        pinged = time.monotonic()
        for index, sock in enumerate(socks):
            _await_101(sock)
            if time.monotonic() - pinged > KEEP_ALIVE_S:
                for done in socks[:index + 1]:
                    done.sendall(PING)
                pinged = time.monotonic()
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_2000_idle_and_600_websockets_held_while_a_fresh_client_is_served(fake, proxy_process):
    proxy = proxy_process()
    held: list[socket.socket] = []
    try:
        held += _open_idle(proxy.port, 2000)
        held += _open_websockets(proxy.port, 600)
        peak_fds = max(proxy.fds())
        print(f"\n2000 idle + 600 WebSockets: proxy holds {len(proxy.fds())} fds, highest fd {peak_fds}")
        assert peak_fds > 1023  # the point of the test: descriptors past select()'s ceiling
        status, _, _ = request(proxy.port, "POST", "/v1/messages", MSG, timeout=10)
        assert status == 200
        held += _open_websockets(proxy.port, 1)  # and a fresh WebSocket above fd 1023 on both legs
        assert fake.open_connections >= 601
        assert not any(_is_closed_by_peer(s) for s in held[2000:])
    finally:
        for sock in held:
            sock.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_websockets_at_the_default_cap_all_record_their_frames(fake, proxy_process, tmp_path):
    """Each WebSocket at the cap derived from the fd limit has its frame log open at
    once (and the pool its idle sockets): the reserve holds them, nothing fails to record."""
    limit = 512
    proxy = proxy_process(fd_limit=limit)
    home = tmp_path / "home0"
    for _ in range(3):  # parallel calls: idle upstream sockets in the pool
        assert request(proxy.port, "POST", "/v1/messages", MSG, timeout=30)[0] == 200
    socks = _open_websockets(proxy.port, connections_for(limit))
    try:
        for sock in socks:
            sock.sendall(_masked_text(b"hello"))
        wait_until(lambda: len(list((home / "logs").glob("*_frames.ndjson"))) == len(socks), 60,
                   "a frame log for every WebSocket")
        assert max(proxy.fds()) < limit
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: request(proxy.port, "POST", "/v1/messages", MSG, timeout=30)[0] == 200, 60,
               "the proxy to serve once the WebSockets are gone")
    status, _, body = request(proxy.port, "GET", "/_api/health", b"", timeout=30)
    health = json.loads(body)
    assert status == 200 and health["failures"] == 0 and health["framesDropped"] == 0, health


def _masked_text(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_live_count_follows_register_reclaim_and_unregister(tmp_path):
    """The accept loop's O(1) count of held connections stays equal to the entries not reclaimed."""
    import socket

    from ccxray.app import App, ConnEntry, build_recorder
    from ccxray.config import load_settings

    settings = load_settings({}, port=0, home=str(tmp_path))
    app = App(settings, build_recorder(settings))
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        entries = [ConnEntry(ours) for ours, _ in pairs]
        for entry in entries + entries[:1]:  # registering twice counts once
            app.register(entry)
        assert app.live_count() == 3
        app.set_busy(entries[2], True)
        assert app.reclaim_idle() and app.reclaim_idle() and not app.reclaim_idle()  # the busy one stays
        assert app.live_count() == 1 and sum(e.reclaimed for e in entries) == 2
        for entry in entries + entries[:1]:  # a reclaimed entry leaves without counting twice
            app.unregister(entry)
        assert app.live_count() == 0
    finally:
        app.close()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
