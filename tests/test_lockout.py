"""Lockout after repeated bad secrets (SPEC F-94): counting, locking, expiry, success, bounded memory."""

from __future__ import annotations

import pytest

from helpers import ManualClock
from huddle.errors import LockedOut, RateLimited
from huddle.service.lockout import Lockout, address_key, agent_key


def test_the_tenth_failure_within_the_window_locks_the_key_out_for_the_lockout() -> None:
    clock = ManualClock(1000.0)
    lockout = Lockout(max_failures=10, window_s=300, lockout_s=300, clock=clock)
    key = address_key("10.0.0.7")
    assert [lockout.failed(key) for _ in range(9)] == [False] * 9
    lockout.check(key)  # nine failures: still allowed
    assert lockout.failed(key) is True
    with pytest.raises(LockedOut) as caught:
        lockout.check(key)
    error = caught.value
    assert isinstance(error, RateLimited)
    assert (error.status, error.code) == (429, "locked_out")
    assert error.retry_after_s == 300
    assert error.retry_after_header == "300"
    assert "too many failed attempts with a bad token or secret for addr:10.0.0.7" in error.message
    assert "locked out for another 300 s" in error.message
    clock.advance(299.5)
    with pytest.raises(LockedOut, match="another 1 s"):
        lockout.check(key)
    clock.advance(0.5)
    lockout.check(key)  # the lockout is over


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = ManualClock(1000.0)
    lockout = Lockout(max_failures=3, window_s=60, lockout_s=600, clock=clock)
    lockout.failed("k")
    lockout.failed("k")
    clock.advance(60)
    assert lockout.failed("k") is False  # the first two fell out of the window
    assert lockout.failed("k") is False
    assert lockout.failed("k") is True


def test_keys_are_locked_out_independently() -> None:
    lockout = Lockout(max_failures=2, window_s=60, lockout_s=600, clock=ManualClock(1000.0))
    lockout.failed(address_key("10.0.0.7"))
    lockout.failed(address_key("10.0.0.7"))
    with pytest.raises(LockedOut):
        lockout.check(address_key("10.0.0.7"))
    lockout.check(address_key("10.0.0.8"))
    lockout.check(agent_key("10.0.0.7"))
    assert lockout.locked_for(address_key("10.0.0.8")) == 0


def test_max_failures_of_zero_turns_lockout_off() -> None:
    lockout = Lockout(max_failures=0, window_s=300, lockout_s=300, clock=ManualClock(1000.0))
    assert not any(lockout.failed("k") for _ in range(1000))
    lockout.check("k")
    assert len(lockout) == 0


def test_keys_with_no_recent_failures_are_forgotten() -> None:
    clock = ManualClock(1000.0)
    lockout = Lockout(max_failures=5, window_s=60, lockout_s=60, clock=clock)
    for i in range(500):
        lockout.failed(address_key(f"10.0.{i // 256}.{i % 256}"))
    assert len(lockout) == 500
    clock.advance(60)
    lockout.failed("newcomer")
    assert len(lockout) == 1


def test_a_locked_out_key_is_kept_until_its_lockout_ends() -> None:
    clock = ManualClock(1000.0)
    lockout = Lockout(max_failures=2, window_s=10, lockout_s=600, clock=clock)
    lockout.failed("guesser")
    lockout.failed("guesser")
    clock.advance(300)  # window long over, lockout not
    lockout.failed("other")
    with pytest.raises(LockedOut):
        lockout.check("guesser")
    assert len(lockout) == 2
    clock.advance(300)
    lockout.failed("third")
    assert len(lockout) == 1  # guesser's lockout ended and `other` went quiet: both forgotten
    lockout.check("guesser")


def test_a_flood_of_distinct_keys_is_capped_at_max_keys() -> None:
    lockout = Lockout(max_failures=3, window_s=60, lockout_s=60, clock=ManualClock(1000.0), max_keys=1000)
    for i in range(50_000):
        lockout.failed(f"addr:flood-{i}")
    assert len(lockout) == 1000
    assert lockout.evicted == 49_000


def test_lockout_parameters_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="0 \\(off\\) or more"):
        Lockout(max_failures=-1, window_s=1, lockout_s=1)
    with pytest.raises(ValueError, match="greater than 0"):
        Lockout(max_failures=3, window_s=0, lockout_s=1)
