"""The git guard's checks (SPEC F-36): may this commit or push go ahead?

`huddle guard pre-commit` asks whether any staged path is leased exclusively by another agent;
`huddle guard pre-push` asks whether another agent announced a git operation (kind git_*) on the
branch being pushed. Who "another" is: the committer's declared id (`HUDDLE_AGENT`), else the
agents whose live client sessions run in this worktree (hooks record them). With several sessions in
one checkout and no HUDDLE_AGENT the guard cannot tell which one commits, so a lease or intent held
by any of them does not block (the answer notes it); anyone else's does. With no session there,
every exclusive lease and every git-operation intent is someone else's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from huddle.domain import validate
from huddle.domain.events import iso
from huddle.errors import InvalidInput
from huddle.service.context import placeholders
from huddle.service.repo_aliases import SymlinkLoop
from huddle.storage.base import Unit

if TYPE_CHECKING:
    from huddle.service.coordinator import Coordinator
    from huddle.service.hooks import ClaudeHookService

MAX_PATHS = 2000
GIT_KINDS = ("git_commit", "git_push", "git_rebase", "git_merge")


class GuardService:
    def __init__(self, coordinator: Coordinator, hooks: ClaudeHookService):
        self.c = coordinator
        self.hooks = hooks

    async def _who(self, agent_id: str | None, worktree: str | None) -> tuple[str | None, list[str]]:
        """(the committer when known, every agent that may be the committer)."""
        if agent_id:
            me = validate.identifier(agent_id, "agent_id")
            return me, [me]
        if worktree:
            agents = await self.hooks.agents_in(validate.text(worktree, "worktree", max_chars=4096))
            return (agents[0] if len(agents) == 1 else None), agents
        return None, []

    @staticmethod
    def _note(me: str | None, mine: set[str], candidates: list[str]) -> str:
        if me is not None or not mine:
            return ""
        return (
            f"\nnote: several agents work in this checkout ({', '.join(sorted(candidates))}); their own leases and "
            "intents did not block. Set HUDDLE_AGENT in each session to be exact."
        )

    async def pre_commit(
        self, paths: Sequence[str], agent_id: str | None = None, worktree: str | None = None
    ) -> dict[str, Any]:
        """Staged paths leased exclusively by another agent; `ok` is False when there is any."""
        items = validate.items(paths, "paths", max_items=MAX_PATHS)
        me, candidates = await self._who(agent_id, worktree)
        mine: set[str] = set()
        blocked = []
        for i, raw in enumerate(items):
            if not isinstance(raw, str):
                raise InvalidInput(f"paths[{i}] must be a string (a repo-relative path)", field=f"paths[{i}]")
            try:
                lock = await self.c.locks.check_lock(raw)
            except SymlinkLoop:
                continue  # a staged symlink that loops is committed as a link; no file, no lease, lies behind it
            for h in lock["holders"]:
                if h["mode"] != "exclusive" or h["expires_in_s"] <= 0:
                    continue
                if h["agent_id"] in candidates:
                    if me is None:
                        mine.add(h["agent_id"])
                else:
                    blocked.append(
                        {
                            "path": lock["path"],
                            "holder": h["agent_id"],
                            "lock_path": h["path"],
                            "expires_at": h["expires_at"],
                        }
                    )
        lines = [
            f"{b['path']} is leased exclusively by {b['holder']} until {b['expires_at']}"
            + ("" if b["lock_path"] == b["path"] else f" (lease on {b['lock_path']})")
            for b in blocked
        ]
        message = "\n".join(lines) + self._note(me, mine, candidates)
        return {"ok": not blocked, "agent_id": me, "blocked": blocked, "message": message.strip()}

    async def pre_push(self, branch: str, agent_id: str | None = None, worktree: str | None = None) -> dict[str, Any]:
        """Active git-operation intents (git_commit/push/rebase/merge) of other agents on `branch`."""
        name = validate.text(branch, "branch", max_chars=256)
        me, candidates = await self._who(agent_id, worktree)

        def read(unit: Unit) -> list[dict[str, Any]]:
            rows = unit.tx.all(
                "SELECT i.id, i.agent_id, i.kind, i.subject, i.expires_at, i.branch, a.branch AS agent_branch"
                " FROM intents i LEFT JOIN agents a ON a.project = i.project AND a.agent_id = i.agent_id"
                " WHERE i.project = ? AND i.status = 'active' AND i.expires_at > ?"
                f" AND i.kind IN ({placeholders(GIT_KINDS)})",
                (unit.project, unit.now, *GIT_KINDS),
            )
            return [
                {
                    "intent_id": f"I-{r['id']}",
                    "agent_id": r["agent_id"],
                    "kind": r["kind"],
                    "subject": r["subject"],
                    "branch": r["branch"] or r["agent_branch"],
                    "expires_at": iso(r["expires_at"]),
                }
                for r in rows
                if r["agent_id"] not in candidates and (r["branch"] or r["agent_branch"]) == name
            ]

        blocked = await self.c.store.read(read)
        message = "\n".join(
            f"{b['agent_id']} announced {b['kind']} on {name} ({b['intent_id']}: {b['subject']})"
            f" until {b['expires_at']}"
            for b in blocked
        )
        return {"ok": not blocked, "agent_id": me, "branch": name, "blocked": blocked, "message": message}
