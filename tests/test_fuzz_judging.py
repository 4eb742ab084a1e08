"""How the fuzz client judges an upgrade the proxy refused: a 504 (the
contract's answer when upstream does not answer the handshake within the idle
timeout, which a loaded machine's fake upstream can miss) is an outcome, not a
violation; any other refusal still is one."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from tools.fuzz_client import UPSTREAM_SLOW, run_case
from tools.fuzz_common import Case

from .netfixtures import read_head


@pytest.fixture
def refusing_proxy() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback listener answering each upgrade with the next canned head."""
    answers: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                read_head(conn)
                if answers:
                    conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, name="refusing-proxy")
    thread.start()
    try:
        yield listener.getsockname()[1], answers
    finally:
        stop.set()
        socket.create_connection(listener.getsockname(), timeout=10).close()  # wakes the accept
        thread.join(10)
        listener.close()


def test_an_upgrade_answered_504_is_an_outcome_even_for_a_targeted_input(refusing_proxy):
    port, answers = refusing_proxy
    answers.append(b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n")
    outcome = run_case(port, Case("ws oversized-control", b"\x8a\x7e\x00\x80", ws=True,
                                  expect=frozenset({"ws close 1002"})), deadline_s=10)
    assert outcome.kind == UPSTREAM_SLOW and not outcome.is_violation


def test_any_other_refused_upgrade_is_a_violation(refusing_proxy):
    port, answers = refusing_proxy
    answers.append(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
    outcome = run_case(port, Case("ws text", b"\x81\x80abcd", ws=True), deadline_s=10)
    assert outcome.kind == "!handshake" and outcome.is_violation
