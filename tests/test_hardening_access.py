"""Who gets in: the token in every spelling, browser requests from other sites,
the Host guard on proxied paths, and another user's loopback client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ccxray.access import allowed_hosts, browser_refusal, host_ok, own_origins, token_ok
from ccxray.peeruid import encode_address, find_uid, socket_owner
from ccxray.querytoken import split_token

from .test_http_proxy import MSG, raw_exchange, request

SECRET = "s3cr3t-tok"


# -- the one token parser -------------------------------------------------------

@pytest.mark.parametrize("target,values,stripped", [
    ("/v1/messages?token=T", ("T",), "/v1/messages"),
    ("/v1/messages?tok%65n=T", ("T",), "/v1/messages"),
    ("/v1/messages?%74%6F%6B%65%6E=T&beta=true", ("T",), "/v1/messages?beta=true"),
    ("/v1/messages?TOKEN=T", ("T",), "/v1/messages"),
    ("/v1/messages?+token+=T", ("T",), "/v1/messages"),
    ("/v1/messages?token=T&token=U", ("T", "U"), "/v1/messages"),
    ("/v1/messages?a=1;token=T", ("T",), "/v1/messages?a=1"),
    ("/v1/messages?token=T;a=1&b=2", ("T",), "/v1/messages?a=1&b=2"),
    ("/v1/messages?a=1&token=T%20x;b=%20", ("T x",), "/v1/messages?a=1;b=%20"),
    ("/v1/messages?tokens=1&xtoken=2", (), "/v1/messages?tokens=1&xtoken=2"),
    ("/v1/messages", (), "/v1/messages"),
    ("/v1/messages?token", ("",), "/v1/messages"),
])
def test_split_token_every_spelling(target, values, stripped):
    found = split_token(target)
    assert found.values == values
    assert found.stripped == stripped


def test_token_ok_needs_every_copy_right():
    assert token_ok(None, [], "/x")
    assert token_ok("T", [], "/x?tok%65n=T")
    assert token_ok("T", [("X-Ccxray-Auth", "T")], "/x")
    assert not token_ok("T", [], "/x")
    assert not token_ok("T", [], "/x?token=T&token=U")  # a second, different copy fails the request
    assert not token_ok("T", [("X-Ccxray-Auth", "T"), ("x-ccxray-auth", "U")], "/x")
    assert not token_ok("T", [("X-Ccxray-Auth", "T")], "/x?token=U")


# -- pure Origin / Host decisions ------------------------------------------------

HOSTS = allowed_hosts("127.0.0.1", 5577, ("gw.example", "other.example:8443"))
ORIGINS = own_origins(HOSTS, ("http://tool.example:3000",))


@pytest.mark.parametrize("headers,refused", [
    ([], False),
    ([("Sec-Fetch-Site", "same-origin")], False),
    ([("Sec-Fetch-Site", "none")], False),
    ([("Sec-Fetch-Site", "cross-site")], True),
    ([("Sec-Fetch-Site", "same-site")], True),
    ([("Origin", "http://evil.example")], True),
    ([("Origin", "null")], True),
    ([("Origin", "http://127.0.0.1:5577")], False),
    ([("Origin", "http://localhost:5577/")], False),
    ([("Origin", "http://localhost:5578")], True),
    ([("Origin", "http://tool.example:3000"), ("Sec-Fetch-Site", "cross-site")], False),
    ([("Origin", "http://127.0.0.1:5577"), ("Sec-Fetch-Site", "cross-site")], False),
    ([("Host", "gw.example:8080"), ("Origin", "http://gw.example:8080")], False),
    ([("Host", "gw.example:8080"), ("Origin", "http://evil.example:8080")], True),
    ([("Host", "evil.example:5577"), ("Origin", "http://evil.example:5577"), ("Sec-Fetch-Site", "same-origin")], False),
])
def test_browser_refusal(headers, refused):
    assert (browser_refusal(headers, ORIGINS) is not None) is refused


@pytest.mark.parametrize("host,ok", [
    ("127.0.0.1:5577", True), ("localhost:5577", True), ("[::1]:5577", True), ("LOCALHOST:5577", True),
    ("localhost", False), ("127.0.0.1:80", False), ("evil.example:5577", False), ("", False),
    ("gw.example", True), ("gw.example:9999", True), ("other.example:8443", True), ("other.example", False),
])
def test_host_guard(host, ok):
    assert host_ok([("Host", host)] if host else [], HOSTS) is ok


# -- /proc/net/tcp parsing ---------------------------------------------------------

TCP_SAMPLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:15C9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:9C40 0100007F:15C9 06 00000000:00000000 03:00000DB4 00000000     0        0 0 3 0
   2: 0100007F:9C41 0100007F:15C9 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0 20 4 30 10 -1
   3: 0100007F:15C9 0100007F:9C41 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1
"""
TCP6_SAMPLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:9C42 0000000000000000FFFF00000100007F:15C9 01 00000000:00000000 00:00000000 00000000   123        0 4 1 0 20 4 30 10 -1
"""


def test_encode_address_byte_orders():
    assert encode_address("127.0.0.1", 5577, "little")[0] == "0100007F:15C9"
    assert encode_address("127.0.0.1", 5577, "big")[0] == "7F000001:15C9"
    assert encode_address("127.0.0.1", 40002, "little")[1] == "0000000000000000FFFF00000100007F:9C42"
    assert encode_address("::1", 1, "little") == ["00000000000000000000000001000000:0001"]


def test_find_uid_picks_the_peer_row():
    ours = encode_address("127.0.0.1", 5577, "little")
    assert find_uid(TCP_SAMPLE, encode_address("127.0.0.1", 40001, "little"), ours) == 65534
    assert find_uid(TCP_SAMPLE, encode_address("127.0.0.1", 40000, "little"), ours) is None  # TIME_WAIT row
    assert find_uid(TCP_SAMPLE, encode_address("127.0.0.1", 40009, "little"), ours) is None
    assert find_uid(TCP6_SAMPLE, encode_address("127.0.0.1", 40002, "little"), ours) == 123
    assert find_uid("header only\n  0: short\n", ours, ours) is None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
@pytest.mark.parametrize("host,family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
def test_socket_owner_of_a_live_connection(host, family):
    try:
        listener = socket.create_server((host, 0), family=family)
    except OSError as exc:
        pytest.skip(f"no {host} here: {exc}")
    with listener, socket.create_connection(listener.getsockname()[:2]):
        served, peer = listener.accept()
        with served:
            ours = served.getsockname()[:2]
            assert socket_owner(peer[:2], ours) == os.geteuid()
            assert socket_owner((peer[0], 1), ours) is None


# -- through a real proxy ----------------------------------------------------------

def _all_bytes_under(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())


SPELLINGS = ["token={t}", "tok%65n={t}", "%74oken={t}", "TOKEN={t}", "token={t}&token={t}",
             "a=1;token={t}", "token={t};b=2"]


def test_token_in_every_spelling_never_reaches_upstream_disk_or_api(fake, make_proxy):
    proxy = make_proxy(AUTH_TOKEN=SECRET)
    for spelling in SPELLINGS:
        query = spelling.format(t=SECRET)
        status, _, _ = request(proxy.port, "POST", f"/v1/messages?keep=1&{query}", MSG)
        assert status == 200, spelling
    assert request(proxy.port, "POST", "/v1/messages?tok%65n=wrong", MSG)[0] == 401
    assert request(proxy.port, "POST", f"/v1/messages?token={SECRET}&token=wrong", MSG)[0] == 401
    lines = proxy.lines(len(SPELLINGS))
    assert len(lines) == len(SPELLINGS)
    seen = json.dumps(fake.seen, default=repr)
    assert SECRET not in seen and "keep=1" in seen
    assert SECRET.encode() not in _all_bytes_under(proxy.server.settings.home)
    auth = {"X-Ccxray-Auth": SECRET}
    api = request(proxy.port, "GET", "/_api/sessions", headers=auth)[2]
    for line in lines:
        api += request(proxy.port, "GET", f"/_api/entries/{line['id']}", headers=auth)[2]
    assert SECRET.encode() not in api and b"keep=1" in api


def _ws_upgrade(port: int, extra: str, host: str | None = None) -> bytes:
    head = (f"GET /v1/responses HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n")
    return raw_exchange(port, head.encode())


BROWSER_HEADERS = [
    {"Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
]


@pytest.mark.parametrize("headers", BROWSER_HEADERS)
def test_cross_site_requests_refused_and_recorded_nowhere(fake, make_proxy, headers):
    proxy = make_proxy()
    assert request(proxy.port, "POST", "/v1/messages", MSG, headers=headers)[0] == 403
    assert request(proxy.port, "GET", "/", headers=headers)[0] == 403
    assert request(proxy.port, "GET", "/_api/sessions", headers=headers)[0] == 403
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    assert _ws_upgrade(proxy.port, extra).startswith(b"HTTP/1.1 403")
    assert proxy.lines() == []
    assert fake.seen == []
    assert not [p for p in proxy.logs.rglob("*") if p.is_file() and p.name != "index.ndjson"]


def test_own_and_allowed_origins_pass(fake, make_proxy):
    proxy = make_proxy(CCXRAY_ALLOWED_ORIGINS="http://tool.example:3000")
    own = {"Origin": f"http://localhost:{proxy.port}", "Sec-Fetch-Site": "same-origin"}
    assert request(proxy.port, "POST", "/v1/messages", MSG, headers=own)[0] == 200
    trusted = {"Origin": "http://tool.example:3000", "Sec-Fetch-Site": "cross-site"}
    assert request(proxy.port, "POST", "/v1/messages", MSG, headers=trusted)[0] == 200
    assert request(proxy.port, "GET", "/", headers={"Sec-Fetch-Site": "none"})[0] == 200
    assert len(proxy.lines(2)) == 2


def test_host_guard_covers_proxied_paths(fake, make_proxy):
    proxy = make_proxy(CCXRAY_ALLOWED_HOSTS="gw.example")
    assert request(proxy.port, "POST", "/v1/messages", MSG, headers={"Host": "rebound.example"})[0] == 403
    assert _ws_upgrade(proxy.port, "", host=f"rebound.example:{proxy.port}").startswith(b"HTTP/1.1 403")
    assert fake.seen == []
    assert request(proxy.port, "POST", "/v1/messages", MSG, headers={"Host": "gw.example"})[0] == 200
    assert request(proxy.port, "POST", "/v1/messages", MSG, headers={"Host": f"localhost:{proxy.port}"})[0] == 200


# -- another user of the machine ------------------------------------------------------

PROBE = """
import http.client, json, sys
port, token = int(sys.argv[1]), sys.argv[2]
out = []
for method, path in (("GET", "/"), ("GET", "/_api/sessions"), ("POST", "/v1/messages")):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"X-Ccxray-Auth": token} if token else {}
    conn.request(method, path, body=b'{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}' if method == "POST" else None,
                 headers=headers)
    out.append(conn.getresponse().status)
    conn.close()
print(json.dumps(out))
"""
NOBODY = 65534


def _probe(port: int, token: str = "", as_nobody: bool = False) -> list[int]:
    kwargs: dict[str, object] = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if as_nobody else {}
    done = subprocess.run(["/usr/bin/python3" if as_nobody else sys.executable, "-I", "-c", PROBE, str(port), token],
                          capture_output=True, text=True, timeout=60, cwd="/", **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


needs_root = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists() or os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
    reason="needs Linux, root (to run a client as nobody) and /usr/bin/python3")


@needs_root
def test_other_users_client_refused_everywhere_same_user_served(fake, make_proxy):
    proxy = make_proxy()
    assert _probe(proxy.port, as_nobody=True) == [403, 403, 403]
    assert _probe(proxy.port) == [200, 200, 200]
    assert len(proxy.lines(1)) == 1  # only the same user's call was recorded
    assert len(fake.seen) == 1


@needs_root
def test_other_user_with_the_token_is_served(fake, make_proxy):
    proxy = make_proxy(AUTH_TOKEN=SECRET)
    assert _probe(proxy.port, token=SECRET, as_nobody=True) == [200, 200, 200]
    assert _probe(proxy.port, as_nobody=True) == [401, 401, 401]


def test_allowed_lists_read_from_the_environment():
    from ccxray.config import load_settings
    from ccxray.errors import ConfigError
    settings = load_settings({"CCXRAY_ALLOWED_HOSTS": " gw.example, ,x:1 ",
                              "CCXRAY_ALLOWED_ORIGINS": "http://tool.example:3000/"}, port=0)
    assert settings.allowed_hosts == ("gw.example", "x:1")
    assert settings.allowed_origins == ("http://tool.example:3000/",)
    assert load_settings({"CCXRAY_ALLOWED_ORIGINS": "chrome-extension://abcdef"}, port=0).allowed_origins
    for bad in ("tool.example", "http://x/path", "http://x?q=1"):
        with pytest.raises(ConfigError, match="CCXRAY_ALLOWED_ORIGINS"):
            load_settings({"CCXRAY_ALLOWED_ORIGINS": bad}, port=0)
