"""The one Origin/Host rule (transports/origin.py), case by case, as REST and /mcp both apply it."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from huddle.transports.origin import is_loopback, refusal


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "127.1.2.3", "::1", "localhost"])
def test_every_loopback_address_is_a_loopback_bind_with_the_host_check(bind: str) -> None:
    assert is_loopback(bind)
    rebound = Headers({"host": "evil.example:3100", "origin": "http://evil.example:3100"})
    assert "DNS-rebinding" in (refusal(rebound, bind) or "")
    local = Headers({"host": "127.0.0.2:3100", "origin": "http://LOCALHOST:9"})
    assert refusal(local, bind) is None


@pytest.mark.parametrize(
    ("host", "origin", "allowed"),
    [
        ("evil.example:3100", "http://evil.example:3100", False),  # DNS rebinding: both theirs
        ("10.0.0.5:3100", "https://10.0.0.5:3100", False),  # scheme differs from the request's
        ("10.0.0.5:3100", "http://10.0.0.5:3101", False),  # port differs
        ("10.0.0.5:3100", "http://10.0.0.6:3100", False),  # not our address
        ("10.0.0.5:3100", "http://10.0.0.5:3100", True),  # our own address, as served
        ("huddle.internal:3100", "http://huddle.internal:3100", True),  # a name in allowed_hosts
        ("huddle.internal", "http://huddle.internal", True),  # default port on both sides
        ("10.0.0.5:3100", "https://board.example", True),  # allowed_origins
        ("10.0.0.5:3100", "null", False),
    ],
)
def test_a_non_loopback_bind_accepts_only_its_own_known_origin(host: str, origin: str, allowed: bool) -> None:
    reason = refusal(
        Headers({"host": host, "origin": origin}),
        "0.0.0.0",
        {"https://board.example"},
        allowed_hosts={"huddle.internal"},
        served="10.0.0.5",
    )
    assert (reason is None) is allowed, reason
    if not allowed:
        assert "allowed_origins" in (reason or "")
