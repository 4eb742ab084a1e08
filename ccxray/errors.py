"""Exceptions, named by who caused them (h11 style: the side is in the name).

Each error may carry the HTTP status a proxy should answer with when nothing
has been sent to the client yet (``status_hint``).
"""

from __future__ import annotations


class CcxrayError(Exception):
    """Base of every error ccxray raises on purpose."""

    status_hint = 500


class ConfigError(CcxrayError):
    """A setting (flag or environment variable) is invalid; names the setting."""


class ClientProtocolError(CcxrayError):
    """The agent (our client) sent something we cannot accept."""

    def __init__(self, message: str, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint


class UpstreamConnectError(CcxrayError):
    """The upstream could not be reached (DNS, refused, TLS, tunnel)."""

    status_hint = 502


class UpstreamTimeout(CcxrayError):
    """The upstream did not answer in time."""

    status_hint = 504


class UpstreamProtocolError(CcxrayError):
    """The upstream broke HTTP or WebSocket rules, or went away mid-message."""

    status_hint = 502


class ClientGone(CcxrayError):
    """The agent closed its connection while we were still answering it."""

    status_hint = 499
