"""Whether ccxray's recorder kept up with a measured phase (``/_api/health``).

A CPU figure is the cost of recording only if everything was recorded. When
its backlog passes MAX_QUEUE_ITEMS, ccxray drops WebSocket frame records
(``framesDropped``) and, while behind, skips large bodies
(``sidecarsDropped``); a figure taken then is cheaper than the real work, and
a figure taken with a long queue at the end of its timing leaves work for
later. So every phase against ccxray reads the counters before its timing,
again the moment the timing ends (``queued`` then), and then waits for the
queue to empty (the time that took is how far the recorder trailed). Peers
have no such endpoint and get no recorder figures.

The reads are HTTP requests to the proxy: those after the timing cost it a
little CPU (one poll every POLL_S while draining), which the phase's CPU
figure includes, as it includes the drain itself.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass

HEALTH_PATH = "/_api/health"
POLL_S = 0.05
DRAIN_DEADLINE_S = 60.0
READ_TIMEOUT_S = 30.0  # a proxy under a big backlog answers slowly, but answers


class HealthError(RuntimeError):
    """``/_api/health`` did not answer with the counters."""


@dataclass(frozen=True)
class HealthMark:
    """The recorder's counters at one moment (cumulative since the proxy started)."""

    frames_dropped: int
    sidecars_dropped: int
    failures: int
    queued: int


@dataclass(frozen=True)
class RecorderHealth:
    """What the recorder did over one phase."""

    frames_dropped: int  # during the phase and its drain
    sidecars_dropped: int
    failures: int
    queued_at_end: int  # items still waiting when the phase's timing ended
    drain_s: float | None  # from the end of the timing to an empty queue; None: not within the deadline

    @property
    def dropped(self) -> bool:
        """True when the figures of the phase were taken with records lost."""
        return bool(self.frames_dropped or self.sidecars_dropped)

    def text(self) -> str:
        """One table cell: drops first and in capitals, then the backlog at the end."""
        drain = "not drained in {:g}s".format(DRAIN_DEADLINE_S) if self.drain_s is None \
            else f"{self.drain_s:.2f}s to drain"
        head = f"DROPPED {self.frames_dropped:,} frames, {self.sidecars_dropped:,} bodies; " if self.dropped \
            else "0 dropped; "
        tail = f"; {self.failures:,} failed writes" if self.failures else ""
        return f"{head}{self.queued_at_end:,} queued, {drain}{tail}"


def read_health(port: int) -> HealthMark:
    """The counters of the ccxray listening on 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    try:
        conn.request("GET", HEALTH_PATH)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise HealthError(f"GET {HEALTH_PATH} on port {port}: {exc!r}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise HealthError(f"GET {HEALTH_PATH} on port {port} answered {response.status}: {body[:200]!r}")
    try:
        data = json.loads(body)
        return HealthMark(int(data["framesDropped"]), int(data["sidecarsDropped"]), int(data["failures"]),
                          int(data["queued"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise HealthError(f"GET {HEALTH_PATH} on port {port}: unexpected body {body[:200]!r}") from exc


def wait_drained(port: int, deadline_s: float = DRAIN_DEADLINE_S) -> tuple[HealthMark, float | None]:
    """Poll until nothing is queued; the last counters and the seconds it took (None: deadline)."""
    start = time.monotonic()
    while True:
        mark = read_health(port)
        waited = time.monotonic() - start
        if mark.queued == 0:
            return mark, waited
        if waited >= deadline_s:
            return mark, None
        time.sleep(POLL_S)


def over_phase(port: int, before: HealthMark) -> RecorderHealth:
    """Call the moment a phase's timing ends: the backlog now, then the drops once drained."""
    at_end = read_health(port)
    drained, drain_s = wait_drained(port)
    if at_end.queued == 0:
        drain_s = 0.0
    return RecorderHealth(drained.frames_dropped - before.frames_dropped,
                          drained.sidecars_dropped - before.sidecars_dropped,
                          drained.failures - before.failures, at_end.queued, drain_s)
