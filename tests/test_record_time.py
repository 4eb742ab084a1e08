"""Index-line timestamps: the per-second cache gives what datetime formats."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from ccxray.record import iso_ms


def _datetime_iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@given(st.one_of(st.floats(0, 4e9), st.integers(0, 4 * 10**12).map(lambda ms: ms / 1000),
                 st.integers(0, 4 * 10**9).map(lambda s: s + 0.9999996)))
def test_iso_ms_is_datetime_to_the_millisecond(epoch_s: float) -> None:
    assert iso_ms(epoch_s) == _datetime_iso(epoch_s)
