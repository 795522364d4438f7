"""Intents: announce work, score its impact, open a consultation when work collides (F-10 … F-14)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from huddle.domain import impact_report, validate
from huddle.domain.events import Kind, iso
from huddle.domain.ids import intent_ref, parse_ref
from huddle.domain.paths import normalize_module
from huddle.domain.scoring import Evidence, Impacts, score_agents, verdict
from huddle.errors import Forbidden, InvalidInput, NotFound
from huddle.service.agents import heartbeat_on_read, require_agent, touch
from huddle.service.code_signals import SYMBOL_LAYERS, refine_with_symbols
from huddle.service.context import ServiceContext, WorkRequest, dumps, placeholders
from huddle.service.lifecycle import end_intent
from huddle.service.overseers import OVERSEER_PREFIX
from huddle.service.threads import NARROWED, open_thread, settle_after_intent_update
from huddle.storage.base import Row, Unit, joined_list, starts_with

INTENT_KINDS = (
    "edit",
    "refactor",
    "test",
    "build",
    "dependency_change",
    "git_commit",
    "git_push",
    "git_rebase",
    "git_merge",
)
MAX_TTL_S = 7 * 24 * 3600
TTL_RANGE = (1, MAX_TTL_S)


class IntentService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def _request(
        self,
        agent_id: str,
        target_files: Sequence[str] | None,
        depends_on_files: Sequence[str] | None = None,
        target_modules: Sequence[str] | None = None,
        target_symbols: Sequence[str] | None = None,
        kind: str = "edit",
        branch: str | None = None,
    ) -> WorkRequest:
        agent_id = validate.identifier(agent_id, "agent_id")
        kind = validate.choice(kind or "edit", "kind", INTENT_KINDS)
        targets = self.ctx.paths(target_files or [], "target_files")
        depends = tuple(p for p in self.ctx.paths(depends_on_files, "depends_on_files") if p not in targets)
        modules = tuple(
            sorted(
                {
                    normalize_module(m, field=f"target_modules[{i}]")
                    for i, m in enumerate(validate.items(target_modules, "target_modules"))
                }
            )
        )
        symbols = frozenset(
            validate.text(s, f"target_symbols[{i}]", max_chars=200)
            for i, s in enumerate(validate.items(target_symbols, "target_symbols"))
        )
        branch = validate.text(branch, "branch", required=False, max_chars=256)
        return WorkRequest(agent_id, kind, targets, depends, modules, symbols, branch=branch)

    def _score(self, unit: Unit, request: WorkRequest) -> Impacts:
        """Collects every provider's evidence, keeps online agents only, and scores them."""
        found: dict[str, list[Evidence]] = {}
        crowds: list[tuple[tuple[str, ...], Evidence]] = []
        for provider in self.ctx.signal_providers:
            for who, evidence in provider(unit, request):
                if not isinstance(who, str):
                    crowds.append((who, evidence))
                    continue
                have = found.get(who)
                if have is None:
                    found[who] = [evidence]
                else:
                    have.append(evidence)
        crowds = _single_out(found, crowds, request)
        found.pop(request.agent_id, None)  # my own work is no collision
        if not found and not crowds:
            return Impacts([])
        found = refine_with_symbols(unit, self.ctx, request, found)
        candidates = set(found).union(*(who for who, _ in crowds))
        online = _online(unit, self.ctx.online_since(unit.now), candidates)
        return score_agents(
            {a: e for a, e in found.items() if a in online},
            [(online.intersection(who), evidence) for who, evidence in crowds],
        )

    def _with_agent_context(self, unit: Unit, request: WorkRequest) -> WorkRequest:
        """Fills modules and branch from the registration when the request names none."""
        touch(unit, request.agent_id)
        return self._with_map_dependencies(unit, _with_registration(request, require_agent(unit, request.agent_id)))

    def _with_map_dependencies(self, unit: Unit, request: WorkRequest) -> WorkRequest:
        """An announce naming no depends_on_files depends on what the dependency map says its
        targets' modules depend on, so layers 0b, 0c and 2 work without the agent listing them."""
        derive = self.ctx.depends_from_map
        if request.depends_on_files or not request.target_files or derive is None:
            return request
        return replace(request, depends_on_files=derive(unit, request.target_files))

    def _consult(self, unit: Unit, req: WorkRequest, subject: str, number: int, impacts: Impacts) -> str | None:
        """Opens a consultation with every concerned agent, if any; returns its id."""
        concerned = impacts.of_category("concerned")
        if not concerned:
            return None
        return open_thread(
            unit,
            self.ctx,
            initiator=req.agent_id,
            subject=subject,
            intent_id=number,
            respondents=[i.agent_id for i in concerned],
            target_files=req.target_files,
            # The thread is about its respondents: their impacts, not every gray zone around them.
            impacts=[i.to_dict() for i in concerned],
        )

    async def announce(
        self,
        agent_id: str,
        subject: str,
        target_files: Sequence[str],
        plan: str | None = None,
        kind: str = "edit",
        depends_on_files: Sequence[str] | None = None,
        target_modules: Sequence[str] | None = None,
        target_symbols: Sequence[str] | None = None,
        ttl_s: float | None = None,
        branch: str | None = None,
    ) -> dict[str, Any]:
        """Records an intent, scores it against every online agent, and opens a thread at ≥ 90.

        Returns `{intent_id, verdict, thread_id, impacts, impact_summary}`: the strongest impacts in
        full, counts over all of them (domain/impact_report.py). Raises NotFound for an unknown agent
        and InvalidInput for bad fields; nothing is written in either case. A git_* intent may name
        no files: it targets `branch` (default: the branch the agent registered with).
        """
        request = self._request(agent_id, target_files, depends_on_files, target_modules, target_symbols, kind, branch)
        subject = validate.text(subject, "subject", max_chars=500)
        plan = validate.text(plan, "plan", required=False)
        if not request.target_files and not request.modules and not request.kind.startswith("git_"):
            raise InvalidInput(
                "target_files is empty; list the files you will change (or target_modules)", field="target_files"
            )
        ttl = validate.within(ttl_s, "ttl_s", TTL_RANGE, default=self.ctx.settings.intent_ttl_s)

        def txn(unit: Unit) -> dict[str, Any]:
            req = _scoped(self._with_agent_context(unit, request))
            impacts = self._score(unit, req)
            outcome = verdict(impacts)
            told = impact_report.report(impacts)
            number = unit.tx.insert(
                "INSERT INTO intents (project, agent_id, subject, plan, kind, status, created_at, expires_at,"
                " branch, target_files, depends_on_files, target_modules, target_symbols, verdict, impacts)"
                " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    unit.project,
                    req.agent_id,
                    subject,
                    plan,
                    req.kind,
                    unit.now,
                    unit.now + ttl,
                    req.branch,
                    *_scored_columns(req, outcome, told.stored),
                ),
                "id",
            )
            _index(unit, number, req)
            thread_id = self._consult(unit, req, subject, number, impacts)
            if thread_id is not None:
                unit.tx.execute("UPDATE intents SET thread_id = ? WHERE id = ?", (thread_id, number))
            ref = intent_ref(number)
            unit.emit(
                Kind.INTENT_ANNOUNCED,
                actor=req.agent_id,
                audience=[req.agent_id, *impacts.agent_ids(skip="pass")],
                intent_id=ref,
                subject=subject,
                kind=req.kind,
                target_files=list(req.target_files),
                depends_on_files=list(req.depends_on_files),
                target_modules=list(req.modules),
                thread_id=thread_id,
                verdict=outcome,
                max_score=impacts.max_score,
            )
            for group in impact_report.awareness_groups(impacts):
                unit.emit(
                    Kind.IMPACT_AWARENESS,
                    actor=req.agent_id,
                    audience=[req.agent_id, *group.agents],
                    intent_id=ref,
                    subject=subject,
                    # One agent: named as before. A group: its size; the audience names its members.
                    other_agent=group.agents[0] if len(group.agents) == 1 else None,
                    affected=len(group.agents),
                    score=group.score,
                    category=group.category,
                    evidence=group.evidence,
                )
            return {
                "intent_id": ref,
                "verdict": outcome,
                "thread_id": thread_id,
                "impacts": told.shown,
                "impact_summary": told.summary,
                "expires_at": iso(unit.now + ttl),
                "next": _next_step(outcome, thread_id),
            }

        return await self.ctx.store.write(txn)

    async def check_conflicts(
        self,
        agent_id: str,
        target_files: Sequence[str],
        kind: str = "edit",
        depends_on_files: Sequence[str] | None = None,
        target_modules: Sequence[str] | None = None,
        target_symbols: Sequence[str] | None = None,
        branch: str | None = None,
        *,
        limit: int | None = impact_report.TOP_IMPACTS,
    ) -> dict[str, Any]:
        """The announce scoring as a dry run: same answer, nothing written (F-14).

        `limit` is how many impacts are shown in full (None: all, for callers inside the server)."""
        request = self._request(agent_id, target_files, depends_on_files, target_modules, target_symbols, kind, branch)

        def read(unit: Unit) -> dict[str, Any]:
            req = _scoped(
                self._with_map_dependencies(unit, _with_registration(request, require_agent(unit, request.agent_id)))
            )
            impacts = self._score(unit, req)
            outcome = verdict(impacts)
            told = impact_report.report(impacts, limit)
            return {
                "verdict": outcome,
                "safe_to_proceed": outcome == "proceed",
                "impacts": told.shown,
                "impact_summary": told.summary,
            }

        result = await self.ctx.store.read(read)
        await heartbeat_on_read(self.ctx, request.agent_id)
        return result

    async def complete(self, agent_id: str, intent_id: str) -> dict[str, Any]:
        """Ends an active intent of the caller's: its files stop counting for scoring."""
        number = parse_ref(intent_id, "I", "intent_id")

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent_id)
            row = unit.tx.one(
                "SELECT agent_id, status FROM intents WHERE id = ? AND project = ?", (number, unit.project)
            )
            if row is None:
                raise NotFound(
                    f"intent {intent_ref(number)} does not exist; list yours with coordinator_status", field="intent_id"
                )
            if row["agent_id"] != agent_id:
                raise Forbidden(
                    f"intent {intent_ref(number)} belongs to {row['agent_id']}, not {agent_id}", field="intent_id"
                )
            if row["status"] != "active":
                return {"intent_id": intent_ref(number), "status": row["status"], "changed": False}
            end_intent(unit, number, "completed", actor=agent_id)
            return {"intent_id": intent_ref(number), "status": "completed", "changed": True}

        return await self.ctx.store.write(txn)

    async def list_intents(self, agent_id: str | None = None, active_only: bool = True) -> dict[str, Any]:
        """Intents, newest first (at most 500), optionally one agent's and only the live ones."""

        def read(unit: Unit) -> dict[str, Any]:
            sql = "SELECT * FROM intents WHERE project = ?"
            params: list[Any] = [unit.project]
            if active_only:
                sql += " AND status = 'active' AND expires_at > ?"
                params.append(unit.now)
            if agent_id:
                sql += " AND agent_id = ?"
                params.append(validate.identifier(agent_id, "agent_id"))
            rows = unit.tx.all(sql + " ORDER BY id DESC LIMIT 500", params)
            return {"intents": [intent_dict(r) for r in rows]}

        return await self.ctx.store.read(read)

    async def update(
        self,
        agent_id: str,
        intent_id: str,
        subject: str | None = None,
        plan: str | None = None,
        target_files: Sequence[str] | None = None,
        depends_on_files: Sequence[str] | None = None,
        target_modules: Sequence[str] | None = None,
        target_symbols: Sequence[str] | None = None,
        ttl_s: float | None = None,
    ) -> dict[str, Any]:
        """Changes an active intent of the caller's and scores it again (F-18).

        Fields left out keep their value. A new collision opens a thread when the intent has no
        active one. An active thread stays open while one of its respondents still collides; when
        the update removes every such collision the thread resolves ("initiator narrowed the intent;
        no collision remains"), `thread_id` is null and `resolved_thread_id` names it. Who collided
        before, who collides now and the thread's members all get intent.updated. Returns the same
        shape as `announce`.
        """
        number = parse_ref(intent_id, "I", "intent_id")
        agent_id = validate.identifier(agent_id, "agent_id")
        new_subject = validate.text(subject, "subject", max_chars=500, required=False)
        new_plan = validate.text(plan, "plan", required=False)
        ttl = None if ttl_s is None else validate.within(ttl_s, "ttl_s", TTL_RANGE, default=0)

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent_id)
            row = unit.tx.one("SELECT * FROM intents WHERE id = ? AND project = ?", (number, unit.project))
            ref = intent_ref(number)
            if row is None:
                raise NotFound(f"intent {ref} does not exist; list_intents shows yours", field="intent_id")
            if row["agent_id"] != agent_id:
                raise Forbidden(f"intent {ref} belongs to {row['agent_id']}, not {agent_id}", field="intent_id")
            if row["status"] != "active" or row["expires_at"] <= unit.now:
                raise InvalidInput(f"intent {ref} is no longer active; announce_work again", field="intent_id")

            def kept(given: Sequence[str] | None, column: str) -> Sequence[str]:
                return given if given is not None else list(json.loads(row[column]))

            req = self._with_agent_context(
                unit,
                self._request(
                    agent_id,
                    kept(target_files, "target_files"),
                    kept(depends_on_files, "depends_on_files"),
                    kept(target_modules, "target_modules"),
                    kept(target_symbols, "target_symbols"),
                    row["kind"],
                    row["branch"] or None,
                ),
            )
            if not req.target_files and not req.modules and not req.kind.startswith("git_"):
                raise InvalidInput("target_files would be empty; complete_work ends an intent", field="target_files")
            _scoped(req)
            impacts = self._score(unit, req)
            outcome = verdict(impacts)
            told = impact_report.report(impacts)
            title = new_subject or row["subject"]
            expires_at = unit.now + ttl if ttl is not None else row["expires_at"]
            unit.tx.execute("DELETE FROM intent_paths WHERE intent_id = ?", (number,))
            unit.tx.execute("DELETE FROM intent_modules WHERE intent_id = ?", (number,))
            _index(unit, number, req)
            thread_id = row["thread_id"]
            resolved_thread: str | None = None
            members: list[str] = []
            if thread_id is not None:
                concerned = set(impacts.agent_ids(only="concerned"))
                resolved, members = settle_after_intent_update(unit, thread_id, concerned, agent_id)
                if resolved:  # narrowed away from every collision that opened it
                    resolved_thread, thread_id = thread_id, None
            live_thread = thread_id is not None and unit.tx.one(
                "SELECT 1 FROM threads WHERE id = ? AND status IN ('open', 'resolving')",
                (parse_ref(thread_id, "T", "thread_id"),),
            )
            if not live_thread:
                thread_id = self._consult(unit, req, title, number, impacts) or thread_id
            # Everyone the change may concern: who collided before, who collides now, the thread's members.
            before = impact_report.stored_agents(json.loads(row["impacts"] or "[]"))
            after = impacts.agent_ids(skip="pass")
            unit.tx.execute(
                "UPDATE intents SET subject = ?, plan = ?, target_files = ?, depends_on_files = ?, target_modules = ?,"
                " target_symbols = ?, verdict = ?, impacts = ?, expires_at = ?, thread_id = ? WHERE id = ?",
                (
                    title,
                    new_plan if plan is not None else row["plan"],
                    *_scored_columns(req, outcome, told.stored),
                    expires_at,
                    thread_id,
                    number,
                ),
            )
            unit.emit(
                Kind.INTENT_UPDATED,
                actor=agent_id,
                audience=list(dict.fromkeys([agent_id, *before, *after, *members])),
                intent_id=ref,
                subject=title,
                target_files=list(req.target_files),
                thread_id=thread_id,
                resolved_thread_id=resolved_thread,
                verdict=outcome,
                max_score=impacts.max_score,
            )
            result = {
                "intent_id": ref,
                "verdict": outcome,
                "thread_id": thread_id,
                "impacts": told.shown,
                "impact_summary": told.summary,
                "expires_at": iso(expires_at),
                "next": _next_step(outcome, thread_id),
            }
            if resolved_thread:
                result["resolved_thread_id"] = resolved_thread
                result["next"] = (
                    f"Your update removed every collision that opened {resolved_thread}; it is resolved"
                    f" ({NARROWED}) and its members are told. " + result["next"]
                )
            return result

        return await self.ctx.store.write(txn)

    def expire(self, unit: Unit) -> int:
        """Sweeper step: intents past their TTL end as `expired`."""
        # Sorted here, not by ORDER BY: SQLite would rather read every intent ever announced in id order
        # than sort the few due ones (the index of active intents by expiry is what keeps this small).
        rows = sorted(
            unit.tx.all(
                "SELECT id, agent_id FROM intents WHERE status = 'active' AND expires_at <= ? AND project = ?",
                (unit.now, unit.project),
            ),
            key=lambda r: int(r["id"]),
        )
        for row in rows:
            end_intent(unit, int(row["id"]), "expired", actor=row["agent_id"])
        return len(rows)


ONLINE_BY_ID_UP_TO = 256


def _single_out(
    found: dict[str, list[Evidence]], crowds: list[tuple[tuple[str, ...], Evidence]], request: WorkRequest
) -> list[tuple[tuple[str, ...], Evidence]]:
    """Crowds whose members have no other evidence; a member with more (its own, or a second
    crowd's, or evidence symbol awareness may refine) moves to `found` with all of it."""
    if not crowds:
        return crowds
    seen, twice = set(found), {request.agent_id}
    for who, evidence in crowds:
        if request.symbols and evidence.layer in SYMBOL_LAYERS:
            twice.update(who)  # refine_with_symbols looks at each agent of these
        else:
            members = set(who)
            twice |= members & seen
            seen |= members
    kept = []
    for who, evidence in crowds:
        moved = twice.intersection(who)
        for agent in moved:
            found.setdefault(agent, []).append(evidence)
        kept.append((tuple(a for a in who if a not in moved) if moved else who, evidence))
    return kept


def _online(unit: Unit, since: float, candidates: Collection[str]) -> set[str]:
    """Which candidates are online agents. A person at the dashboard (an overseer) is never a party
    to a collision: only agents are scored.

    Up to ONLINE_BY_ID_UP_TO are looked up by id; a crowd by one index range over the project's
    online agents instead (the agent id is in that index), joined into one string by the database:
    binding a long IN list costs more per id than reading an index entry, and at the scale Huddle
    serves (SPEC F-98: 1,000 agents) that range is no longer than a few such lists."""
    overseer, overseer_args = starts_with("agent_id", OVERSEER_PREFIX)
    sql = f"FROM agents WHERE project = ? AND status = 'online' AND last_seen >= ? AND NOT {overseer}"
    if len(candidates) > ONLINE_BY_ID_UP_TO:
        row = unit.tx.one(
            f"SELECT {joined_list(unit.tx.dialect, 'agent_id')} AS ids {sql}", (unit.project, since, *overseer_args)
        )
        online = set(row["ids"].split(",")) if row is not None and row["ids"] else set()
        return online.intersection(candidates)
    ids = sorted(candidates)
    return {
        r["agent_id"]
        for r in unit.tx.all(
            f"SELECT agent_id {sql} AND agent_id IN ({placeholders(ids)})", (unit.project, since, *overseer_args, *ids)
        )
    }


def _scoped(request: WorkRequest) -> WorkRequest:
    """A git_* intent needs something to score against: a branch (its own or the registration's),
    files or modules. Without any it would silently concern no one, so it is refused."""
    if request.kind.startswith("git_") and not request.branch and not request.target_files and not request.modules:
        raise InvalidInput(
            f"a {request.kind} intent needs a branch: give branch, or register_agent with one"
            f" ({request.agent_id} registered with none), or list target_files",
            field="branch",
        )
    return request


def _with_registration(request: WorkRequest, agent: Row) -> WorkRequest:
    """Modules and branch from the agent's registration where the request names none."""
    return replace(
        request,
        modules=request.modules or tuple(json.loads(agent["modules"])),
        branch=request.branch or agent["branch"],
    )


def _scored_columns(req: WorkRequest, outcome: str, impacts: list[dict[str, Any]]) -> tuple[str, ...]:
    """target_files, depends_on_files, target_modules, target_symbols, verdict, impacts — as stored."""
    return (
        dumps(req.target_files),
        dumps(req.depends_on_files),
        dumps(req.modules),
        dumps(sorted(req.symbols)),
        outcome,
        dumps(impacts),
    )


def _index(unit: Unit, number: int, req: WorkRequest) -> None:
    """The scoring index rows of an active intent: its paths and modules."""
    symbols = dumps(sorted(req.symbols))
    unit.tx.executemany(
        "INSERT INTO intent_paths (project, path, role, intent_id, agent_id, symbols) VALUES (?, ?, ?, ?, ?, ?)",
        [(unit.project, p, "target", number, req.agent_id, symbols) for p in req.target_files]
        + [(unit.project, p, "depends", number, req.agent_id, "[]") for p in req.depends_on_files],
    )
    unit.tx.executemany(
        "INSERT INTO intent_modules (project, module, intent_id, agent_id) VALUES (?, ?, ?, ?)",
        [(unit.project, m, number, req.agent_id) for m in req.modules],
    )


def withdraw_agent_intents(unit: Unit, agent_id: str, reason: str) -> None:
    """Agent-gone hook: a deregistered agent's intents are withdrawn (offline ones just stop scoring)."""
    if reason != "deregistered":
        return
    for row in unit.tx.all(
        "SELECT id FROM intents WHERE project = ? AND agent_id = ? AND status = 'active' ORDER BY id",
        (unit.project, agent_id),
    ):
        end_intent(unit, int(row["id"]), "withdrawn", actor=agent_id)


def intent_dict(row: Any) -> dict[str, Any]:
    return {
        "intent_id": intent_ref(row["id"]),
        "agent_id": row["agent_id"],
        "subject": row["subject"],
        "plan": row["plan"],
        "kind": row["kind"],
        "status": row["status"],
        "target_files": json.loads(row["target_files"]),
        "depends_on_files": json.loads(row["depends_on_files"]),
        "target_modules": json.loads(row["target_modules"]),
        "target_symbols": json.loads(row["target_symbols"]),
        "verdict": row["verdict"],
        "thread_id": row["thread_id"],
        "created_at": iso(row["created_at"]),
        "expires_at": iso(row["expires_at"]),
    }


def _next_step(outcome: str, thread_id: str | None) -> str:
    if outcome == "consult":
        return (
            f"Consultation {thread_id} is open: do not edit the contested files yet. Read it (get_thread), "
            "post context, and propose or approve a resolution."
        )
    if outcome == "caution":
        return (
            "Related work is in progress nearby; proceed carefully and say so in a message if you change shared parts."
        )
    return "No conflicting work; proceed. Call complete_work when done."
