"""Lease bookkeeping inside one transaction: overlap lookups, grants, the queue, expiry, answers.

Shared by the lock service, the sweeper, the agent-gone hook and the scorer (layer L). Every
function takes the `Unit` of the caller's transaction; nothing here awaits or commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from huddle.domain.events import Kind, iso
from huddle.domain.locks import (
    EXCLUSIVE,
    INTENT,
    SHARED,
    Claim,
    LockPattern,
    anchor_prefixes,
    blockers,
    compile_pattern,
    overlaps,
)
from huddle.service.context import placeholders
from huddle.service.instances import drop_waiters_of_gone_instances
from huddle.storage.base import Row, Unit


def pattern_of(row: Row) -> LockPattern:
    return compile_pattern(row["path"], bool(row["literal"]))


def claim_of(row: Row) -> Claim:
    return Claim(row["agent_id"], pattern_of(row), row["mode"])


def candidate_clause(patterns: Iterable[LockPattern]) -> tuple[str, list[Any]]:
    """SQL matching rows whose anchor nests with one of `patterns`' anchors (an index lookup)."""
    prefixes: set[str] = set()
    ranges: list[str] = []
    params: list[Any] = []
    for pattern in patterns:
        if pattern.anchor == "":
            return "1 = 1", []
        prefixes.update(anchor_prefixes(pattern.anchor))
        # Anchors below a directory or glob anchor (which ends in '/'), or below a file name,
        # which covers its subtree too: an exact prefix range.
        below = pattern.anchor if pattern.anchor.endswith("/") else pattern.anchor + "/"
        upper = prefix_upper_bound(below)
        if upper is None:
            ranges.append("(anchor >= ?)")
            params.append(below)
        else:
            ranges.append("(anchor >= ? AND anchor < ?)")
            params += [below, upper]
    ordered = sorted(prefixes)
    clause = " OR ".join([f"anchor IN ({placeholders(ordered)})", *ranges])
    return f"({clause})", [*ordered, *params]


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix`, or None when there is none.

    `anchor >= prefix AND anchor < bound` is then exactly "starts with prefix" as an index range.
    SQLite compares TEXT as UTF-8 bytes, which orders like code points, so the bound is the prefix
    with its last character incremented (trailing U+10FFFF dropped first; surrogates, which no
    stored path can hold, skipped). A sentinel such as `prefix + U+10FFFF` is not a bound: the
    name `prefix + U+10FFFF + "a"` sorts above it.
    """
    stripped = prefix.rstrip("\U0010ffff")
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000
    return stripped[:-1] + chr(following)


def overlapping(unit: Unit, table: str, pattern: LockPattern, *, live_after: float | None = None) -> list[Row]:
    """Rows of `locks` or `lock_waiters` whose path overlaps `pattern`, oldest first."""
    clause, params = candidate_clause([pattern])
    sql = f"SELECT * FROM {table} WHERE project = ? AND {clause}"
    args: list[Any] = [unit.project, *params]
    if live_after is not None:
        sql += " AND expires_at > ?"
        args.append(live_after)
    rows = unit.tx.all(sql + " ORDER BY id", args)
    return [r for r in rows if overlaps(pattern_of(r), pattern)]


def file_leases_that_may_be_directories(unit: Unit, pattern: LockPattern) -> list[Row]:
    """Leases and queued requests taken on a name as a *file* that `pattern` would overlap were
    that name a directory now: the names above `pattern`'s anchor and, for a glob, every file
    lease below its anchor (the glob may match below such a name)."""
    names = [pattern.anchor[:i] for i, ch in enumerate(pattern.anchor) if ch == "/"]
    found: list[Row] = []
    for table in ("locks", "lock_waiters"):
        if names:
            found += unit.tx.all(
                f"SELECT id, agent_id, path, '{table}' AS tbl FROM {table} WHERE project = ? AND kind = 'file'"
                f" AND anchor IN ({placeholders(names)})",
                [unit.project, *names],
            )
        if pattern.kind == "glob":
            clause, params = candidate_clause([pattern])
            found += unit.tx.all(
                f"SELECT id, agent_id, path, '{table}' AS tbl FROM {table} WHERE project = ? AND kind = 'file'"
                f" AND {clause}",
                [unit.project, *params],
            )
    return found


def lease_as_directory(unit: Unit, row: Row) -> None:
    """A lease (or queued request) on a name that has become a directory covers the directory now,
    as a new request for that name would; the holder keeps its token and expiry."""
    path = row["path"] + "/"
    table = row["tbl"]
    taken = unit.tx.one(
        f"SELECT id FROM {table} WHERE project = ? AND agent_id = ? AND path = ?", (unit.project, row["agent_id"], path)
    )
    if taken is not None and table == "locks":
        return  # the holder already leases the directory itself, which covers everything below
    unit.tx.execute(f"UPDATE {table} SET path = ?, kind = 'dir', anchor = ? WHERE id = ?", (path, path, row["id"]))


def next_token(unit: Unit) -> int:
    row = unit.tx.one(
        "INSERT INTO lock_counters (project, last_token) VALUES (?, 1) ON CONFLICT (project)"
        " DO UPDATE SET last_token = lock_counters.last_token + 1 RETURNING last_token",
        (unit.project,),
    )
    assert row is not None
    return int(row["last_token"])


def lock_dict(row: Row, now: float) -> dict[str, Any]:
    return {
        "agent_id": row["agent_id"],
        "path": row["path"],
        "mode": row["mode"],
        "kind": row["kind"],
        "fencing_token": row["token"],
        "acquired_at": iso(row["acquired_at"]),
        "expires_at": iso(row["expires_at"]),
        "expires_in_s": round(max(0.0, row["expires_at"] - now), 1),
    }


def waiter_dict(row: Row, now: float) -> dict[str, Any]:
    return {
        "agent_id": row["agent_id"],
        "path": row["path"],
        "mode": row["mode"],
        "queued_at": iso(row["created_at"]),
        "gives_up_at": iso(row["deadline"]),
        "position": None,
    }


def describe_holder(row: Row, target: str) -> str:
    until = f"until {iso(row['expires_at'])}"
    if row["path"] == target and row["mode"] != INTENT:
        how = "exclusively" if row["mode"] == EXCLUSIVE else "shared"
        return f"{target} is locked {how} by {row['agent_id']} {until}"
    where = "" if row["path"] == target else f" (overlaps {target})"
    mode = {INTENT: "an intent", EXCLUSIVE: "an exclusive", SHARED: "a shared"}[row["mode"]]
    return f"{row['agent_id']} holds {mode} lock on {row['path']}{where} {until}"


def warnings_for(others: Sequence[Row], target: str, requested: str) -> list[str]:
    out = []
    for row in others:
        text = describe_holder(row, target)
        if row["mode"] == INTENT:
            text += ": they plan to edit there — coordinate before you both change the same lines"
        elif requested == INTENT:
            text += (
                ": an intent lock does not stop them; wait for their release before editing"
                if row["mode"] == EXCLUSIVE
                else ": others read it; tell them before you change it"
            )
        else:
            text += " as well"
        out.append(text)
    return out


# -- grants, queue promotion, expiry ------------------------------------------------------------


def grant(
    unit: Unit,
    agent: str,
    pattern: LockPattern,
    mode: str,
    ttl: float,
    *,
    previous: Row | None,
    others: Sequence[Row],
    actor: str | None,
    waiter_id: int | None = None,
) -> dict[str, Any]:
    """Writes the grant (new lock, or a mode change of the agent's own) and emits lock.acquired."""
    token = next_token(unit)
    expires = unit.now + ttl
    unit.tx.execute(
        "INSERT INTO locks (project, agent_id, path, literal, kind, anchor, mode, token, ttl_s, acquired_at,"
        " renewed_at, expires_at, waiter_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (project, agent_id, path) DO UPDATE SET literal = excluded.literal, kind = excluded.kind,"
        " anchor = excluded.anchor, mode = excluded.mode, token = excluded.token, ttl_s = excluded.ttl_s,"
        " acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at,"
        " waiter_id = excluded.waiter_id",
        (
            unit.project,
            agent,
            pattern.path,
            int(pattern.literal),
            pattern.kind,
            pattern.anchor,
            mode,
            token,
            ttl,
            unit.now,
            unit.now,
            expires,
            waiter_id,
        ),
    )
    result: dict[str, Any] = {
        "granted": True,
        "path": pattern.path,
        "kind": pattern.kind,
        "mode": mode,
        "fencing_token": token,
        "expires_at": iso(expires),
        "ttl_s": ttl,
    }
    if previous is not None:
        result["previous_mode"] = previous["mode"]
    warnings = warnings_for(others, pattern.path, mode)
    if warnings:
        result["warnings"] = warnings
        result["others"] = [lock_dict(r, unit.now) for r in others]
    if waiter_id is not None:
        result["queued"] = True
    unit.emit(
        Kind.LOCK_ACQUIRED,
        actor=actor,
        audience=[agent, *(r["agent_id"] for r in others)],
        holder=agent,
        path=pattern.path,
        mode=mode,
        fencing_token=token,
        expires_at=iso(expires),
        waiter_id=waiter_id,
        previous_mode=previous["mode"] if previous is not None else None,
        warnings=warnings,
    )
    return result


def own_lock(unit: Unit, agent: str, path: str) -> Row | None:
    return unit.tx.one(
        "SELECT * FROM locks WHERE project = ? AND agent_id = ? AND path = ?", (unit.project, agent, path)
    )


def is_upgrade_in_place(own: Row | None, mode: str) -> bool:
    return own is not None and own["mode"] == SHARED and mode == EXCLUSIVE


def promote_waiters(unit: Unit, *, actor: str | None) -> int:
    """Grants every queued request that has become compatible, first come first served."""
    waiters = unit.tx.all(
        "SELECT * FROM lock_waiters WHERE project = ? AND deadline > ? ORDER BY id", (unit.project, unit.now)
    )
    if waiters and drop_waiters_of_gone_instances(unit):
        # A request whose server process died would be granted to nobody for a whole TTL.
        waiters = unit.tx.all(
            "SELECT * FROM lock_waiters WHERE project = ? AND deadline > ? ORDER BY id", (unit.project, unit.now)
        )
    granted = 0
    still_waiting: list[Claim] = []
    for w in waiters:
        claim = claim_of(w)
        holders = overlapping(unit, "locks", claim.pattern)
        others = [r for r in holders if r["agent_id"] != claim.agent_id]
        own = own_lock(unit, claim.agent_id, claim.pattern.path)
        earlier = [] if is_upgrade_in_place(own, claim.mode) else still_waiting
        if blockers(claim, [claim_of(r) for r in others], earlier):
            still_waiting.append(claim)
            continue
        unit.tx.execute("DELETE FROM lock_waiters WHERE id = ?", (w["id"],))
        grant(
            unit,
            claim.agent_id,
            claim.pattern,
            claim.mode,
            float(w["ttl_s"]),
            previous=own,
            others=others,
            actor=actor,
            waiter_id=int(w["id"]),
        )
        granted += 1
    return granted


def expire_due(unit: Unit, *, ghost_grace_s: float | None = None) -> int:
    """Frees leases past their expiry (telling each holder); with `ghost_grace_s` (the sweeper)
    also drops queue entries whose caller vanished that long after their deadline."""
    # Sorted here, not by ORDER BY: SQLite would rather read every lease in id order than sort the few
    # due ones, and this runs on every acquire and release.
    rows = sorted(
        unit.tx.all("SELECT * FROM locks WHERE expires_at <= ? AND project = ?", (unit.now, unit.project)),
        key=lambda r: int(r["id"]),
    )
    for row in rows:
        unit.tx.execute("DELETE FROM locks WHERE id = ?", (row["id"],))
        # actor None: nobody caused this, so the holder's own push channels wake it too.
        unit.emit(
            Kind.LOCK_EXPIRED,
            actor=None,
            audience=[row["agent_id"]],
            holder=row["agent_id"],
            path=row["path"],
            mode=row["mode"],
            fencing_token=row["token"],
            expired_at=iso(row["expires_at"]),
            reason=f"your {row['mode']} lock on {row['path']} expired at {iso(row['expires_at'])} without a "
            "renewal; anything you write there now is unprotected — acquire it again (new token)",
        )
    ghosts = 0
    if ghost_grace_s is not None:
        ghosts = unit.tx.execute(
            "DELETE FROM lock_waiters WHERE deadline <= ? AND project = ?", (unit.now - ghost_grace_s, unit.project)
        )
    if rows or ghosts:
        promote_waiters(unit, actor=None)
    return len(rows) + ghosts


def deny(
    unit: Unit,
    pattern: LockPattern,
    blocking: Sequence[Claim],
    holder_rows: Sequence[Row],
    waiter_rows: Sequence[Row],
    *,
    waited: float | None = None,
) -> dict[str, Any]:
    blocking_ids = {(c.agent_id, c.pattern.path, c.mode) for c in blocking}
    holders = [r for r in holder_rows if (r["agent_id"], r["path"], r["mode"]) in blocking_ids]
    ahead = [r for r in waiter_rows if (r["agent_id"], r["path"], r["mode"]) in blocking_ids]
    parts = [describe_holder(r, pattern.path) for r in holders]
    parts += [f"{r['agent_id']}'s {r['mode']} request for {r['path']} is queued ahead of you" for r in ahead]
    reason = "; ".join(parts) if parts else f"{pattern.path} is not available"
    if waited is not None:
        reason += f" — still so after waiting {waited:g} s"
    names = sorted({r["agent_id"] for r in holders})
    reason += (
        ". Pass wait_s to queue (you are granted automatically, first come first served), "
        + (f"message {', '.join(names)} with send_message, " if names else "")
        + "or lock something else."
    )
    out: dict[str, Any] = {
        "granted": False,
        "path": pattern.path,
        "holders": [
            {"agent_id": r["agent_id"], "mode": r["mode"], "path": r["path"], "expires_at": iso(r["expires_at"])}
            for r in holders
        ],
        "reason": reason,
    }
    if ahead:
        out["queued_ahead"] = [{"agent_id": r["agent_id"], "mode": r["mode"], "path": r["path"]} for r in ahead]
    return out


def emit_released(unit: Unit, row: Row, *, actor: str, reason: str, **extra: Any) -> None:
    others = [r["agent_id"] for r in overlapping(unit, "locks", pattern_of(row)) if r["agent_id"] != row["agent_id"]]
    waiters = [r["agent_id"] for r in overlapping(unit, "lock_waiters", pattern_of(row))]
    unit.emit(
        Kind.LOCK_RELEASED,
        actor=actor,
        audience=[row["agent_id"], *others, *waiters],
        holder=row["agent_id"],
        path=row["path"],
        mode=row["mode"],
        fencing_token=row["token"],
        reason=reason,
        **extra,
    )


def positions(rows: Sequence[Row], now: float) -> list[dict[str, Any]]:
    out = []
    for position, row in enumerate(rows, start=1):
        item = waiter_dict(row, now)
        item["position"] = position
        out.append(item)
    return out
