"""Tokens of an external OIDC issuer, verified by its JWKS (SPEC F-95), against a real local stand-in
issuer (tests/oidc_issuer.py) over HTTP: what is accepted, what is refused and why, key refresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from huddle.domain.principal import ADMIN, AGENT, READ, Principal
from huddle.errors import InvalidInput, Unavailable
from huddle.service.external_issuer import ExternalIssuer
from huddle.service.token_codec import TokenCodec, TokenRefused
from huddle.settings import load_settings
from oidc_issuer import StandInIssuer, new_key

NOW = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def idp(clock: Clock) -> Iterator[StandInIssuer]:
    with StandInIssuer(audience="huddle-test", clock=clock) as issuer:
        yield issuer


def verifier(idp: StandInIssuer, clock: Clock, **kwargs: object) -> ExternalIssuer:
    return ExternalIssuer(idp.url, idp.audience, project="web", org="acme", clock=clock, **kwargs)  # type: ignore[arg-type]


async def refused(issuer: ExternalIssuer, token: str) -> str:
    with pytest.raises(TokenRefused) as caught:
        await issuer.authenticate(token)
    message = caught.value.message
    assert all(part not in message for part in token.split(".") if part)  # never echoes the token, nor a part
    return message


async def test_a_valid_rs256_token_becomes_a_principal_of_this_servers_org_and_project(
    idp: StandInIssuer, clock: Clock
) -> None:
    issuer = verifier(idp, clock)
    principal = await issuer.authenticate(idp.token(sub="alice", scope="openid profile agent", jti="j-1"))
    assert principal == Principal("alice", "web", "acme", frozenset({AGENT}), "j-1")
    assert issuer.jwks_url == idp.jwks_url  # discovered from /.well-known/openid-configuration


async def test_a_valid_es256_token_is_accepted_too(idp: StandInIssuer, clock: Clock) -> None:
    principal = await verifier(idp, clock).authenticate(idp.token(kid="ec-1", sub="bob"))
    assert principal.agent_id == "bob"


async def test_an_expired_token_is_refused_after_the_leeway_by_the_injected_clock(
    idp: StandInIssuer, clock: Clock
) -> None:
    issuer = verifier(idp, clock, leeway_s=30.0)
    token = idp.token(exp=int(NOW) - 10)
    assert (await issuer.authenticate(token)).agent_id == "alice"  # within the leeway for clock skew
    clock.advance(20)
    message = await refused(issuer, token)
    assert message == f"the token has expired; get a new access token from {idp.url}"


async def test_a_token_not_valid_yet_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    message = await refused(verifier(idp, clock), idp.token(nbf=int(NOW) + 3600))
    assert "not valid yet" in message


async def test_a_token_naming_a_kid_the_issuer_does_not_publish_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    message = await refused(verifier(idp, clock), idp.token(kid="nobody-knows", signer=new_key("rsa")))
    assert message == f"the token is signed by a key {idp.url} does not publish (unknown kid); get a new token from it"


async def test_a_token_signed_by_another_key_under_a_published_kid_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    message = await refused(verifier(idp, clock), idp.token(kid="rsa-1", signer=new_key("rsa")))
    assert message == f"the token's signature does not match the key {idp.url} publishes for it; get a new token"


async def test_an_unsigned_alg_none_token_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    message = await refused(verifier(idp, clock), idp.unsigned())
    assert message == f"tokens of {idp.url} must be signed with RS256 or ES256; 'none' is not accepted"


async def test_hs256_signed_with_the_issuers_public_key_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    """The algorithm-confusion attack: the public key is public, so an HMAC over it proves nothing."""
    issuer = verifier(idp, clock)
    await issuer.prefetch()
    message = await refused(issuer, idp.forged_hs256(kid="rsa-1", sub="mallory", scope="admin"))
    assert message == f"tokens of {idp.url} must be signed with RS256 or ES256; 'HS256' is not accepted"


async def test_a_token_whose_algorithm_does_not_match_its_key_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    ec_signed_naming_rsa_key = idp.token(kid="rsa-1", signer=idp.keys["ec-1"])
    message = await refused(verifier(idp, clock), ec_signed_naming_rsa_key)
    assert message == "the token's algorithm does not match the key it names; get a new token"


async def test_a_token_for_another_audience_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    message = await refused(verifier(idp, clock), idp.token(aud="some-other-api"))
    assert message == (
        "the token was issued for another audience; this server accepts tokens for 'huddle-test'"
        " (ask the identity provider for a token with that audience)"
    )


async def test_a_token_whose_audience_list_includes_this_server_is_accepted(idp: StandInIssuer, clock: Clock) -> None:
    principal = await verifier(idp, clock).authenticate(idp.token(aud=["other-api", "huddle-test"]))
    assert principal.agent_id == "alice"


async def test_a_token_from_another_issuer_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    message = await refused(verifier(idp, clock), idp.token(iss="https://evil.example"))
    assert message == f"the token was issued by another issuer; this server accepts {idp.url}"


@pytest.mark.parametrize("claim", ["exp", "aud", "iss"])
async def test_a_token_lacking_a_required_claim_is_refused(idp: StandInIssuer, clock: Clock, claim: str) -> None:
    message = await refused(verifier(idp, clock), idp.token(**{claim: None}))
    assert f"the token lacks the {claim!r} claim" in message


async def test_garbage_is_refused_as_not_a_jwt(idp: StandInIssuer, clock: Clock) -> None:
    message = await refused(verifier(idp, clock), "not-a-token")
    assert message == f"the bearer token is not a JWT; get an access token from {idp.url}"


async def test_a_token_without_a_kid_is_refused(idp: StandInIssuer, clock: Clock) -> None:
    import jwt

    token = jwt.encode(idp.claims(), idp.keys["rsa-1"], algorithm="RS256")
    message = await refused(verifier(idp, clock), token)
    assert "names no signing key (no kid header)" in message


async def test_scopes_come_from_scope_and_scp_and_only_huddles_are_kept(idp: StandInIssuer, clock: Clock) -> None:
    issuer = verifier(idp, clock)
    assert (await issuer.authenticate(idp.token(scope="read email"))).scopes == {READ}
    assert (await issuer.authenticate(idp.token(scope=None, scp=["admin", "offline_access"]))).scopes == {ADMIN}
    assert (await issuer.authenticate(idp.token(scope="read", scp="agent"))).scopes == {READ, AGENT}
    assert (await issuer.authenticate(idp.token(scope="openid profile"))).scopes == {AGENT}  # none: agent
    assert (await issuer.authenticate(idp.token(scope=None))).scopes == {AGENT}


async def test_the_agent_comes_from_the_configured_claim(idp: StandInIssuer, clock: Clock) -> None:
    issuer = verifier(idp, clock, agent_claim="preferred_username")
    principal = await issuer.authenticate(idp.token(sub="8f2c-uuid", preferred_username="claude-frontend"))
    assert principal.agent_id == "claude-frontend"
    message = await refused(issuer, idp.token())
    assert "the token has no 'preferred_username' claim, which names the agent" in message


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, 42, ["alice"]])
async def test_an_agent_claim_that_is_no_agent_id_is_refused(idp: StandInIssuer, clock: Clock, bad: object) -> None:
    message = await refused(verifier(idp, clock), idp.token(sub=bad))
    assert "the token's 'sub' claim is not a usable agent id" in message


async def test_a_person_id_needs_the_dashboard_or_admin_scope(idp: StandInIssuer, clock: Clock) -> None:
    issuer = verifier(idp, clock)
    message = await refused(issuer, idp.token(sub="human:ann", scope="agent"))
    assert "ids starting with 'human:' are for people at the dashboard" in message
    assert (await issuer.authenticate(idp.token(sub="human:ann", scope="dashboard"))).agent_id == "human:ann"


def test_claims_issuer_peeks_at_iss_without_verifying_so_the_edge_can_route_the_token(idp: StandInIssuer) -> None:
    ours, _ = TokenCodec("s" * 32, clock=lambda: NOW).issue(
        "alice", project="web", org="acme", scopes={AGENT}, ttl_s=60
    )
    assert ExternalIssuer.claims_issuer(ours) == "huddle"
    assert ExternalIssuer.claims_issuer(idp.token()) == idp.url
    assert ExternalIssuer.claims_issuer(idp.forged_hs256()) == idp.url  # unverified: routing only
    assert ExternalIssuer.claims_issuer("garbage") is None
    assert ExternalIssuer.claims_issuer(idp.token(iss=None)) is None
    assert ExternalIssuer.claims_issuer(idp.unsigned(iss=7)) is None


async def test_a_rotated_key_is_fetched_when_a_token_names_it(idp: StandInIssuer, clock: Clock) -> None:
    issuer = verifier(idp, clock, refresh_cooldown_s=30.0)
    await issuer.prefetch()
    assert issuer.key_ids == {"rsa-1", "ec-1"}
    clock.advance(31)
    new_kid = idp.rotate("ec")
    principal = await issuer.authenticate(idp.token(kid=new_kid, sub="carol"))
    assert principal.agent_id == "carol"
    assert idp.jwks_requests == 2


async def test_made_up_kids_cause_at_most_one_jwks_fetch_per_cooldown(idp: StandInIssuer, clock: Clock) -> None:
    issuer = verifier(idp, clock, refresh_cooldown_s=30.0)
    await issuer.authenticate(idp.token())
    assert idp.jwks_requests == 1
    stranger = new_key("rsa")
    for i in range(50):
        await refused(issuer, idp.token(kid=f"made-up-{i}", signer=stranger))
    assert idp.jwks_requests == 1  # all inside the cooldown after the first fetch
    clock.advance(30)
    await refused(issuer, idp.token(kid="made-up-again", signer=stranger))
    assert idp.jwks_requests == 2


async def test_keys_are_refreshed_when_older_than_their_max_age(idp: StandInIssuer, clock: Clock) -> None:
    issuer = verifier(idp, clock, max_key_age_s=600.0)
    await issuer.prefetch()
    idp.drop("rsa-1")  # the issuer withdrew a key
    assert (await issuer.authenticate(idp.token())).agent_id == "alice"  # still cached
    clock.advance(600)
    message = await refused(issuer, idp.token())
    assert "does not publish (unknown kid)" in message
    assert idp.jwks_requests == 2


async def test_known_keys_stay_in_use_when_the_issuer_becomes_unreachable(clock: Clock) -> None:
    with StandInIssuer(clock=clock) as idp:
        issuer = verifier(idp, clock, max_key_age_s=60.0)
        await issuer.prefetch()
        token = idp.token()
        idp.stop()
        clock.advance(120)  # due a refresh, which fails
        assert (await issuer.authenticate(token)).agent_id == "alice"


async def test_an_unreachable_issuer_with_no_keys_yet_is_unavailable_not_a_refusal(clock: Clock) -> None:
    idp = StandInIssuer(clock=clock).start()
    token, url = idp.token(), idp.url
    idp.stop()
    issuer = ExternalIssuer(url, "huddle-test", project="web", org="acme", clock=clock, fetch_timeout_s=2.0)
    with pytest.raises(Unavailable, match="could not be fetched; check auth_issuer and auth_jwks_url"):
        await issuer.prefetch()
    with pytest.raises(Unavailable, match="cannot be fetched right now; retry in 30 s") as caught:
        await issuer.authenticate(token)
    assert caught.value.status == 503


async def test_discovery_refuses_metadata_that_names_another_issuer(idp: StandInIssuer, clock: Clock) -> None:
    idp.metadata_overrides["issuer"] = "https://someone-else.example"
    with pytest.raises(Unavailable):
        await verifier(idp, clock).prefetch()
    assert idp.jwks_requests == 0


async def test_an_explicit_jwks_url_skips_discovery(idp: StandInIssuer, clock: Clock) -> None:
    idp.metadata_overrides["jwks_uri"] = "https://unreachable.invalid/jwks"
    issuer = verifier(idp, clock, jwks_url=idp.jwks_url)
    assert (await issuer.authenticate(idp.token())).agent_id == "alice"


def test_settings_build_the_issuer_and_none_without_auth_issuer(tmp_path: Path) -> None:
    assert ExternalIssuer.from_settings(load_settings({"data_dir": str(tmp_path)}, environ={}), project="p") is None
    settings = load_settings(
        {"data_dir": str(tmp_path), "auth": "token", "auth_issuer": "https://id.example", "auth_audience": "huddle"},
        environ={"HUDDLE_AUTH_AGENT_CLAIM": "azp"},
    )
    issuer = ExternalIssuer.from_settings(settings, project="p")
    assert issuer is not None
    assert (issuer.issuer, issuer.audience, issuer.agent_claim, issuer.org) == (
        "https://id.example",
        "huddle",
        "azp",
        "default",
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth": "token", "auth_issuer": "https://id.example"}, "auth_audience is required with auth_issuer"),
        ({"auth_issuer": "https://id.example", "auth_audience": "h"}, "takes effect in token mode only"),
        ({"auth": "token", "auth_issuer": "http://id.example", "auth_audience": "h"}, "must be an https:// URL"),
        (
            {"auth": "token", "auth_issuer": "https://id.example", "auth_audience": "h", "auth_jwks_url": "ftp://x"},
            "auth_jwks_url must be an https:// URL",
        ),
        ({"auth_audience": "h"}, "auth_audience needs auth_issuer"),
        (
            {"auth": "token", "auth_issuer": "https://id.example", "auth_audience": "h", "auth_agent_claim": " "},
            "name a claim",
        ),
    ],
)
def test_bad_external_issuer_settings_are_clear_errors(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_settings({"data_dir": str(tmp_path), **overrides}, environ={})


def test_plain_http_is_accepted_for_an_issuer_on_this_machine(tmp_path: Path) -> None:
    settings = load_settings(
        {"data_dir": str(tmp_path), "auth": "token", "auth_issuer": "http://127.0.0.1:8080", "auth_audience": "h"},
        environ={},
    )
    assert settings.auth_issuer == "http://127.0.0.1:8080"
