"""Rate limits, lockout and the external issuer at token mode's edge (transports/auth.py).

The app is the real one (build_app, lifespan running), driven in-process through httpx's ASGI
transport, which lets a test be a client from a routable address: loopback clients are exempt from
the address lockout (every local agent shares 127.0.0.1), so the address half needs one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from huddle.app import build_app
from huddle.service.token_codec import TokenCodec
from huddle.settings import load_settings
from oidc_issuer import StandInIssuer

SECRET = "edge-secret-" + "q" * 32
REGISTRATION = "registration-" + "r" * 32


@asynccontextmanager
async def client(
    tmp_path: Path, address: str = "203.0.113.9", **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, TokenCodec]]:
    base = {
        "data_dir": str(tmp_path / "data"),
        "repo": str(tmp_path),
        "project": "edge",
        "auth": "token",
        "auth_secret": SECRET,
        "mqtt_broker": "off",
        "analysis": "off",
    }
    app = build_app(load_settings({**base, **settings}, environ={}))
    transport = httpx.ASGITransport(app=app.served, client=(address, 40000))
    async with (
        app.http.router.lifespan_context(app.http),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
    ):
        yield http, TokenCodec(SECRET, clock=time.time)


def bearer(codec: TokenCodec, agent: str) -> dict[str, str]:
    token, _ = codec.issue(agent, project="edge", org="default", scopes={"agent"}, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


async def test_an_agent_past_its_burst_gets_429_with_retry_after(tmp_path: Path) -> None:
    async with client(tmp_path, rate_limit_burst=3, rate_limit_per_s=0.01) as (http, codec):
        alice, bob = bearer(codec, "alice"), bearer(codec, "bob")
        for _ in range(3):
            assert (await http.post("/api/v1/tools/list_agents", json={}, headers=alice)).status_code == 200
        limited = await http.post("/api/v1/tools/list_agents", json={}, headers=alice)
        assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        # Limits are per agent: bob is not slowed down by alice.
        assert (await http.post("/api/v1/tools/list_agents", json={}, headers=bob)).status_code == 200


async def test_repeated_bad_tokens_lock_the_address_out_even_with_a_good_token(tmp_path: Path) -> None:
    async with client(tmp_path, lockout_failures=3, lockout_s=300) as (http, codec):
        for _ in range(3):
            refused = await http.post("/api/v1/tools/list_agents", json={}, headers={"Authorization": "Bearer bad"})
            assert refused.status_code == 401
        locked = await http.post("/api/v1/tools/list_agents", json={}, headers=bearer(codec, "alice"))
        assert locked.status_code == 429 and locked.json()["code"] == "locked_out"
        assert "retry-after" in locked.headers


async def test_loopback_clients_are_never_locked_out_by_address(tmp_path: Path) -> None:
    async with client(tmp_path, address="127.0.0.1", lockout_failures=2) as (http, codec):
        for _ in range(5):
            refused = await http.post("/api/v1/tools/list_agents", json={}, headers={"Authorization": "Bearer bad"})
            assert refused.status_code == 401
        assert (await http.post("/api/v1/tools/list_agents", json={}, headers=bearer(codec, "a"))).status_code == 200


async def test_guessing_a_registration_secret_locks_that_agent_id_out(tmp_path: Path) -> None:
    async with client(tmp_path, address="127.0.0.1", registration_secret=REGISTRATION, lockout_failures=3) as (http, _):
        for _ in range(3):
            wrong = await http.post(
                "/api/v1/auth/register", json={"agent_id": "newbie", "registration_secret": "x" * 40}
            )
            assert wrong.status_code == 403 and "wrong registration secret" in wrong.json()["error"]
        right = {"agent_id": "newbie", "registration_secret": REGISTRATION}
        locked = await http.post("/api/v1/auth/register", json=right)
        assert locked.status_code == 429 and locked.json()["code"] == "locked_out"
        other = await http.post("/api/v1/auth/register", json={**right, "agent_id": "other"})
        assert other.status_code == 200 and other.json()["access_token"]


async def test_an_external_issuers_token_is_accepted_and_its_forgeries_are_not(tmp_path: Path) -> None:
    with StandInIssuer(audience="huddle-edge") as idp:
        async with client(tmp_path, auth_issuer=idp.url, auth_audience="huddle-edge", lockout_failures=0) as (http, _):
            good = await http.post(
                "/api/v1/tools/register_agent",
                json={"name": "idp agent"},
                headers={"Authorization": f"Bearer {idp.token(sub='carol', scope='agent')}"},
            )
            assert good.status_code == 200 and good.json()["result"]["agent_id"] == "carol"
            for forged in (
                idp.forged_hs256(sub="carol"),
                idp.unsigned(sub="carol"),
                idp.token(sub="carol", aud="someone-else"),
                idp.token(sub="carol", exp=int(time.time()) - 3600),
            ):
                refused = await http.post(
                    "/api/v1/tools/list_agents", json={}, headers={"Authorization": f"Bearer {forged}"}
                )
                assert refused.status_code == 401 and "eyJ" not in refused.text, refused.text
            metadata = (await http.get("/.well-known/oauth-protected-resource")).json()
            assert metadata["authorization_servers"] == [idp.url]


async def test_bad_text_on_the_auth_routes_is_a_clear_422_never_a_500(tmp_path: Path) -> None:
    async with client(tmp_path, registration_secret=REGISTRATION) as (http, codec):
        for route, body in (
            ("/api/v1/auth/register", '{"agent_id": "a", "registration_secret": "\\ud800"}'),
            ("/api/v1/auth/refresh", '{"refresh_token": "a.\\ud800.b"}'),
            ("/api/v1/auth/register", '{"agent_id": "' + "x" * 100_000 + '", "registration_secret": "s"}'),
        ):
            answer = await http.post(route, content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 422, (route, answer.text[:200])
        signed_in = bearer(codec, "alice")
        for value in ("", False, 0):
            answer = await http.post("/api/v1/auth/sign_out", json={"agent_id": value}, headers=signed_in)
            assert answer.status_code == 422, answer.text


async def test_readyz_tells_an_outsider_only_what_is_up_in_token_mode(tmp_path: Path) -> None:
    async with client(tmp_path) as (http, _):
        ready = (await http.get("/readyz")).json()
        assert ready["ok"] is True
        assert all(set(check) == {"ok"} for check in ready["checks"].values()), ready


async def test_metrics_show_what_the_rate_limiter_and_lockout_track(tmp_path: Path) -> None:
    async with client(tmp_path, lockout_failures=5) as (http, codec):
        await http.post("/api/v1/tools/list_agents", json={}, headers={"Authorization": "Bearer bad"})
        scraped = (await http.get("/metrics", headers=bearer(codec, "ops"))).text
        assert 'huddle_guard_keys{state="tracked",table="lockout"} 1.0' in scraped, scraped[-2000:]
        assert 'huddle_guard_keys{state="evicted",table="rate_limits"} 0.0' in scraped


async def test_a_misspelled_field_on_an_auth_route_is_refused_and_signs_nobody_out(tmp_path: Path) -> None:
    async with client(tmp_path, registration_secret=REGISTRATION) as (http, codec):
        admin, _ = codec.issue("ops", project="edge", org="default", scopes={"admin"}, ttl_s=600)
        headers = {"Authorization": f"Bearer {admin}"}
        typo = await http.post("/api/v1/auth/sign_out", json={"agent": "runaway"}, headers=headers)
        assert typo.status_code == 422 and "'agent'" in typo.json()["error"] and "agent_id" in typo.json()["error"]
        assert (await http.get("/api/v1/auth/whoami", headers=headers)).status_code == 200  # still signed in
        register = {"agent_id": "n1", "registration_secret": REGISTRATION, "projekt": "x"}
        assert (await http.post("/api/v1/auth/register", json=register)).status_code == 422


async def test_revoking_a_malformed_token_blames_the_argument_not_the_callers_token(tmp_path: Path) -> None:
    async with client(tmp_path, lockout_failures=1) as (http, codec):
        headers = bearer(codec, "alice")
        answer = await http.post("/api/v1/auth/revoke", json={"token": "not-a-token"}, headers=headers)
        assert answer.status_code == 422 and answer.json()["field"] == "token"
        assert "www-authenticate" not in answer.headers
        # Not a bad credential either: it counts toward no lockout.
        assert (await http.get("/api/v1/auth/whoami", headers=headers)).status_code == 200
