"""``fleet_wire.answers``: the body encoder and transport errors both clients share."""

from __future__ import annotations

import httpx
import pytest
from fleet_wire import WireError, all_finite, encode, transport_errors


class UnavailableError(WireError):
    """Stands in for a client's "unavailable" exception."""


def test_a_refused_header_is_not_repeated_in_the_message() -> None:
    """h11 names the header value it refused; that value (a token) must not be shown."""
    with pytest.raises(UnavailableError) as caught, transport_errors("http://c", UnavailableError):
        raise httpx.LocalProtocolError("Illegal header value b'Bearer s3cret\\r'")
    assert "s3cret" not in str(caught.value)
    assert "http://c" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [{"a": float("nan")}, {"a": [1, {"b": float("inf")}]}, ({"a": None}, -float("inf"))],
)
def test_encode_refuses_nan_and_infinity(body: object) -> None:
    """orjson writes NaN and ±∞ as null; ``encode`` looks behind each null and refuses them."""
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode(body)
    assert all_finite(body) is False
    assert all_finite({"a": [1.5, None, "NaN"]}) is True
