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


async def test_the_guard_gives_a_remembered_request_the_same_verdict_and_forgets_past_its_bound() -> None:
    from starlette.types import Message

    from huddle.transports.origin import VERDICTS_KEPT, CrossSiteGuard

    reached: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        reached.append(scope["path"])

    guard = CrossSiteGuard(app, "127.0.0.1")  # type: ignore[arg-type]

    async def status(host: bytes, origin: bytes | None, path: str = "/mcp") -> int:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        headers = [(b"host", host), *([(b"origin", origin)] if origin else [])]
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "server": ("127.0.0.1", 3100)}
        await guard(scope, receive, send)
        return int(sent[0]["status"]) if sent else 200

    for _ in range(3):  # the first answer is worked out, the next ones remembered: all alike
        assert await status(b"127.0.0.1:3100", None) == 200
        assert await status(b"127.0.0.1:3100", b"http://evil.example") == 403
        assert await status(b"evil.example:3100", None) == 403
    assert reached == ["/mcp"] * 3
    for i in range(VERDICTS_KEPT + 10):  # hostile Host values cannot grow it without bound
        await status(f"h{i}.example".encode(), None)
    assert len(guard._verdicts) <= VERDICTS_KEPT
    assert await status(b"127.0.0.1:3100", b"http://evil.example") == 403
    guard._verdicts.clear()
    for i in range(5):  # 256 KB Origins are judged every time, never kept: the table stays small in bytes
        huge = b"http://" + bytes([97 + i]) * 262_144
        assert await status(b"127.0.0.1:3100", huge) == 403
    assert guard._verdicts == {}
