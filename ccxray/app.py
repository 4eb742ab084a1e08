"""The proxy's shared parts, built once per server and passed to every handler.

Nothing here is global: tests build as many independent apps as they like.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .access import allowed_hosts, own_origins
from .assemble import Assembler
from .config import Settings
from .lineindex import LineIndex
from .inflight import InFlightRegistry
from .netio import UpstreamPool
from .pricing import PriceTable
from .recorder import Recorder
from .restore import RestoreStats
from .sessionindex import SessionIndex
from .store import Store

PRUNE_EVERY_S = 6 * 3600


def load_prices(settings: Settings) -> PriceTable:
    """The bundled price table, with the CCXRAY_PRICES file's rows layered over it."""
    if not settings.prices_path:
        return PriceTable.load()
    with open(settings.prices_path, encoding="utf-8") as fh:
        return PriceTable.load(fh.read())


def build_recorder(settings: Settings) -> Recorder:
    """A recorder writing under ``settings.logs_dir``."""
    return Recorder(Store(settings.logs_dir), Assembler(load_prices(settings)))


@dataclass(eq=False)
class ConnEntry:
    """One client connection thread's sockets, so a stopping server can unblock it."""

    sock: socket.socket
    busy: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    reclaimed: bool = False  # closed to make room; no longer counted against the cap
    on_stop: list[Callable[[], None]] = field(default_factory=list)   # polite end (WebSocket 1001)
    on_abort: list[Callable[[], None]] = field(default_factory=list)  # hard end (close upstream)

    def stop(self) -> None:
        for fn in list(self.on_stop):
            fn()

    def hang_up(self) -> None:
        """Wake the connection's thread with EOF; the thread closes the socket itself.

        Closing it from here would free the descriptor number while that thread
        may be about to wait on it, and the next accept reuses numbers at once:
        the thread would then wait on a stranger's socket.
        """
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def abort(self) -> None:
        for fn in list(self.on_abort):
            fn()
        self.hang_up()


class App:
    """Settings, recorder, upstream pool and the registry of live connections."""

    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder
        self.pool = UpstreamPool(settings.tunnel, settings.connect_timeout_s, settings.read_timeout_s)
        self.stopping = threading.Event()
        self.port = settings.port
        self.set_port(settings.port)
        self._conns: set[ConnEntry] = set()
        self._live = 0  # entries not reclaimed, kept as a count: the accept loop asks at every accept
        self._lock = threading.Condition()
        self.sessions = SessionIndex()
        self.inflight = InFlightRegistry()  # calls being relayed now, for the live page
        self.line_index = LineIndex(settings.logs_dir / "index.ndjson")  # the page's per-session lines
        self.restore_stats: RestoreStats | None = None
        recorder.add_listener(self.sessions.add)
        recorder.follow_turns(self.inflight.start, self.inflight.end)

    def schedule_log_upkeep(self) -> None:
        """Queue pruning (if LOG_RETENTION_DAYS) and the restore on the recorder's thread.

        Queued before any traffic is accepted, so the restore reads exactly
        the lines written before this start; later lines arrive as live ones.
        """
        rec, settings = self.recorder, self.settings
        days = settings.retention_days
        if days is not None:
            def prune_old() -> None:
                rec.prune_older_than(days)
            rec.run_on_writer(prune_old)
            rec.every(PRUNE_EVERY_S, prune_old)

        def restore_state() -> None:
            self.restore_stats = rec.restore_into(self.sessions, settings.restore_days)
        rec.run_on_writer(restore_state)
        rec.run_on_writer(self.line_index.refresh)  # the page's line index, built before anyone opens it

    def set_port(self, port: int) -> None:
        self.port = port
        self.allowed_hosts = allowed_hosts(self.settings.host, port, self.settings.allowed_hosts)
        self.own_origins = own_origins(self.allowed_hosts, self.settings.allowed_origins)

    def register(self, entry: ConnEntry) -> None:
        with self._lock:
            if entry not in self._conns:
                self._conns.add(entry)
                self._live += not entry.reclaimed

    def unregister(self, entry: ConnEntry) -> None:
        with self._lock:
            if entry in self._conns:
                self._conns.discard(entry)
                self._live -= not entry.reclaimed
            self._lock.notify_all()

    def set_busy(self, entry: ConnEntry, busy: bool) -> None:
        with self._lock:
            entry.busy = busy
            if not busy:
                entry.idle_since = time.monotonic()
                self._lock.notify_all()  # only a call ending can make the proxy quiet (wait_quiet)

    def live_count(self) -> int:
        """Connections held and not already being reclaimed."""
        with self._lock:
            return self._live

    def health(self) -> dict[str, object]:
        """What ``/_api/health`` shows: the recorder's counters (is anything being
        lost?) and the client connections held now."""
        return {**self.recorder.health(), "connections": self.live_count()}

    def reclaim_idle(self) -> bool:
        """Close the connection idle longest (between requests); False if none is idle."""
        with self._lock:
            idle = [c for c in self._conns if not c.busy and not c.reclaimed]
            if not idle:
                return False
            oldest = min(idle, key=lambda c: c.idle_since)
            oldest.reclaimed = True
            self._live -= 1
        oldest.hang_up()
        return True

    def abort_idle(self) -> None:
        with self._lock:
            idle = [c for c in self._conns if not c.busy]
        for entry in idle:
            entry.abort()

    def stop_all(self) -> None:
        """Ask long-lived connections (WebSockets) to end politely."""
        with self._lock:
            entries = list(self._conns)
        for entry in entries:
            entry.stop()

    def wait_quiet(self, timeout_s: float) -> bool:
        """Wait until no connection is busy; False if the grace period ran out."""
        with self._lock:
            return self._lock.wait_for(lambda: not any(c.busy for c in self._conns), timeout_s)

    def close(self) -> None:
        """After every connection has ended: close idle upstream sockets, write what is queued."""
        self.pool.close()
        self.recorder.close()

    def abort_all(self) -> None:
        with self._lock:
            entries = list(self._conns)
        for entry in entries:
            entry.abort()
