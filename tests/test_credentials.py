"""Token mode's credentials (service/credentials.py) on both backends, with a clock that only moves when told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from helpers import ManualClock, make_coordinator
from huddle.domain.principal import ADMIN, AGENT, Principal
from huddle.errors import Conflict, Forbidden, InvalidInput
from huddle.service.coordinator import Coordinator
from huddle.service.credentials import Credentials
from huddle.service.token_codec import TokenCodec, TokenRefused

SECRET = "s" * 40
REGISTRATION = "r" * 40


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def coord(tmp_path: Path, repo: Path, backend: dict[str, str], clock: ManualClock) -> AsyncIterator[Coordinator]:
    coordinator = make_coordinator(
        tmp_path,
        repo,
        clock=clock,
        auth="token",
        auth_secret=SECRET,
        registration_secret=REGISTRATION,
        token_ttl_s=600,
        **backend,
    )
    await coordinator.start()
    try:
        yield coordinator
    finally:
        await coordinator.stop()


def creds_of(coord: Coordinator, **settings: str) -> Credentials:
    credentials = Credentials(coord.store, replace(coord.settings, **settings))
    coord.bus.add_listener(credentials.apply)
    return credentials


async def test_an_issued_token_proves_its_agent_until_it_expires(coord: Coordinator, clock: ManualClock) -> None:
    creds = creds_of(coord)
    issued = await creds.issue("alice")
    principal = creds.authenticate(issued["access_token"])
    assert (principal.agent_id, principal.scopes, principal.project) == ("alice", frozenset({AGENT}), "repo")
    clock.advance(601)
    with pytest.raises(TokenRefused, match="expired; refresh it"):
        creds.authenticate(issued["access_token"])


async def test_a_refresh_token_works_once_and_its_reuse_revokes_the_whole_sign_in(
    coord: Coordinator, clock: ManualClock
) -> None:
    creds = creds_of(coord)
    first = await creds.issue("alice")
    second = await creds.refresh(first["refresh_token"])
    assert creds.authenticate(second["access_token"]).agent_id == "alice"
    with pytest.raises(TokenRefused, match="already used"):
        await creds.refresh(first["refresh_token"])  # a stolen copy of the old refresh token
    with pytest.raises(TokenRefused, match="revoked; sign in again"):
        await creds.refresh(second["refresh_token"])  # the legitimate holder must sign in again too
    with pytest.raises(TokenRefused, match="send your access token"):
        creds.authenticate(second["refresh_token"])  # a refresh token is never a bearer token


async def test_revoking_a_token_refuses_it_at_once_and_on_a_fresh_mirror(coord: Coordinator) -> None:
    creds = creds_of(coord)
    kept, revoked = await creds.issue("alice"), await creds.issue("alice")
    await creds.revoke(revoked["access_token"])
    with pytest.raises(TokenRefused, match="revoked"):
        creds.authenticate(revoked["access_token"])
    assert creds.authenticate(kept["access_token"]).agent_id == "alice"
    restarted = Credentials(coord.store, coord.settings)  # another process, or after a restart
    await restarted.load()
    with pytest.raises(TokenRefused, match="revoked"):
        restarted.authenticate(revoked["access_token"])


async def test_an_agent_may_revoke_only_its_own_tokens(coord: Coordinator) -> None:
    creds = creds_of(coord)
    alices = await creds.issue("alice")
    bob = creds.authenticate((await creds.issue("bob"))["access_token"])
    with pytest.raises(Forbidden, match="only your own"):
        await creds.revoke(alices["access_token"], by=bob)
    with pytest.raises(Forbidden, match="sign out only yourself"):
        await creds.sign_out_everywhere("alice", by=bob)
    assert creds.authenticate(alices["access_token"]).agent_id == "alice"


async def test_signing_out_everywhere_refuses_every_earlier_token_but_not_later_ones(coord: Coordinator) -> None:
    creds = creds_of(coord)
    old = await creds.issue("alice")
    admin = Principal("ops", "repo", "default", frozenset({ADMIN}))
    await creds.sign_out_everywhere("alice", by=admin)
    with pytest.raises(TokenRefused, match="signed out everywhere"):
        creds.authenticate(old["access_token"])
    with pytest.raises(TokenRefused):
        await creds.refresh(old["refresh_token"])
    new = await creds.issue("alice")
    assert creds.authenticate(new["access_token"]).agent_id == "alice"


async def test_a_rotated_key_keeps_old_tokens_valid_and_signs_new_ones(coord: Coordinator) -> None:
    before = await creds_of(coord).issue("alice")
    rotated = creds_of(coord, auth_secret="n" * 40, auth_previous_secret=SECRET)
    assert rotated.authenticate(before["access_token"]).agent_id == "alice"
    after = await rotated.issue("bob")
    with pytest.raises(TokenRefused, match="signature does not match"):
        creds_of(coord).authenticate(after["access_token"])  # the old key alone cannot verify new tokens


async def test_self_registration_needs_the_secret_and_a_new_id(coord: Coordinator) -> None:
    creds = creds_of(coord)
    with pytest.raises(Forbidden, match="wrong registration secret"):
        await creds.register("newbie", "x" * 40)
    got = await creds.register("newbie", REGISTRATION)
    assert creds.authenticate(got["access_token"]).agent_id == "newbie"
    with pytest.raises(Conflict, match="already taken"):
        await creds.register("newbie", REGISTRATION)  # nobody can claim an id somebody holds
    await coord.agents.register("alice", agent_id="alice")
    with pytest.raises(Conflict, match="already taken"):
        await creds.register("alice", REGISTRATION)
    with pytest.raises(Forbidden, match="for people"):
        await creds.register("human:eve", REGISTRATION)
    off = creds_of(coord, registration_secret="")
    with pytest.raises(Forbidden, match="self-registration is off"):
        await off.register("other", REGISTRATION)


async def test_bad_issue_requests_are_refused_and_write_nothing(coord: Coordinator) -> None:
    creds = creds_of(coord)
    before = await coord.updates.latest_cursor()
    with pytest.raises(InvalidInput, match="scopes must be"):
        await creds.issue("alice", ["root"])
    with pytest.raises(InvalidInput, match="not a valid id"):
        await creds.issue("has space")
    with pytest.raises(InvalidInput, match="ttl_s"):
        await creds.issue("alice", ttl_s=-1)
    assert await coord.updates.latest_cursor() == before


def test_a_token_for_another_project_or_with_another_algorithm_is_refused() -> None:
    codec = TokenCodec(SECRET, clock=lambda: 1_800_000_000.0)
    token, _ = codec.issue("alice", project="alpha", org="acme", scopes={AGENT}, ttl_s=60)
    with pytest.raises(TokenRefused, match="another project or org"):
        codec.verify(token, org="acme", project="beta")
    with pytest.raises(TokenRefused, match="another project or org"):
        codec.verify(token, org="other", project="alpha")
    with pytest.raises(TokenRefused, match="not a JWT"):
        codec.verify("not-a-token", org="acme", project="alpha")
    with pytest.raises(ValueError, match="at least 32"):
        TokenCodec("short", clock=lambda: 0.0)


async def test_reusing_a_refresh_token_also_ends_the_access_tokens_of_that_sign_in(coord: Coordinator) -> None:
    creds = creds_of(coord)
    victim = await creds.issue("alice")
    thief = await creds.refresh(victim["refresh_token"])  # the thief refreshed first with a stolen copy
    assert creds.authenticate(thief["access_token"]).agent_id == "alice"
    with pytest.raises(TokenRefused, match="already used"):
        await creds.refresh(victim["refresh_token"])  # the victim's refresh gives the theft away
    for token in (thief["access_token"], victim["access_token"]):
        with pytest.raises(TokenRefused, match="sign-in this token belongs to was revoked"):
            creds.authenticate(token)
    restarted = Credentials(coord.store, coord.settings)
    await restarted.load()
    with pytest.raises(TokenRefused, match="sign-in"):
        restarted.authenticate(thief["access_token"])


async def test_huddles_own_ids_can_be_neither_registered_issued_nor_signed_out(coord: Coordinator) -> None:
    creds = creds_of(coord)
    admin = Principal("ops", "repo", "default", frozenset({ADMIN}))
    with pytest.raises(InvalidInput, match="Huddle's own"):
        await creds.register("huddle:cli", REGISTRATION)
    with pytest.raises(InvalidInput, match="Huddle's own"):
        await creds.issue("huddle:cli", [ADMIN])
    with pytest.raises(InvalidInput, match="Huddle's own"):
        await creds.sign_out_everywhere("huddle:cli", by=admin)
    with pytest.raises(InvalidInput, match="not a valid id"):
        await creds.register("bob!x", REGISTRATION)  # the tools' own id rule: no token for an unusable id


async def test_a_stream_opened_with_a_token_ends_when_the_token_does(coord: Coordinator, clock: ManualClock) -> None:
    creds = creds_of(coord)
    kept, revoked = await creds.issue("alice"), await creds.issue("alice")
    live, dead = creds.authenticate(kept["access_token"]), creds.authenticate(revoked["access_token"])
    await creds.revoke(revoked["access_token"])
    assert creds.still_valid(live) and not creds.still_valid(dead)
    clock.advance(601)
    assert not creds.still_valid(live)  # expired while streaming
