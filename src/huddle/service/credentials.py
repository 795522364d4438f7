"""Token mode's state: issuing, refreshing and revoking tokens, and checking one per request.

A token's signature says who issued it and until when; what it cannot say — that it was revoked,
that its agent signed out everywhere, that its refresh token was already used — lives in the
database (schema 010_auth.sql) and is mirrored in memory, so checking a token on every request
costs a signature check and two dictionary lookups, not a query. The mirror follows the event
log: a revocation is an event committed with the change, and every instance (the feed in team
mode) applies it from its bus before answering the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from huddle.domain import validate
from huddle.domain.events import Event
from huddle.domain.principal import AGENT, SCOPES, Principal
from huddle.errors import Conflict, Forbidden, InvalidInput
from huddle.service.overseers import OVERSEER_PREFIX
from huddle.service.token_codec import ACCESS, REFRESH, Claims, TokenCodec, TokenRefused, WrongKind
from huddle.settings import Settings
from huddle.storage.base import Store, Unit

log = logging.getLogger(__name__)
KEY_FILE = "auth.key"
REVOKED, SIGNED_OUT = "auth.token_revoked", "auth.signed_out"
# Ids Huddle itself signs as (the operator's CLI): nobody may register, be issued or sign out one.
RESERVED_PREFIX = "huddle:"


def signing_secret(settings: Settings, *, create: bool = True) -> str:
    """`auth_secret`, or the key generated once in the data dir (mode 0600) for a single server.

    Only a server creates that file; a CLI that finds neither is told where the key comes from.
    """
    if settings.auth_secret:
        return settings.auth_secret
    path = settings.data_path / KEY_FILE
    if not path.exists() and not create:
        raise InvalidInput(
            f"no signing key: HUDDLE_AUTH_SECRET is not set and {path} does not exist; run this with the same"
            " settings (HUDDLE_AUTH_SECRET, --data-dir) as the server"
        )
    if not path.exists():
        settings.data_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return Path(path).read_text().strip()


def key_id(secret: str) -> str:
    """A short fingerprint of the signing key (never the key): lets the CLI check it signs as the server does."""
    return hashlib.sha256(b"huddle-key-id:" + secret.encode()).hexdigest()[:16]


def check_scopes(scopes: Sequence[str]) -> frozenset[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be some of {', '.join(SCOPES)}; got {unknown or 'none'}", field="scopes")
    return frozenset(scopes)


class WrongSecret(Forbidden):
    """A registration secret that does not match: counted towards a lockout at the edge."""


class Credentials:
    def __init__(
        self, store: Store, settings: Settings, *, clock: Callable[[], float] | None = None, create_key: bool = True
    ):
        self.store = store
        self.settings = settings
        self.project = store.project
        self.org = settings.org
        self.clock: Callable[[], float] = clock or getattr(store, "clock", None) or time.time
        secret = signing_secret(settings, create=create_key)
        self.key_id = key_id(secret)
        self.codec = TokenCodec(secret, settings.auth_previous_secret, clock=self.clock)
        self._revoked: set[str] = set()
        self._revoked_families: set[str] = set()
        self._epochs: dict[str, int] = {}

    # -- the per-request check ------------------------------------------------------------------

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer token proves, or TokenRefused saying why not (never the token)."""
        claims = self.codec.verify(token, org=self.org, project=self.project)
        refusal = self._refusal(claims.token_id, claims.family, claims.agent_id, claims.epoch)
        if refusal is not None:
            raise TokenRefused(refusal)
        return Principal(
            claims.agent_id,
            claims.project,
            claims.org,
            claims.scopes,
            claims.token_id,
            expires_at=claims.expires_at,
            epoch=claims.epoch,
            family=claims.family,
        )

    def still_valid(self, principal: Principal) -> bool:
        """For a stream opened with a token: is that token still good (not expired, revoked or signed out)?"""
        if principal.expires_at <= self.clock():
            return False
        return self._refusal(principal.token_id, principal.family, principal.agent_id, principal.epoch) is None

    def _refusal(self, token_id: str, family: str, agent_id: str, epoch: int) -> str | None:
        if token_id in self._revoked:
            return "the token was revoked; get a new one (huddle token issue, or sign in again)"
        if family and family in self._revoked_families:
            return "the sign-in this token belongs to was revoked; sign in again"
        if epoch < self._epochs.get(agent_id, 0):
            return f"{agent_id} signed out everywhere since this token was issued; sign in again"
        return None

    def _check_live(self, claims: Claims) -> None:
        refusal = self._refusal(claims.token_id, claims.family, claims.agent_id, claims.epoch)
        if refusal is not None:
            raise TokenRefused(refusal)

    async def load(self) -> None:
        """Fills the in-memory mirror from the database (at start; events keep it current)."""

        def read(unit: Unit) -> tuple[list[str], list[str], dict[str, int]]:
            revoked = unit.tx.all("SELECT token_id FROM auth_revoked WHERE project = ?", (self.project,))
            families = unit.tx.all(
                "SELECT family FROM auth_families WHERE project = ? AND revoked = 1", (self.project,)
            )
            epochs = unit.tx.all("SELECT agent_id, epoch FROM auth_epochs WHERE project = ?", (self.project,))
            return (
                [r["token_id"] for r in revoked],
                [r["family"] for r in families],
                {r["agent_id"]: int(r["epoch"]) for r in epochs},
            )

        revoked, families, epochs = await self.store.read(read)
        self._revoked.update(revoked)
        self._revoked_families.update(families)
        for agent, epoch in epochs.items():
            self._epochs[agent] = max(epoch, self._epochs.get(agent, 0))

    def apply(self, events: Sequence[Event]) -> None:
        """Bus listener: revocations committed by any instance take effect here at once."""
        for event in events:
            if event.kind == REVOKED:
                self._revoked.update(event.data.get("token_ids", ()))
                self._revoked_families.update(event.data.get("families", ()))
            elif event.kind == SIGNED_OUT:
                agent, epoch = str(event.data["agent"]), int(event.data["epoch"])
                self._epochs[agent] = max(epoch, self._epochs.get(agent, 0))

    # -- issuing --------------------------------------------------------------------------------

    async def issue(
        self,
        agent_id: str,
        scopes: Sequence[str] = (AGENT,),
        *,
        ttl_s: float | None = None,
        with_refresh: bool = True,
        by: str = "admin",
    ) -> dict[str, Any]:
        """An access token (and a refresh token starting a new family) for `agent_id`."""
        wanted = check_scopes(scopes)
        check_agent_id(agent_id)
        if ttl_s is not None and not 1 <= ttl_s <= 366 * 86400:
            raise InvalidInput("ttl_s must be between 1 second and 366 days", field="ttl_s")

        def write(unit: Unit) -> dict[str, Any]:
            _claim_identity(unit, agent_id)
            return self._issue_in(unit, agent_id, wanted, ttl_s, with_refresh, by)

        return await self.store.write(write)

    async def register(self, agent_id: str, registration_secret: str) -> dict[str, Any]:
        """Self-registration: a new agent id and its first tokens, for whoever knows the secret."""
        expected = self.settings.registration_secret
        if not expected:
            raise Forbidden(
                "self-registration is off on this server; ask its operator for a token (huddle token issue)"
            )
        if not hmac.compare_digest(registration_secret.encode(), expected.encode()):
            raise WrongSecret("wrong registration secret; check HUDDLE_REGISTRATION_SECRET with the operator")
        check_agent_id(agent_id)
        if agent_id.startswith(OVERSEER_PREFIX):
            raise Forbidden(f"ids starting with {OVERSEER_PREFIX!r} are for people; an operator issues those")

        def write(unit: Unit) -> dict[str, Any]:
            if _claimed(unit, agent_id):
                raise Conflict(
                    f"agent id {agent_id!r} is already taken; pick another id, or ask the operator for a token",
                    field="agent_id",
                )
            _claim_identity(unit, agent_id)
            return self._issue_in(unit, agent_id, frozenset({AGENT}), None, True, "self-registration")

        return await self.store.write(write)

    def _mint(
        self, agent_id: str, scopes: frozenset[str], *, epoch: int, family: str, ttl_s: float | None
    ) -> tuple[dict[str, Any], Claims, Claims | None]:
        """An access token (and, with a `family`, its refresh token): the answer, and both tokens' claims.

        The access token belongs to the sign-in too: revoking the sign-in (refresh reuse) ends it.
        """
        token, claims = self.codec.issue(
            agent_id,
            project=self.project,
            org=self.org,
            scopes=scopes,
            ttl_s=ttl_s or self.settings.token_ttl_s,
            epoch=epoch,
            family=family,
        )
        answer: dict[str, Any] = {
            "agent_id": agent_id,
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(claims.expires_at - claims.issued_at),
            "token_id": claims.token_id,
            "scopes": sorted(scopes),
        }
        if not family:
            return answer, claims, None
        refresh, rclaims = self.codec.issue(
            agent_id,
            project=self.project,
            org=self.org,
            scopes=scopes,
            ttl_s=self.settings.refresh_ttl_s,
            kind=REFRESH,
            epoch=epoch,
            family=family,
        )
        answer["refresh_token"] = refresh
        return answer, claims, rclaims

    def _issue_in(
        self, unit: Unit, agent_id: str, scopes: frozenset[str], ttl_s: float | None, with_refresh: bool, by: str
    ) -> dict[str, Any]:
        family = secrets.token_urlsafe(12) if with_refresh else ""
        answer, claims, rclaims = self._mint(agent_id, scopes, epoch=_epoch(unit, agent_id), family=family, ttl_s=ttl_s)
        if rclaims is not None:
            unit.tx.execute(
                "INSERT INTO auth_families (project, family, agent_id, current_jti, revoked, expires_at)"
                " VALUES (?, ?, ?, ?, 0, ?)",
                (self.project, family, agent_id, rclaims.token_id, rclaims.expires_at),
            )
        unit.emit(
            "auth.token_issued",
            actor=agent_id,
            audience=(),
            token_id=claims.token_id,
            refresh_token_id=rclaims.token_id if rclaims is not None else None,
            scopes=sorted(scopes),
            by=by,
        )
        return answer

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """A new access and refresh token for the newest refresh token of a family.

        Presenting an older refresh token of the family means two holders: the family is revoked
        (everyone signed in through it must sign in again) and the call is refused.
        """
        claims = self.codec.verify(refresh_token, org=self.org, project=self.project, kind=REFRESH)
        self._check_live(claims)

        def write(unit: Unit) -> dict[str, Any] | str:
            row = unit.tx.one(
                "SELECT current_jti, revoked FROM auth_families WHERE project = ? AND family = ?",
                (self.project, claims.family),
            )
            if row is None or row["revoked"]:
                return "the refresh token's sign-in was revoked; sign in again"
            if row["current_jti"] != claims.token_id:
                unit.tx.execute(
                    "UPDATE auth_families SET revoked = 1 WHERE project = ? AND family = ?",
                    (self.project, claims.family),
                )
                unit.emit("auth.refresh_reused", actor=claims.agent_id, audience=(), family=claims.family)
                unit.emit(REVOKED, actor=claims.agent_id, audience=(), token_ids=[], families=[claims.family])
                return "this refresh token was already used, so it may be stolen: its sign-in is revoked; sign in again"
            answer, aclaims, rclaims = self._mint(
                claims.agent_id,
                claims.scopes,
                epoch=_epoch(unit, claims.agent_id),
                family=claims.family,
                ttl_s=None,
            )
            assert rclaims is not None
            unit.tx.execute(
                "UPDATE auth_families SET current_jti = ?, expires_at = ? WHERE project = ? AND family = ?",
                (rclaims.token_id, rclaims.expires_at, self.project, claims.family),
            )
            unit.emit("auth.token_refreshed", actor=claims.agent_id, audience=(), token_id=aclaims.token_id)
            return answer

        outcome = await self.store.write(write)
        if isinstance(outcome, str):  # the family revocation above is committed; the call still fails
            raise TokenRefused(outcome)
        return outcome

    # -- revoking -------------------------------------------------------------------------------

    async def revoke(self, token: str, *, by: Principal | None = None) -> dict[str, Any]:
        """Revokes one token (access or refresh) of ours. Agents may revoke only their own."""
        for kind in (ACCESS, REFRESH):
            try:
                claims = self.codec.verify(token, org=self.org, project=self.project, kind=kind)
                break
            except WrongKind:
                continue
        else:  # pragma: no cover - verify raised for both kinds
            raise TokenRefused("not a Huddle token")
        if by is not None and not by.is_admin and by.agent_id != claims.agent_id:
            raise Forbidden("you can revoke only your own tokens")

        def write(unit: Unit) -> dict[str, Any]:
            unit.tx.execute(
                "INSERT INTO auth_revoked (project, token_id, agent_id, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (project, token_id) DO NOTHING",
                (self.project, claims.token_id, claims.agent_id, claims.expires_at),
            )
            # Revoking a refresh token ends its whole sign-in; an access token ends alone.
            families = [claims.family] if claims.family and claims.kind == REFRESH else []
            for family in families:
                unit.tx.execute(
                    "UPDATE auth_families SET revoked = 1 WHERE project = ? AND family = ?", (self.project, family)
                )
            unit.emit(REVOKED, actor=claims.agent_id, audience=(), token_ids=[claims.token_id], families=families)
            return {"revoked": claims.token_id, "agent_id": claims.agent_id}

        return await self.store.write(write)

    async def sign_out_everywhere(self, agent_id: str, *, by: Principal | None = None) -> dict[str, Any]:
        """Logout-all: every token the agent holds now stops working (its epoch moves on)."""
        check_agent_id(agent_id)
        if by is not None and not by.is_admin and by.agent_id != agent_id:
            raise Forbidden("you can sign out only yourself; an admin token signs out others")

        def write(unit: Unit) -> dict[str, Any]:
            epoch = _epoch(unit, agent_id) + 1
            unit.tx.execute(
                "INSERT INTO auth_epochs (project, agent_id, epoch) VALUES (?, ?, ?)"
                " ON CONFLICT (project, agent_id) DO UPDATE SET epoch = excluded.epoch",
                (self.project, agent_id, epoch),
            )
            unit.tx.execute(
                "UPDATE auth_families SET revoked = 1 WHERE project = ? AND agent_id = ?", (self.project, agent_id)
            )
            unit.emit(SIGNED_OUT, actor=agent_id, audience=(), agent=agent_id, epoch=epoch)
            return {"agent_id": agent_id, "signed_out": True, "epoch": epoch}

        return await self.store.write(write)

    def forget_expired(self, unit: Unit) -> int:
        """Sweeper step: revocations of tokens that have expired anyway are dropped from the table."""
        return unit.tx.execute(
            "DELETE FROM auth_revoked WHERE project = ? AND expires_at < ?", (self.project, unit.now)
        )


def check_agent_id(agent_id: str) -> None:
    """The id rule every tool applies (so a token is never issued for an id the tools refuse), and
    Huddle's own ids are nobody else's."""
    validate.identifier(agent_id, "agent_id")
    if agent_id.startswith(RESERVED_PREFIX):
        raise InvalidInput(f"ids starting with {RESERVED_PREFIX!r} are Huddle's own; pick another", field="agent_id")


def _epoch(unit: Unit, agent_id: str) -> int:
    row = unit.tx.one("SELECT epoch FROM auth_epochs WHERE project = ? AND agent_id = ?", (unit.project, agent_id))
    return int(row["epoch"]) if row else 0


def _claimed(unit: Unit, agent_id: str) -> bool:
    row = unit.tx.one(
        "SELECT 1 AS taken FROM auth_identities WHERE project = ? AND agent_id = ?"
        " UNION ALL SELECT 1 AS taken FROM agents WHERE project = ? AND agent_id = ?",
        (unit.project, agent_id, unit.project, agent_id),
    )
    return row is not None


def _claim_identity(unit: Unit, agent_id: str) -> None:
    unit.tx.execute(
        "INSERT INTO auth_identities (project, agent_id, claimed_at) VALUES (?, ?, ?)"
        " ON CONFLICT (project, agent_id) DO NOTHING",
        (unit.project, agent_id, unit.now),
    )
