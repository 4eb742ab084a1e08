"""Close-code mapping table (DESIGN.md "WebSocket transport")."""

import pytest
from hypothesis import given, strategies as st

from ccxray import closecodes as cc


@pytest.mark.parametrize("code,forwarded", [
    (None, None), (1005, None),
    (1000, 1000), (1001, 1001), (1002, 1002), (1003, 1003),
    (1004, 1011), (1006, 1011), (1015, 1011),
    (1007, 1007), (1008, 1008), (1009, 1009), (1010, 1010), (1011, 1011), (1012, 1012), (1013, 1013), (1014, 1014),
    (1016, 1011), (2999, 1011), (3000, 3000), (4000, 4000), (4999, 4999), (5000, 1011), (999, 1011), (0, 1011),
])
def test_forward_code(code, forwarded):
    assert cc.forward_code(code) == forwarded


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 1004, 1016, 2999, 5000])
def test_never_sent(code):
    with pytest.raises(ValueError):
        cc.wire_code(code)


def test_wire_code_passes_valid_and_none():
    assert cc.wire_code(None) is None and cc.wire_code(4000) == 4000


@given(st.text(max_size=300))
def test_cut_reason_is_short_and_decodes(reason):
    cut = cc.cut_reason(reason)
    raw = cut.encode("utf-8")
    assert len(raw) <= 120
    assert reason.encode("utf-8", "replace").startswith(raw)


def test_cut_reason_utf8_boundary():
    assert cc.cut_reason("é" * 100).encode() == ("é" * 60).encode()
    assert cc.cut_reason("a" + "€" * 50).encode("utf-8") == ("a" + "€" * 39).encode()


def test_named_codes_are_the_rfc_6455_values():
    """RFC 6455 §7.4.1, written out: the names must mean what the RFC says."""
    assert (cc.GOING_AWAY, cc.PROTOCOL_ERROR, cc.NO_STATUS, cc.ABNORMAL, cc.TOO_BIG, cc.INTERNAL_ERROR) == (
        1001, 1002, 1005, 1006, 1009, 1011)
    # "MUST NOT be set as a status code in a Close control frame by an endpoint"
    assert cc.NEVER_SENT == {1005, 1006, 1015}


def test_cut_reason_survives_lone_surrogates():
    cut = cc.cut_reason("\ud800" * 200)
    assert len(cut.encode("utf-8")) <= 120 and cut == "?" * 120
