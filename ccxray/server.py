"""The accept loop: ThreadingHTTPServer's shape on a raw listening socket.

One non-daemon thread per accepted connection (so stopping can join them
all). Descriptors are budgeted: the soft fd limit is raised to the hard one at
start, and past CCXRAY_MAX_CONNECTIONS (default sized to that limit) the
connection idle longest is closed to make room, or, when every connection
is busy, the newcomer gets a quick 503 while existing sessions go on. When
the process runs out of descriptors anyway (EMFILE), the accept loop
reclaims an idle connection and backs off briefly instead of spinning.
``stop()`` stops accepting, lets busy connections finish for the grace
period, then shuts every remaining socket so each thread wakes and exits,
joins them, and flushes the recorder.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading

from .app import App, ConnEntry, build_recorder
from .clientconn import ClientConn
from .config import Settings, is_loopback
from .errors import ClientGone, ClientProtocolError, ConfigError
from .fdlimit import connections_for, raise_soft_limit
from .handler import ConnectionHandler
from .netio import close_quietly, tune
from .private import make_private_dirs
from .recorder import Recorder

log = logging.getLogger("ccxray.server")
LISTEN_BACKLOG = 1024
OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
OUT_OF_FDS_BACKOFF_S = 0.05
MAX_REFUSERS = 32  # threads answering 503 at once; past that a newcomer is just closed
REFUSAL_TIMEOUT_S = 2.0


def _check_self_loop(settings: Settings, port: int) -> None:
    for up in (settings.anthropic, settings.openai, settings.chatgpt):
        if up.port == port and (is_loopback(up.host) or up.host == settings.host):
            raise ConfigError(f"{up.env_name} points at this proxy itself ({up.host}:{up.port}); it would loop")


class ProxyServer:
    """Proxy + dashboard on one port. Use as a context manager or start()/stop()."""

    def __init__(self, settings: Settings, recorder: Recorder | None = None) -> None:
        self.settings = settings
        self.app = App(settings, recorder or build_recorder(settings))
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._stopped = False
        self._refusers = threading.BoundedSemaphore(MAX_REFUSERS)
        self.fd_limit = 0
        self.max_connections = settings.max_connections or 0

    @property
    def port(self) -> int:
        return self.app.port

    @property
    def url(self) -> str:
        host = self.settings.host if ":" not in self.settings.host else f"[{self.settings.host}]"
        return f"http://{host}:{self.port}"

    @property
    def recorder(self) -> Recorder:
        return self.app.recorder

    def start(self) -> "ProxyServer":
        """Bind, listen and start accepting. Raises ConfigError or OSError (port in use)."""
        self.fd_limit = raise_soft_limit()
        self.max_connections = self.settings.max_connections or connections_for(self.fd_limit)
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.settings.host, self.settings.port))
            listener.listen(LISTEN_BACKLOG)
            port = listener.getsockname()[1]
            _check_self_loop(self.settings, port)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self.app.set_port(port)
        self._make_home_private()
        self.app.recorder.start()
        self.app.schedule_log_upkeep()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="ccxray-accept")
        self._accept_thread.start()
        return self

    def _make_home_private(self) -> None:
        logs = self.settings.logs_dir
        try:
            notice = make_private_dirs(self.settings.home, (logs, logs / "shared"))
        except OSError:
            return  # an unusable home must not stop traffic; the recorder reports it at its first write
        if notice:
            log.warning("%s", notice)

    def __enter__(self) -> "ProxyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.app.stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except OSError as exc:
                if self.app.stopping.is_set():
                    return
                if exc.errno in OUT_OF_FDS:  # the newcomer waits in the backlog meanwhile
                    self.app.reclaim_idle()
                    self.app.stopping.wait(OUT_OF_FDS_BACKOFF_S)
                continue  # ECONNABORTED and the like: keep serving everyone else
            self._admit(sock, addr)

    def _admit(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        if self.app.live_count() >= self.max_connections and not self.app.reclaim_idle():
            self._refuse_busy(sock, addr)
            return
        tune(sock)
        self._spawn(sock, addr)

    def _refuse_busy(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        """Every held connection is busy: a short-lived thread answers this one 503."""
        if not self._refusers.acquire(blocking=False):
            close_quietly(sock)
            return
        thread = threading.Thread(target=self._answer_busy, args=(sock, addr), name=f"ccxray-503-{addr[1]}")
        with self._threads_lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:
            with self._threads_lock:
                self._threads.discard(thread)
            self._refusers.release()
            close_quietly(sock)

    def _answer_busy(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        try:
            client = ClientConn(sock, addr, REFUSAL_TIMEOUT_S)
            if client.read_request(REFUSAL_TIMEOUT_S, REFUSAL_TIMEOUT_S) is not None:
                client.send_error(503, f"ccxray holds {self.max_connections} connections, all busy "
                                       "(CCXRAY_MAX_CONNECTIONS); try again shortly", close=True)
        except (ClientGone, ClientProtocolError, OSError):
            pass  # a refused client that misbehaves is simply dropped
        finally:
            close_quietly(sock)
            self._refusers.release()
            with self._threads_lock:
                self._threads.discard(threading.current_thread())

    def _spawn(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        entry = ConnEntry(sock)
        self.app.register(entry)
        thread = threading.Thread(target=self._serve, args=(sock, addr, entry), name=f"ccxray-conn-{addr[1]}")
        with self._threads_lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # cannot start a new thread: refuse this one, keep the rest alive
            with self._threads_lock:
                self._threads.discard(thread)
            self.app.unregister(entry)
            close_quietly(sock)

    def _serve(self, sock: socket.socket, addr: tuple[str, int], entry: ConnEntry) -> None:
        try:
            ConnectionHandler(self.app, ClientConn(sock, addr, self.settings.read_timeout_s), entry).run()
        finally:
            close_quietly(sock)
            self.app.unregister(entry)
            with self._threads_lock:
                self._threads.discard(threading.current_thread())

    def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, finish in-flight calls (bounded), close everything, flush the log."""
        if self._stopped:
            return
        self._stopped = True
        self.app.stopping.set()
        if self._listener is not None:
            close_quietly(self._listener)
        if self._accept_thread is not None:
            self._accept_thread.join()
        self.app.abort_idle()
        self.app.stop_all()
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        if not self.app.wait_quiet(grace):
            log.warning("ccxray: in-flight calls still running after %.1fs; closing them", grace)
        self.app.abort_all()
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        self.app.close()
