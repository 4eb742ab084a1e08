"""Upstream addresses resolved once per TTL, forgotten when every one of them fails."""

from __future__ import annotations

import socket

import pytest

from ccxray.resolve import AddrInfo, AddressCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingResolver:
    """Answers with the given addresses, counting the questions."""

    def __init__(self, *ports: int) -> None:
        self.asked = 0
        self.ports = ports

    def __call__(self, host: str, port: int) -> list[AddrInfo]:
        self.asked += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p)) for p in self.ports]


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]  # nobody listens there once closed


def test_answers_are_reused_until_the_ttl_runs_out():
    clock, resolver = Clock(), CountingResolver(1)
    cache = AddressCache(ttl_s=30, resolve=resolver, clock=clock)
    assert cache.lookup("up.example", 443) == cache.lookup("up.example", 443)
    assert resolver.asked == 1
    cache.lookup("up.example", 80)  # another port is another question
    assert resolver.asked == 2
    clock.now += 30
    cache.lookup("up.example", 443)
    assert resolver.asked == 3


def test_connect_tries_each_address_and_keeps_them_when_one_answers(listener):
    dead, live = _closed_port(), listener.getsockname()[1]
    resolver = CountingResolver(dead, live)
    cache = AddressCache(resolve=resolver)
    for _ in range(2):
        with cache.connect("up.example", 443, 5.0) as sock:
            assert sock.getpeername() == listener.getsockname()
            listener.accept()[0].close()
    assert resolver.asked == 1
    assert [info[4][1] for info in cache.lookup("up.example", 443)] == [live, dead]  # the one that answered first


def test_connect_failing_everywhere_forgets_the_answer():
    resolver = CountingResolver(_closed_port())
    cache = AddressCache(resolve=resolver)
    for expected_questions in (1, 2):
        with pytest.raises(ConnectionRefusedError):
            cache.connect("up.example", 443, 5.0)
        assert resolver.asked == expected_questions


def test_no_address_and_resolver_errors_are_oserrors():
    with pytest.raises(OSError, match="no address found for up.example:443"):
        AddressCache(resolve=CountingResolver()).connect("up.example", 443, 5.0)

    def failing(host: str, port: int) -> list[AddrInfo]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(socket.gaierror):
        AddressCache(resolve=failing).connect("nowhere.invalid", 443, 5.0)


def test_real_resolver_reaches_a_loopback_listener(listener):
    host, port = listener.getsockname()
    with AddressCache().connect(host, port, 5.0) as sock:
        assert sock.getpeername() == (host, port)
        listener.accept()[0].close()
