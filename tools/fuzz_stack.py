"""The system under fuzz: a fake upstream and a ccxray proxy on loopback, with an error log.

``Stack`` starts ``tools.fake_upstream.FakeUpstream`` and a
``ccxray.server.ProxyServer`` on 127.0.0.1 port 0, the proxy's
``CCXRAY_HOME`` in a given directory and its timeouts shortened
(``STACK_ENV``). ``ErrorLog`` hangs on the ``ccxray`` logger and sorts log
records at ERROR or with a traceback into the proxy's and the fake's.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ccxray.config import load_settings
from ccxray.server import ProxyServer
from tools.fake_upstream import FakeUpstream
from tools.fuzz_common import MAX_BODY_MB


STACK_ENV = {
    "CCXRAY_MAX_BODY_MB": str(MAX_BODY_MB),
    "CCXRAY_READ_TIMEOUT_MS": "1000",  # also bounds a client's body (408)
    "CCXRAY_CONNECT_TIMEOUT_MS": "2000",
    "CCXRAY_HEADER_TIMEOUT_MS": "300",
    "CCXRAY_KEEPALIVE_TIMEOUT_MS": "200",
    "CCXRAY_WS_IDLE_TIMEOUT_MS": "600",
    "CCXRAY_WS_MAX_QUEUE_BYTES": "65536",
    "CCXRAY_SHUTDOWN_GRACE_MS": "2000",
    "CCXRAY_ALLOWED_HOSTS": "x",  # the mutators' raw requests name Host: x
}


# ---------------------------------------------------------------- the stack


class ErrorLog(logging.Handler):
    """Counts ``ccxray`` log records at ERROR or carrying a traceback, by origin."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.proxy: list[str] = []
        self.fake: list[str] = []
        self.first_traceback = ""
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not (record.exc_info or record.levelno >= logging.ERROR):
            return
        text = f"{record.name}: {record.getMessage()}"
        from_fake = record.name.startswith("ccxray.fake_upstream")
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        with self._lock:
            (self.fake if from_fake else self.proxy).append(text)
            if record.exc_info and not from_fake and not self.first_traceback:
                self.first_traceback = logging.Formatter().formatException(record.exc_info)


class Stack:
    """Fake upstream + proxy on loopback, with an :class:`ErrorLog` on the ``ccxray`` logger."""

    def __init__(self, home: Path, **extra_env: str) -> None:
        self.home = home
        self.extra_env = extra_env
        self.errors = ErrorLog()
        self.fake = FakeUpstream()
        self.server: ProxyServer | None = None
        self._logger = logging.getLogger("ccxray")
        self._old_level = self._logger.level

    @property
    def port(self) -> int:
        assert self.server is not None, "stack not started"
        return self.server.port

    def start(self) -> "Stack":
        self._logger.addHandler(self.errors)
        if self._logger.getEffectiveLevel() > logging.ERROR:
            self._logger.setLevel(logging.ERROR)
        self.fake.start()
        env = {
            "ANTHROPIC_BASE_URL": self.fake.base_url,
            "OPENAI_BASE_URL": self.fake.base_url + "/v1",
            "CHATGPT_BASE_URL": self.fake.base_url + "/backend-api/codex",
            "CCXRAY_HOME": str(self.home),
            **STACK_ENV,
            **self.extra_env,
        }
        try:
            self.server = ProxyServer(load_settings(env, port=0)).start()
        except BaseException:
            self.fake.stop()
            self._logger.removeHandler(self.errors)
            raise
        return self

    def stop(self) -> None:
        try:
            if self.server is not None:
                self.server.stop(grace_s=2)
        finally:
            self.fake.stop()
            self._logger.removeHandler(self.errors)
            self._logger.setLevel(self._old_level)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
