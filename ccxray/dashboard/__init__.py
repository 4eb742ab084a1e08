"""The built-in page and its JSON API (served on the proxy's own port)."""

from .api import serve_local
from .static import is_page_asset

__all__ = ["is_page_asset", "serve_local"]
