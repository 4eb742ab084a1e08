"""The page's own files (HTML, JavaScript modules, one stylesheet), served with a strict CSP.

They live under ``/_api/ui/`` (routed locally) and, unlike the page and
the API, need no token: they hold no recorded data, and an ES module
import cannot carry the page's ``?token=``. Only files listed in ``FILES`` exist: a name is never joined onto a path, so
no request can read anything else. The Content-Security-Policy allows the
page's own files and nothing more: no inline script or style, no other
origin, no plugins, no framing.
"""

from __future__ import annotations

from importlib import resources

from .. import __version__
from ..clientconn import ClientConn

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
MODULES = ("app", "api", "health", "dom", "format", "sessions", "turns", "timeline", "diff", "sysprompt", "usage",
           "raw", "keys", "live", "search")
ASSETS = "/_api/ui/"  # under /_api/ so the router keeps them local (everything else may go upstream)
FILES = {"/": "index.html", ASSETS + "style.css": "style.css", **{f"{ASSETS}{m}.js": f"{m}.js" for m in MODULES}}
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           b'<rect width="16" height="16" rx="3" fill="#123"/><path d="M4 4l8 8M12 4l-8 8" '
           b'stroke="#6cf" stroke-width="2"/></svg>')


def is_static(path: str) -> bool:
    return path in FILES or path == "/favicon.ico"


def is_page_asset(target: str) -> bool:
    """The page's script, style and icon files: public code, served without the token
    (the page and every API path still need it)."""
    path = target.split("?", 1)[0]
    return path != "/" and is_static(path)


def serve_static(client: ClientConn, path: str) -> bool:
    """Answer one of the page's files; True (the connection may be reused)."""
    if path == "/favicon.ico":
        client.send_simple(200, FAVICON, "image/svg+xml", [("Cache-Control", "max-age=86400")])
        return True
    name = FILES[path]
    body = resources.files("ccxray.dashboard").joinpath(name).read_bytes()
    client.send_simple(200, body, TYPES[name[name.rindex("."):]], [
        ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff"), ("X-Ccxray", __version__),
        ("Content-Security-Policy", CSP), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY")])
    return True
