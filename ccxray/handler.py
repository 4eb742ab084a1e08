"""One client connection: read requests, check access, dispatch, repeat (keep-alive).

This is the connection thread's top frame and holds its one ``except
Exception``: whatever goes wrong in here is logged with the connection's
address and ends this connection only.
"""

from __future__ import annotations

import logging
import os
import time

import h11

from . import headers as hdr
from .access import browser_refusal, host_ok, is_stranger, token_ok
from .app import App, ConnEntry
from .clientconn import ClientConn
from .dashboard import is_page_asset, serve_local
from .errors import ClientGone, ClientProtocolError
from .http_relay import Exchange, decode_headers
from .peeruid import socket_owner
from .requestcheck import check_version, has_length_and_chunking, ws_handshake_problem
from .record import HttpCall
from .config import is_loopback
from .routing import LOCAL, Route, is_ws_path, route, split_target
from .ws_relay import WsServices, relay_websocket

log = logging.getLogger("ccxray.handler")


def is_upgrade(headers: list[tuple[str, str]]) -> bool:
    upgrade = (hdr.get(headers, "upgrade") or "").lower()
    return "websocket" in upgrade and "upgrade" in hdr.connection_tokens(headers)


class ConnectionHandler:
    """Serves one accepted socket until it closes."""

    def __init__(self, app: App, client: ClientConn, entry: ConnEntry) -> None:
        self.app = app
        self.client = client
        self.entry = entry
        self._peer_is_stranger: bool | None = None

    def run(self) -> None:
        try:
            while not self.app.stopping.is_set() and self._one_request():
                if not self.client.next_cycle():
                    break
        except (ClientGone, ConnectionError):
            pass
        except Exception:  # the thread's one catch-all: log it, close this connection only
            log.exception("ccxray: connection from %s failed", self.client.addr)

    def _one_request(self) -> bool:
        settings = self.app.settings
        try:
            req = self.client.read_request(settings.keepalive_timeout_s, settings.header_timeout_s)
            if req is None:
                return False
            self.app.set_busy(self.entry, True)
            return self._dispatch(req)
        except ClientProtocolError as exc:
            self._refuse(exc.status_hint, str(exc))
            return False
        finally:
            self.app.set_busy(self.entry, False)

    def _refuse(self, status: int, message: str) -> None:
        if self.client.can_answer():
            try:
                self.client.send_error(status, message, close=True)
            except ClientGone:
                pass

    def _access_problem(self, headers: list[tuple[str, str]], raw_target: str) -> tuple[int, str] | None:
        """Why this request may not pass (status, message), or None. Nothing is recorded for it."""
        settings = self.app.settings
        if not settings.auth_token and self._is_other_users_client():
            return 403, "this proxy belongs to another user of this machine (set AUTH_TOKEN to share it)"
        # the page's own code holds nothing recorded; a module import cannot carry ?token=
        if not token_ok(settings.auth_token, headers, raw_target) and not is_page_asset(raw_target):
            return 401, "missing or wrong ccxray token (X-Ccxray-Auth or ?token=)"
        refusal = browser_refusal(headers, self.app.own_origins)
        if refusal is not None:
            return 403, refusal
        if not host_ok(headers, self.app.allowed_hosts):
            return 403, "this Host header is not the proxy's address (DNS-rebinding guard; see CCXRAY_ALLOWED_HOSTS)"
        return None

    def _is_other_users_client(self) -> bool:
        """Linux: is the loopback peer's socket owned by another uid? Looked up once per connection."""
        if self._peer_is_stranger is None:
            self._peer_is_stranger = self._look_up_peer()
        return self._peer_is_stranger

    def _look_up_peer(self) -> bool:
        peer = self.client.addr
        if peer is None or not is_loopback(peer[0]):
            return False
        try:
            ours = self.client.sock.getsockname()
            owner = socket_owner((peer[0], peer[1]), (ours[0], ours[1]))
        except OSError:
            return False  # no /proc/net/tcp here: loopback is trusted (README, Access)
        return is_stranger(owner, os.geteuid())

    def _dispatch(self, req: h11.Request) -> bool:
        settings = self.app.settings
        check_version(req.http_version)
        headers = decode_headers(req.headers.raw_items())
        raw_target = req.target.decode("latin-1")
        problem = self._access_problem(headers, raw_target)
        if problem is not None:
            self._refuse(*problem)
            return False
        target = hdr.strip_token(raw_target)
        method = req.method.decode("latin-1")
        where = route(method, target, [(n.lower(), v) for n, v in headers], settings)
        if is_upgrade(headers):
            return self._upgrade(method, target, headers, where)
        if where.provider == LOCAL:
            self.client.read_body(settings.max_body_bytes, settings.header_timeout_s)
            keep_alive = serve_local(self.app, self.client, method, target)
        else:
            keep_alive = self._forward(req, method, target, headers, where)
        # RFC 9112 6.1: close after a request framed both ways (only a chunked one can be)
        return keep_alive and not (self.client.chunked and has_length_and_chunking(headers))

    def _upgrade(self, method: str, target: str, headers: list[tuple[str, str]], where: Route) -> bool:
        path = split_target(target)[0]
        if where.provider == LOCAL or not is_ws_path(path) or method != "GET":
            self._refuse(404, f"WebSocket upgrade is only proxied on /v1/responses and /v1/realtime, not {path}")
            return False
        problem = ws_handshake_problem(headers)
        if problem is not None:
            self._refuse(400, problem)
            return False
        settings, recorder = self.app.settings, self.app.recorder
        self.client.read_body(0, settings.header_timeout_s)  # an upgrade carries no body
        services = WsServices(self.app.pool, recorder.submit, recorder.new_id, self.app.inflight,
                              settings.ws_idle_timeout_s, settings.ws_max_queue_bytes)
        relay_websocket(services, self.client, self.entry, target, headers, where)
        return False

    def _forward(self, req: h11.Request, method: str, target: str,
                 headers: list[tuple[str, str]], where: Route) -> bool:
        assert where.upstream is not None
        self._check_length(headers)
        started = time.time()
        settings = self.app.settings
        body = self.client.read_body(settings.max_body_bytes, settings.read_timeout_s, settings.body_timeout_s)
        call = HttpCall(id=self.app.recorder.new_id(), started=started, method=method, url=target,
                        provider=where.provider, upstream_url=where.upstream.url(where.target),
                        req_headers=headers, req_body=body)
        with self.app.inflight.track(call.id, method, target, where.provider, "http", headers, body, started):
            return Exchange(self.client, self.app.pool, self.app.settings, call, where,
                            self.app.recorder.submit).run(req)

    def _check_length(self, headers: list[tuple[str, str]]) -> None:
        declared = hdr.get(headers, "content-length")
        limit = self.app.settings.max_body_bytes
        if declared and declared.strip().isascii() and declared.strip().isdigit() and int(declared) > limit:
            raise ClientProtocolError(f"request body of {declared} bytes exceeds the {limit}-byte cap "
                                      f"(CCXRAY_MAX_BODY_MB)", 413)
