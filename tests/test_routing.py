"""Routing table (DESIGN.md "Upstreams and routing")."""

import pytest

from ccxray.config import load_settings
from ccxray.errors import ConfigError
from ccxray.routing import is_ws_path, route, split_target

S = load_settings({}, port=5577)


@pytest.mark.parametrize("method,target,headers,provider,upstream_target", [
    ("POST", "/v1/messages?beta=true", [], "anthropic", "/v1/messages?beta=true"),
    ("POST", "/v1/messages/count_tokens", [], "anthropic", "/v1/messages/count_tokens"),
    ("POST", "/", [], "anthropic", "/"),
    ("POST", "/v1/responses", [], "openai", "/v1/responses"),
    ("GET", "/v1/responses?x=1", [], "openai", "/v1/responses?x=1"),
    ("GET", "/v1/realtime?model=gpt", [], "openai", "/v1/realtime?model=gpt"),
    ("GET", "/v1/models?client_version=0.169.0", [], "openai", "/v1/models?client_version=0.169.0"),
    ("POST", "/v1/chat/completions", [], "openai", "/v1/chat/completions"),
    ("POST", "/v1/responses", [("chatgpt-account-id", "a")], "chatgpt", "/backend-api/codex/responses"),
    ("GET", "/v1/realtime", [("chatgpt-account-id", "a")], "chatgpt", "/backend-api/codex/realtime"),
    ("GET", "/v1/api/codex/accounts/check", [], "chatgpt", "/backend-api/codex/api/codex/accounts/check"),
    ("GET", "/v1/codex/x", [], "chatgpt", "/backend-api/codex/codex/x"),
    ("GET", "/v1/plugins", [], "chatgpt", "/backend-api/codex/plugins"),
    ("GET", "/v1/connectors/list", [], "chatgpt", "/backend-api/codex/connectors/list"),
    ("GET", "/v1/responsesX", [], "anthropic", "/v1/responsesX"),
])
def test_route_table(method, target, headers, provider, upstream_target):
    r = route(method, target, headers, S)
    assert (r.provider, r.target) == (provider, upstream_target)


@pytest.mark.parametrize("method,target", [
    ("GET", "/"), ("HEAD", "/"), ("GET", "/_api/sessions"), ("GET", "/_api/entries/x"),
    ("GET", "/favicon.ico"),
])
def test_local_paths(method, target):
    assert route(method, target, [], S).provider == "local"


def test_prefix_and_v1_not_doubled():
    s = load_settings({"OPENAI_BASE_URL": "http://gw.local:8080/openai/v1",
                       "ANTHROPIC_BASE_URL": "http://gw.local:8080/anthropic/"}, port=5577)
    assert route("POST", "/v1/responses", [], s).target == "/openai/v1/responses"
    assert route("POST", "/v1/messages", [], s).target == "/anthropic/v1/messages"
    assert route("POST", "/v1/messages", [], s).upstream.host_header == "gw.local:8080"


@pytest.mark.parametrize("path,ok", [
    ("/v1/responses", True), ("/v1/realtime", True), ("/v1/responses/x", False), ("/v1/responses/extra", False),
    ("/v1/messages", False), ("/v1/models", False), ("/v1/responsesX", False),
])
def test_ws_paths(path, ok):
    assert is_ws_path(path) is ok


@pytest.mark.parametrize("var,value", [
    ("ANTHROPIC_BASE_URL", "ftp://x"), ("OPENAI_BASE_URL", "not a url"),
    ("CHATGPT_BASE_URL", "http://"), ("OPENAI_BASE_URL", "http://h:99999"),
    ("ANTHROPIC_BASE_URL", "http://a\x00b"), ("OPENAI_BASE_URL", "http://a b.example/v1"),  # it becomes Host
])
def test_invalid_base_url_names_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        load_settings({var: value})


@pytest.mark.parametrize("value", ["http://127.0.0.1:5577", "http://localhost:5577/v1"])
def test_self_loop_refused(value):
    with pytest.raises(ConfigError, match="loop"):
        load_settings({"ANTHROPIC_BASE_URL": value}, port=5577)


def test_non_loopback_bind_needs_token():
    with pytest.raises(ConfigError, match="AUTH_TOKEN"):
        load_settings({}, host="0.0.0.0")
    assert load_settings({"AUTH_TOKEN": "t"}, host="0.0.0.0").auth_token == "t"


def test_env_numbers_validated():
    with pytest.raises(ConfigError, match="CCXRAY_WS_IDLE_TIMEOUT_MS"):
        load_settings({"CCXRAY_WS_IDLE_TIMEOUT_MS": "soon"})
    s = load_settings({"CCXRAY_WS_IDLE_TIMEOUT_MS": "1500", "CCXRAY_MAX_BODY_MB": "1"})
    assert s.ws_idle_timeout_s == 1.5 and s.max_body_bytes == 1024 * 1024


def test_proxy_tunnel_and_no_proxy():
    s = load_settings({"HTTPS_PROXY": "http://u:p@proxy.local:3128", "NO_PROXY": "localhost,.internal"})
    assert s.tunnel is not None and s.tunnel.port == 3128 and s.tunnel.authorization.startswith("Basic ")
    assert s.tunnel.applies_to("api.anthropic.com")
    assert not s.tunnel.applies_to("localhost") and not s.tunnel.applies_to("a.internal")


@pytest.mark.parametrize("method,target,provider", [
    ("GET", "/_api", "local"), ("POST", "/", "anthropic"), ("GET", "/_apix", "anthropic"),
    ("GET", "/favicon.icox", "anthropic"),
])
def test_local_is_exactly_the_page_api_and_icon(method, target, provider):
    assert route(method, target, [], S).provider == provider


def test_routes_are_immutable():
    import dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        route("POST", "/v1/messages", [], S).target = "/elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize("target,path,query", [
    ("/v1/x?a=1", "/v1/x", "?a=1"), ("?a=1", "/", "?a=1"), ("", "/", ""), ("/p?", "/p", "?"),
])
def test_split_target(target, path, query):
    assert split_target(target) == (path, query)


def test_bare_v1_against_a_v1_prefix_is_not_doubled():
    s = load_settings({"ANTHROPIC_BASE_URL": "http://gw.local:8080/anthropic/v1"}, port=5577)
    assert route("POST", "/v1", [], s).target == "/anthropic/v1/"
    assert route("POST", "/v1?x=1", [], s).target == "/anthropic/v1/?x=1"
    assert route("POST", "/v1/messages", [], s).target == "/anthropic/v1/messages"
    assert route("POST", "/v10/x", [], s).target == "/anthropic/v1/v10/x"
