"""The built-in page and its JSON API (served on the proxy's own port)."""

from .api import serve_local

__all__ = ["serve_local"]
