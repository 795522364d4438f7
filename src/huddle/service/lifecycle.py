"""Ending an intent, shared by intents (complete, expire, withdraw) and threads (close, cancel)."""

from __future__ import annotations

from huddle.domain.events import Kind
from huddle.domain.ids import intent_ref, parse_ref
from huddle.storage.base import Unit


def end_intent(unit: Unit, number: int, status: str, *, actor: str | None) -> None:
    """Ends an intent (completed, withdrawn, expired) and drops it from the scoring index."""
    row = unit.tx.one("SELECT agent_id, subject, thread_id FROM intents WHERE id = ?", (number,))
    changed = unit.tx.execute(
        "UPDATE intents SET status = ?, ended_at = ?, end_reason = ? WHERE id = ? AND status = 'active'",
        (status, unit.now, status, number),
    )
    if not changed or row is None:
        return
    unit.tx.execute("DELETE FROM intent_paths WHERE intent_id = ?", (number,))
    unit.tx.execute("DELETE FROM intent_modules WHERE intent_id = ?", (number,))
    audience = [row["agent_id"]]
    if row["thread_id"]:
        audience += [
            r["agent_id"]
            for r in unit.tx.all(
                "SELECT agent_id FROM thread_members WHERE thread_id = ? ORDER BY agent_id",
                (parse_ref(row["thread_id"], "T", "thread_id"),),
            )
        ]
    unit.emit(
        Kind.INTENT_ENDED,
        actor=actor,
        audience=audience,
        intent_id=intent_ref(number),
        status=status,
        subject=row["subject"],
        owner=row["agent_id"],
    )
