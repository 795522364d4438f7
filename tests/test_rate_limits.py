"""Per-caller token buckets (SPEC F-94): bursts, refill, Retry-After, bounded memory, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import ManualClock
from huddle.errors import InvalidInput, RateLimited
from huddle.service.rate_limits import RateLimiter, address_key, agent_key
from huddle.settings import Settings, load_settings


def test_a_key_may_make_its_burst_at_once_and_the_next_request_learns_how_long_to_wait() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(rate_per_s=2.0, burst=5, clock=clock)
    assert [limiter.check("agent:a") for _ in range(5)] == [None] * 5
    assert limiter.check("agent:a") == pytest.approx(0.5)  # one token refills in 1/2 s
    clock.advance(0.25)
    assert limiter.check("agent:a") == pytest.approx(0.25)  # refused requests are not counted
    clock.advance(0.25)
    assert limiter.check("agent:a") is None
    assert limiter.check("agent:a") == pytest.approx(0.5)


def test_the_bucket_refills_at_the_rate_up_to_the_burst_and_no_further() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(rate_per_s=10.0, burst=3, clock=clock)
    for _ in range(3):
        assert limiter.check("k") is None
    clock.advance(3600)  # an hour idle refills 3 tokens, not 36,000
    assert [limiter.check("k") for _ in range(3)] == [None, None, None]
    assert limiter.check("k") is not None


def test_keys_are_limited_independently() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=ManualClock(1000.0))
    assert limiter.check(agent_key("alice")) is None
    assert limiter.check(agent_key("alice")) is not None
    assert limiter.check(agent_key("bob")) is None
    assert limiter.check(address_key("10.0.0.7")) is None


def test_an_agent_key_never_collides_with_an_address_key() -> None:
    assert agent_key("10.0.0.7") != address_key("10.0.0.7")


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 200), (50.0, 0), (0.0, 0)])
def test_a_rate_or_burst_of_zero_turns_limiting_off(rate: float, burst: int) -> None:
    limiter = RateLimiter(rate_per_s=rate, burst=burst, clock=ManualClock(1000.0))
    assert not limiter.enabled
    assert all(limiter.check("k") is None for _ in range(10_000))
    assert len(limiter) == 0


def test_enforce_raises_a_429_with_the_wait_and_a_retry_after_in_whole_seconds() -> None:
    limiter = RateLimiter(rate_per_s=4.0, burst=1, clock=ManualClock(1000.0))
    limiter.enforce("agent:a")
    with pytest.raises(RateLimited) as caught:
        limiter.enforce("agent:a", "agent alice")
    error = caught.value
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.retry_after_s == pytest.approx(0.25)
    assert error.details == {"retry_after_s": 0.25}
    assert error.retry_after_header == "1"  # never 0: RFC 9110 has no fractions
    assert error.http_headers == {"Retry-After": "1"}
    assert "too many requests from agent alice" in error.message
    assert "4 a second with bursts of 1; retry in 0.25 s" in error.message
    assert error.to_dict()["code"] == "rate_limited"


def test_idle_buckets_are_forgotten_once_they_have_refilled() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(rate_per_s=10.0, burst=20, clock=clock)  # empty to full in 2 s
    for i in range(100):
        limiter.check(f"addr:10.0.0.{i}")
    assert len(limiter) == 100
    clock.advance(1.99)  # 19 spent tokens back of each key's 1 spent: all full
    limiter.check("addr:newcomer")
    assert len(limiter) == 1
    assert limiter.evicted == 0


def test_a_bucket_still_refilling_is_kept_so_waiting_out_of_the_table_is_impossible() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(rate_per_s=1.0, burst=10, clock=clock)
    for _ in range(11):
        limiter.check("agent:greedy")
    clock.advance(5)  # 5 of 10 tokens back: not idle yet
    limiter.check("agent:other")
    assert len(limiter) == 2
    assert [limiter.check("agent:greedy") for _ in range(6)][-1] is not None


def test_a_flood_of_distinct_keys_is_capped_and_forgets_the_least_recently_seen_key() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(rate_per_s=1.0, burst=2, clock=clock, max_keys=100)
    limiter.check("agent:steady")
    limiter.check("agent:steady")
    for i in range(10_000):
        limiter.check(f"addr:flood-{i}")
        if i % 50 == 0:  # a caller that keeps sending stays the most recently used
            limiter.check("agent:steady")
    assert len(limiter) == 100
    assert limiter.evicted == 10_000 + 1 - 100
    assert limiter.check("agent:steady") is not None  # still limited: the flood did not reset it


def test_a_clock_that_steps_back_refills_nothing() -> None:
    clock = ManualClock(1000.0)
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=clock)
    limiter.check("k")
    clock.advance(-100)
    assert limiter.check("k") is not None


def test_negative_rates_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="0 \\(off\\) or more"):
        RateLimiter(rate_per_s=-1, burst=1)


def test_the_settings_default_to_generous_limits_and_accept_zero_to_turn_them_off(tmp_path: Path) -> None:
    defaults = Settings()
    assert (defaults.rate_limit_per_s, defaults.rate_limit_burst) == (50.0, 200)
    assert (defaults.lockout_failures, defaults.lockout_s) == (10, 300.0)
    off = load_settings(
        {"data_dir": str(tmp_path)},
        environ={"HUDDLE_RATE_LIMIT_PER_S": "0", "HUDDLE_RATE_LIMIT_BURST": "0", "HUDDLE_LOCKOUT_FAILURES": "0"},
    )
    assert (off.rate_limit_per_s, off.rate_limit_burst, off.lockout_failures) == (0.0, 0, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rate_limit_per_s": -1}, "rate_limit_per_s must be 0 \\(off\\) or more"),
        ({"rate_limit_burst": -5}, "rate_limit_burst must be 0 \\(off\\) or more"),
        ({"lockout_failures": -1}, "lockout_failures must be 0 \\(off\\) or more"),
        ({"lockout_s": 0}, "lockout_s must be greater than 0"),
    ],
)
def test_bad_limit_settings_are_clear_errors(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_settings({"data_dir": str(tmp_path), **overrides}, environ={})
