"""check_lock{path, fencing_token}: what a fenced resource asks before it takes a write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import ManualClock, make_coordinator
from huddle.errors import InvalidInput
from huddle.service.coordinator import Coordinator


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def coord(tmp_path: Path, repo: Path, clock: ManualClock) -> AsyncIterator[Coordinator]:
    coordinator = make_coordinator(tmp_path, repo, clock=clock)
    await coordinator.store.open()  # no sweeper: time moves only when the test moves the clock
    for agent in ("alice", "bob"):
        await coordinator.agents.register(agent, agent_id=agent)
    try:
        yield coordinator
    finally:
        await coordinator.store.close()


async def test_the_token_of_a_live_lease_is_current_with_how_long_it_stays_valid(
    coord: Coordinator, clock: ManualClock
) -> None:
    token = (await coord.locks.acquire("alice", "src/", "exclusive", ttl_s=30))["fencing_token"]
    clock.advance(10)
    fencing = (await coord.locks.check_lock("src/a.py", fencing_token=token))["fencing"]
    assert fencing["current"] is True
    assert (fencing["holder"], fencing["mode"], fencing["lock_path"]) == ("alice", "exclusive", "src/")
    assert fencing["valid_for_s"] == 20.0


async def test_a_token_stays_current_until_its_ttl_and_not_an_instant_longer(
    coord: Coordinator, clock: ManualClock
) -> None:
    token = (await coord.locks.acquire("alice", "a.py", "exclusive", ttl_s=5))["fencing_token"]
    clock.advance(4.999)
    assert (await coord.locks.check_lock("a.py", fencing_token=token))["fencing"]["current"] is True
    clock.advance(0.001)
    stale = (await coord.locks.check_lock("a.py", fencing_token=token))["fencing"]
    assert stale["current"] is False
    assert "acquire_lock again" in stale["reason"]


async def test_after_a_takeover_the_old_token_is_stale_and_the_new_one_current(
    coord: Coordinator, clock: ManualClock
) -> None:
    old = (await coord.locks.acquire("alice", "a.py", "exclusive", ttl_s=5))["fencing_token"]
    clock.advance(6)
    new = (await coord.locks.acquire("bob", "a.py", "exclusive", ttl_s=5))["fencing_token"]
    assert new > old
    stale = (await coord.locks.check_lock("a.py", fencing_token=old))["fencing"]
    assert (stale["current"], stale["newest_token"]) == (False, new)
    assert f"newest live token here is {new}" in stale["reason"]
    assert (await coord.locks.check_lock("a.py", fencing_token=new))["fencing"]["current"] is True


async def test_a_released_token_is_no_longer_current(coord: Coordinator) -> None:
    token = (await coord.locks.acquire("alice", "a.py", "exclusive", ttl_s=60))["fencing_token"]
    await coord.locks.release("alice", "a.py")
    assert (await coord.locks.check_lock("a.py", fencing_token=token))["fencing"]["current"] is False


async def test_a_token_issued_for_another_path_is_not_current_here(coord: Coordinator) -> None:
    token = (await coord.locks.acquire("alice", "a.py", "exclusive", ttl_s=60))["fencing_token"]
    assert (await coord.locks.check_lock("b.py", fencing_token=token))["fencing"]["current"] is False


async def test_without_a_token_check_lock_answers_as_before(coord: Coordinator) -> None:
    await coord.locks.acquire("alice", "a.py", "exclusive", ttl_s=60)
    assert "fencing" not in await coord.locks.check_lock("a.py")


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (0, "fencing_token must be between 1 and 4611686018427387904; got 0"),
        (-3, "fencing_token must be between 1 and 4611686018427387904; got -3"),
        (True, "fencing_token must be a positive whole number"),
        (1.5, "fencing_token must be a positive whole number"),
        ("7", "fencing_token must be a positive whole number"),
    ],
)
async def test_a_bad_fencing_token_is_refused_naming_the_field(coord: Coordinator, bad: object, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as caught:
        await coord.locks.check_lock("a.py", fencing_token=bad)  # type: ignore[arg-type]
    assert caught.value.field == "fencing_token"
