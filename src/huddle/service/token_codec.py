"""Huddle's own tokens: JWTs signed with HS256, the algorithm pinned (SPEC F-91).

Pure signing and checking, no storage: whether a well-signed token was revoked since is the
credential service's question (service/credentials.py). Every refusal is a `TokenRefused` whose
message tells the caller what to do next; it never echoes the token.

Rotation: tokens are signed with `auth_secret`; a token signed with `auth_previous_secret` is still
accepted until it expires, so a key can be replaced without signing every agent out at once.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"  # pinned: a token naming any other algorithm (`none` included) is refused
ISSUER = "huddle"
ACCESS, REFRESH = "access", "refresh"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "aud", "iss"]
VERIFIED_CACHE = 4096  # tokens whose signature was checked, most recently used kept


class TokenRefused(Exception):
    """A token that proves nothing. `code` is the OAuth error (RFC 6750): invalid_token."""

    code = "invalid_token"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class WrongKind(TokenRefused):
    """A good token of ours, but a refresh token where an access token is wanted, or the reverse."""


@dataclass(frozen=True)
class Claims:
    """What a verified token says. `epoch` is the agent's sign-out counter when it was issued."""

    agent_id: str
    project: str
    org: str
    scopes: frozenset[str]
    token_id: str
    kind: str
    issued_at: float
    expires_at: float
    epoch: int = 0
    # A refresh token's family: every token refreshed from one sign-in shares it (reuse detection).
    family: str = ""


def audience_for(org: str, project: str) -> str:
    """A token is good for one project of one org only."""
    return f"huddle:{org}/{project}"


class TokenCodec:
    def __init__(self, secret: str, previous: str = "", *, clock: Callable[[], float]):
        if len(secret) < 32:
            raise ValueError("the signing secret must be at least 32 characters")
        self._keys = [secret, *([previous] if previous else [])]
        self._clock = clock
        # An agent sends the same token on every call: its signature is checked once, then the
        # exact same string is recognised (expiry and revocation are still checked every time).
        # The keys never change for a codec, so nothing cached can outlive the key that proved it.
        self._verified: OrderedDict[tuple[str, str, str], Claims] = OrderedDict()
        self._audiences: OrderedDict[tuple[str, str], str] = OrderedDict()  # audience_of's answers, likewise

    def issue(
        self,
        agent_id: str,
        *,
        project: str,
        org: str,
        scopes: frozenset[str] | set[str],
        ttl_s: float,
        kind: str = ACCESS,
        epoch: int = 0,
        family: str = "",
    ) -> tuple[str, Claims]:
        now = self._clock()
        claims = Claims(
            agent_id=agent_id,
            project=project,
            org=org,
            scopes=frozenset(scopes),
            token_id=secrets.token_urlsafe(16),
            kind=kind,
            issued_at=now,
            expires_at=now + ttl_s,
            epoch=epoch,
            family=family,
        )
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience_for(org, project),
            "sub": agent_id,
            "org": org,
            "proj": project,
            "scope": " ".join(sorted(claims.scopes)),
            "jti": claims.token_id,
            "typ": kind,
            "iat": int(now),
            "exp": int(claims.expires_at),
            "ep": epoch,
        }
        if family:
            payload["fam"] = family
        return jwt.encode(payload, self._keys[0], algorithm=ALGORITHM), claims

    def verify(self, token: str, *, org: str, project: str, kind: str = ACCESS) -> Claims:
        """The claims of a token signed by one of our keys, for this org and project, not expired."""
        audience = audience_for(org, project)
        claims = self._verified.get((token, audience, kind))
        if claims is None:
            claims = self._claims(token, audience, org, project, kind)
            self._verified[(token, audience, kind)] = claims
            if len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end((token, audience, kind))
        if claims.expires_at <= self._clock():
            hint = "sign in again" if kind == REFRESH else "refresh it (POST /api/v1/auth/refresh) or get a new one"
            raise TokenRefused(f"the token has expired; {hint}")
        return claims

    def _claims(self, token: str, audience: str, org: str, project: str, kind: str) -> Claims:
        payload = self._decode(token, audience)
        kind_of = str(payload.get("typ"))[:20]
        if kind_of != kind:
            raise WrongKind(f"this token is of kind {kind_of!r}; send your {kind} token")
        try:
            claims = Claims(
                agent_id=str(payload["sub"]),
                project=str(payload.get("proj", project)),
                org=str(payload.get("org", org)),
                scopes=frozenset(str(payload.get("scope", "")).split()),
                token_id=str(payload["jti"]),
                kind=kind,
                issued_at=float(payload["iat"]),
                expires_at=float(payload["exp"]),
                epoch=int(payload.get("ep", 0)),
                family=str(payload.get("fam", "")),
            )
        except (TypeError, ValueError):
            raise TokenRefused("the token's claims are malformed; get a new one") from None
        return claims

    def audience_of(self, token: str, audiences: list[str]) -> str | None:
        """Which of `audiences` a token of ours is for (signature checked, expiry left to `verify`).

        Asked on every request of a server of several projects, so a token's answer is remembered
        like `verify`'s (only a signature that checked out is)."""
        if not audiences:
            return None
        key = (token, "\n".join(audiences))
        known = self._audiences.get(key)
        if known is not None:
            self._audiences.move_to_end(key)
            return known
        payload = self._decode(token, audiences)
        audience = payload.get("aud")
        if not (isinstance(audience, str) and audience in audiences):
            return None
        self._audiences[key] = audience
        if len(self._audiences) > VERIFIED_CACHE:
            self._audiences.popitem(last=False)
        return audience

    def _decode(self, token: str, audience: str | list[str]) -> dict[str, Any]:
        not_a_jwt = TokenRefused("the bearer token is not a JWT; send the token `huddle token issue` printed")
        if not token.isascii():
            raise not_a_jwt
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise not_a_jwt from None
        if header.get("alg") != ALGORITHM:
            shown = str(header.get("alg"))[:20]
            raise TokenRefused(f"tokens must be signed with {ALGORITHM}; {shown!r} is not accepted")
        last: jwt.PyJWTError | None = None
        for key in self._keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    audience=audience,
                    issuer=ISSUER,
                    # Expiry is checked against Huddle's own (injectable) clock in `verify`.
                    options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
                )
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.InvalidAudienceError:
                wanted = audience if isinstance(audience, str) else " or ".join(audience)
                raise TokenRefused(
                    f"the token was issued for another project or org, not {wanted.replace('huddle:', '')}"
                ) from None
            except jwt.PyJWTError as exc:
                raise TokenRefused(f"the token is malformed ({exc}); get a new one") from None
        assert last is not None
        raise TokenRefused("the token's signature does not match this server's key; get a new token") from None
