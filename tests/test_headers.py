"""Header rules: hop-by-hop, auth stripping, redaction, token removal."""

import pytest
from hypothesis import given, strategies as st

from ccxray import headers as hdr


def test_forwardable_drops_hop_by_hop_and_connection_named():
    h = [("Host", "x"), ("Connection", "keep-alive, X-Trace"), ("X-Trace", "1"), ("Keep-Alive", "5"),
         ("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("Upgrade", "h2"), ("Proxy-Authorization", "a"),
         ("X-Ccxray-Auth", "tok"), ("Authorization", "Bearer k"), ("anthropic-version", "2023-06-01")]
    assert hdr.forwardable(h) == [("Authorization", "Bearer k"), ("anthropic-version", "2023-06-01")]


def test_forwardable_keeps_order_and_case():
    h = [("X-B", "1"), ("x-a", "2"), ("X-B", "3")]
    assert hdr.forwardable(h) == h


@pytest.mark.parametrize("name", ["Authorization", "x-api-key", "Cookie", "chatgpt-account-id", "X-Ccxray-Auth"])
def test_redact_whole_value(name):
    out = hdr.redact([(name, "sk-secret-value")])
    assert out == [(name, "[redacted]")]


def test_redact_insecure_api_key_subprotocol():
    out = hdr.redact([("Sec-WebSocket-Protocol", "realtime, openai-insecure-api-key.sk-abc, openai-beta.realtime-v1")])
    assert "sk-abc" not in out[0][1]
    assert out[0][1] == "realtime, openai-insecure-api-key.[redacted], openai-beta.realtime-v1"


@pytest.mark.parametrize("target,expected", [
    ("/v1/messages?token=abc", "/v1/messages"),
    ("/v1/messages?beta=true&token=abc", "/v1/messages?beta=true"),
    ("/v1/messages?token=abc&beta=true", "/v1/messages?beta=true"),
    ("/x?a=b%20c&token=1&d=e+f", "/x?a=b%20c&d=e+f"),
    ("/x?tokens=1", "/x?tokens=1"),
    ("/x", "/x"),
])
def test_strip_token(target, expected):
    assert hdr.strip_token(target) == expected


def test_query_token():
    assert hdr.query_token("/?token=a%20b") == "a b"
    assert hdr.query_token("/?x=1") is None
    assert hdr.query_token("/x") is None
    assert hdr.query_token("/?token=") == ""  # present but empty: a wrong token, not a missing one


# Written out from the contract, not imported: a property that read the
# production set would agree with any name missing from it.
SECRET_NAMES = ("authorization", "x-api-key", "api-key", "cookie", "set-cookie", "proxy-authorization",
                "chatgpt-account-id", "x-ccxray-auth",
                "openai-api-key")  # not in the contract's list, but a key by name: kept redacted


def any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda ups: "".join(c.upper() if up else c for c, up in zip(name, ups)))


@given(st.lists(st.tuples(st.one_of(st.sampled_from(SECRET_NAMES).flatmap(any_case), st.text(min_size=1, max_size=10)),
                          st.text(max_size=20)), max_size=10))
def test_redact_never_leaks_secret_headers(pairs):
    out = hdr.redact(pairs)
    assert [n for n, _ in out] == [n for n, _ in pairs]
    for (name, value), (_, shown) in zip(pairs, out):
        if name.lower() in SECRET_NAMES:
            assert shown == "[redacted]"
        elif name.lower() != "sec-websocket-protocol":
            assert shown == value


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_every_contract_secret_is_redacted(name):
    assert hdr.redact([(name.upper(), "v")]) == [(name.upper(), "[redacted]")]
