"""JWTs of an external OIDC/OAuth issuer, checked by its JWKS (SPEC F-95).

With `auth_issuer` set, Huddle is an OAuth 2.1 resource server in the sense of the MCP
authorization spec: an agent may present an access token its organisation's identity provider
issued instead of one of Huddle's own. The edge routes a bearer token by its unverified `iss`
(`claims_issuer`): Huddle's own tokens to the HS256 codec, this issuer's here.

What is checked, and refused with a `TokenRefused` that never echoes the token:
- the algorithm is RS256 or ES256 (never HS*, never `none`), and matches the key it names;
- the key (`kid`) is one the issuer publishes in its JWKS;
- `iss` is `auth_issuer` exactly, `aud` includes `auth_audience`, `exp` is in the future and `nbf`
  (if any) in the past by Huddle's clock, with `leeway_s` for clock skew;
- the agent claim (`auth_agent_claim`, default `sub`) is a usable agent id.
Scopes come from `scope` (a space-separated string) and/or `scp` (a list or string); only Huddle's
own (agent, read, dashboard, admin) are kept, and a token with none of them acts as `agent`. The
principal belongs to this server's org and project: the issuer vouches for who, not where.

Keys: PyJWKClient fetches and parses the JWKS, which is blocking I/O. Rather than send every
request through a worker thread, the keys are kept here (prefetched at start by `prefetch`) and
checking a token is a dictionary lookup plus a signature check on the event loop. Only a refresh
runs in a worker thread (anyio.to_thread): when the set is older than `max_key_age_s`, or a token
names a `kid` not in it (the issuer rotated its key). Refreshes are at most one per
`refresh_cooldown_s`, so tokens with made-up `kid`s cannot make Huddle hammer the issuer, and
concurrent requests wait for one refresh instead of starting their own. If a refresh fails the
keys already known stay in use; with no keys at all the request gets Unavailable (503), not a
refusal, since the token may be fine.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import httpx
import jwt
from jwt import PyJWK, PyJWKClient

from huddle.domain.principal import ADMIN, AGENT, DASHBOARD, SCOPES, Principal
from huddle.errors import Unavailable
from huddle.service.overseers import OVERSEER_PREFIX
from huddle.service.token_codec import TokenRefused
from huddle.settings import Settings, secure_url

log = logging.getLogger(__name__)

# Pinned: asymmetric only. An HS* token "signed" with the issuer's public key (the classic confusion
# attack) or an unsigned one names an algorithm outside this list and is refused before any key is used.
ALGORITHMS = ("RS256", "ES256")
REQUIRED_CLAIMS = ["exp", "iss", "aud"]
DISCOVERY_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


class _FetchFailed(Exception):
    pass


def _shown(value: Any) -> str:
    """A header value the caller sent, fit for an error message: quoted and cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class ExternalIssuer:
    """Verifies one external issuer's access tokens and maps them to a Principal."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        project: str,
        org: str,
        jwks_url: str = "",
        agent_claim: str = "sub",
        clock: Callable[[], float] = time.time,
        leeway_s: float = 60.0,
        max_key_age_s: float = 3600.0,
        refresh_cooldown_s: float = 30.0,
        fetch_timeout_s: float = 10.0,
    ):
        if not issuer or not audience:
            raise ValueError("an external issuer needs its issuer URL and the audience tokens are issued for")
        self.issuer = issuer
        self.audience = audience
        self.project = project
        self.org = org
        self.agent_claim = agent_claim
        self.jwks_url = jwks_url  # empty until discovered from the issuer's metadata
        self.leeway_s = leeway_s
        self.max_key_age_s = max_key_age_s
        self.refresh_cooldown_s = refresh_cooldown_s
        self.fetch_timeout_s = fetch_timeout_s
        self._clock = clock
        self._client: PyJWKClient | None = None
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf  # last successful fetch
        self._attempted_at = -math.inf  # last fetch, successful or not
        self._refreshes = 0  # completed attempts: lets a waiter see that another task already refreshed
        self._lock = anyio.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, project: str, clock: Callable[[], float] = time.time
    ) -> ExternalIssuer | None:
        """The issuer `auth_issuer` names, or None when none is configured."""
        if not settings.auth_issuer:
            return None
        return cls(
            settings.auth_issuer,
            settings.auth_audience,
            project=project,
            org=settings.org,
            jwks_url=settings.auth_jwks_url,
            agent_claim=settings.auth_agent_claim,
            clock=clock,
        )

    # -- routing --------------------------------------------------------------------------------

    @staticmethod
    def claims_issuer(token: str) -> str | None:
        """The `iss` a token claims, unverified (None if it is no JWT): only for choosing a verifier."""
        try:
            payload = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        issuer = payload.get("iss")
        return issuer if isinstance(issuer, str) else None

    def owns(self, token: str) -> bool:
        """True when the token claims to come from this issuer (to be verified by `authenticate`)."""
        return self.claims_issuer(token) == self.issuer

    # -- the per-request check ------------------------------------------------------------------

    async def authenticate(self, token: str) -> Principal:
        """The principal a token of this issuer proves; TokenRefused (401) saying why not, or
        Unavailable (503) when the issuer's keys cannot be fetched and none are known yet."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused(f"the bearer token is not a JWT; get an access token from {self.issuer}") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRefused(
                f"tokens of {self.issuer} must be signed with {' or '.join(ALGORITHMS)}; {_shown(alg)} is not accepted"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused(
                f"the token names no signing key (no kid header); get an access token from {self.issuer}"
            )
        key = await self._signing_key(kid)
        return self.verify(token, key)

    def verify(self, token: str, key: PyJWK) -> Principal:
        """Checks a token against one of the issuer's keys (no I/O); `authenticate` picks the key."""
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                # Time claims are checked against Huddle's own (injectable) clock below.
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    # The agent claim (sub or another) is checked below, with a message that names it.
                    "verify_sub": False,
                    "verify_jti": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidAlgorithmError:
            raise TokenRefused("the token's algorithm does not match the key it names; get a new token") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused(
                f"the token's signature does not match the key {self.issuer} publishes for it; get a new token"
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(
                f"the token was issued for another audience; this server accepts tokens for {self.audience!r}"
                " (ask the identity provider for a token with that audience)"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(f"the token was issued by another issuer; this server accepts {self.issuer}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(f"the token lacks the {exc.claim!r} claim; get a new token from {self.issuer}") from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"the token is malformed ({type(exc).__name__}); get a new one") from None
        self._check_times(payload)
        return Principal(
            agent_id=self._agent_id(payload),
            project=self.project,
            org=self.org,
            scopes=self._scopes(payload),
            token_id=str(payload.get("jti", ""))[:128],
        )

    def _check_times(self, payload: dict[str, Any]) -> None:
        now = self._clock()
        try:
            expires = float(payload["exp"])
            not_before = float(payload.get("nbf", -math.inf))
        except (TypeError, ValueError):
            raise TokenRefused("the token's exp or nbf is not a number; get a new token") from None
        if expires + self.leeway_s <= now:
            raise TokenRefused(f"the token has expired; get a new access token from {self.issuer}")
        if not_before - self.leeway_s > now:
            raise TokenRefused("the token is not valid yet (nbf is in the future); check this machine's clock")

    def _agent_id(self, payload: dict[str, Any]) -> str:
        value = payload.get(self.agent_claim)
        if value is None:
            raise TokenRefused(
                f"the token has no {self.agent_claim!r} claim, which names the agent on this server"
                " (setting auth_agent_claim)"
            )
        if (
            not isinstance(value, str)
            or not value
            or len(value) > 128
            or any(c.isspace() or not c.isprintable() for c in value)
        ):
            raise TokenRefused(
                f"the token's {self.agent_claim!r} claim is not a usable agent id (1-128 printable characters"
                " without spaces); set auth_agent_claim to a claim that is"
            )
        if value.startswith(OVERSEER_PREFIX) and not self._scopes(payload) & {DASHBOARD, ADMIN}:
            raise TokenRefused(
                f"ids starting with {OVERSEER_PREFIX!r} are for people at the dashboard; the token needs the"
                " dashboard or admin scope"
            )
        return value

    @staticmethod
    def _scopes(payload: dict[str, Any]) -> frozenset[str]:
        granted: set[str] = set()
        for claim in ("scope", "scp"):
            value = payload.get(claim)
            if isinstance(value, str):
                granted.update(value.split())
            elif isinstance(value, list):
                granted.update(v for v in value if isinstance(v, str))
        return frozenset(granted & set(SCOPES)) or frozenset({AGENT})

    # -- keys -----------------------------------------------------------------------------------

    async def prefetch(self) -> None:
        """Fetches the issuer's keys now (at server start); Unavailable if that fails. The server may
        start anyway: the first token fetches them again (at most once per refresh_cooldown_s)."""
        await self._refresh(self._refreshes)
        if not self._keys:
            raise Unavailable(
                f"the signing keys of {self.issuer} could not be fetched; check auth_issuer and auth_jwks_url"
            )

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def _signing_key(self, kid: str) -> PyJWK:
        now = self._clock()
        key = self._keys.get(kid)
        stale = now - self._fetched_at >= self.max_key_age_s
        if (key is None or stale) and now - self._attempted_at >= self.refresh_cooldown_s:
            await self._refresh(self._refreshes)
            key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._keys:
            wait = max(1, math.ceil(self._attempted_at + self.refresh_cooldown_s - now))
            raise Unavailable(
                f"the signing keys of {self.issuer} cannot be fetched right now; retry in {wait} s",
                details={"retry_after_s": wait},
            )
        raise TokenRefused(
            f"the token is signed by a key {self.issuer} does not publish (unknown kid); get a new token from it"
        )

    async def _refresh(self, seen: int) -> None:
        async with self._lock:
            if self._refreshes != seen:
                return  # another request refreshed while this one waited
            try:
                keys = await anyio.to_thread.run_sync(self._fetch_keys)
            except _FetchFailed as exc:
                log.warning("external issuer %s: %s (keeping %d known keys)", self.issuer, exc, len(self._keys))
            else:
                self._keys = keys
                self._fetched_at = self._clock()
            finally:
                self._attempted_at = self._clock()
                self._refreshes += 1

    def _fetch_keys(self) -> dict[str, PyJWK]:
        """Runs in a worker thread: discovery (once) and the JWKS, both blocking."""
        if self._client is None:
            url = self.jwks_url or self._discover_jwks_url()
            self._client = PyJWKClient(
                url, cache_jwk_set=True, lifespan=self.max_key_age_s, timeout=self.fetch_timeout_s
            )
            self.jwks_url = url
        try:
            jwk_set = self._client.get_jwk_set(refresh=True)
        except (jwt.PyJWTError, ValueError, OSError) as exc:
            raise _FetchFailed(f"fetching the JWKS {self.jwks_url} failed: {exc}") from None
        keys = {
            k.key_id: k
            for k in jwk_set.keys
            if k.key_id and k.public_key_use in ("sig", None) and k.algorithm_name in ALGORITHMS
        }
        if not keys:
            raise _FetchFailed(f"the JWKS {self.jwks_url} has no RS256 or ES256 signing key with a kid")
        return keys

    def _discover_jwks_url(self) -> str:
        """`jwks_uri` from the issuer's metadata (OpenID Connect Discovery, else RFC 8414)."""
        problems: list[str] = []
        for path in DISCOVERY_PATHS:
            url = self.issuer.rstrip("/") + path
            try:
                response = httpx.get(url, timeout=self.fetch_timeout_s, follow_redirects=False)
                response.raise_for_status()
                metadata = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                problems.append(f"{url}: {exc}")
                continue
            if not isinstance(metadata, dict):
                problems.append(f"{url}: not a JSON object")
                continue
            if metadata.get("issuer") != self.issuer:
                # OIDC Discovery §4.3: metadata naming another issuer must not be used.
                problems.append(f"{url}: names issuer {_shown(metadata.get('issuer'))}, not {self.issuer}")
                continue
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not secure_url(jwks_uri):
                problems.append(f"{url}: no https jwks_uri (http only to this machine)")
                continue
            return jwks_uri
        raise _FetchFailed("no usable issuer metadata (" + "; ".join(problems) + "); set auth_jwks_url")
