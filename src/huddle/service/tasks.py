"""The task board (SPEC F-50 … F-52, F-54; seed 003): tasks with dependencies and atomic claims.

A task is *available* when it is pending and every dependency is done. Each task keeps a
`blocked` count of unfinished dependencies, maintained when a dependency completes, so the best
available task is one index lookup and a claim is one conditional UPDATE — never read-then-write,
so exactly one caller wins however many race (on PostgreSQL the inner SELECT adds
`FOR UPDATE SKIP LOCKED`). Tasks are rows in the database: they survive restarts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from huddle.domain import tasks as rules
from huddle.domain import validate
from huddle.domain.events import EVERYONE, Kind, iso
from huddle.errors import Conflict, Forbidden, InvalidInput, NotFound
from huddle.service.agents import touch
from huddle.service.context import ServiceContext, placeholders
from huddle.storage.base import Row, Unit

MAX_DESCRIPTION_CHARS = 10_000
MAX_OUTPUT_CHARS = 20_000
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_DEPENDENCIES = 100
MAX_BATCH = 500
PRIORITY_RANGE = (-1000, 1000)
LIST_LIMIT_RANGE = (1, 10_000)
_CLAIM_COLUMNS = "status = 'claimed', claimed_by = ?, claimed_at = ?, updated_at = ?, attempts = attempts + 1"


def task_dict(row: Row, deps: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """A task as agents see it; optional fields that are empty are left out (fewer tokens to read)."""
    available = row["status"] == rules.PENDING and row["blocked"] == 0
    out: dict[str, Any] = {
        "task_id": row["task_id"],
        "description": row["description"],
        "status": row["status"],
        "available": available,
        "priority": row["priority"],
        "attempts": row["attempts"],
        "waiting_on_dependencies": row["blocked"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    optional = {
        "payload": json.loads(row["payload"]) if row["payload"] is not None else None,
        "claimed_by": row["claimed_by"],
        "claimed_at": iso(row["claimed_at"]),
        "finished_at": iso(row["finished_at"]),
        "output": row["output"],
        "error": row["error"],
        "created_by": row["created_by"],
    }
    out.update((k, v) for k, v in optional.items() if v is not None)
    if deps is not None:
        out["depends_on"] = deps.get(row["task_id"], [])
    return out


def _deps_of(unit: Unit, task_ids: Sequence[str]) -> dict[str, list[str]]:
    if not task_ids:
        return {}
    rows = unit.tx.all(
        f"SELECT task_id, depends_on FROM task_deps WHERE project = ? AND task_id IN"
        f" ({placeholders(task_ids)}) ORDER BY depends_on",
        (unit.project, *task_ids),
    )
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["task_id"], []).append(row["depends_on"])
    return out


def _with_deps(unit: Unit, rows: Sequence[Row]) -> list[dict[str, Any]]:
    deps = _deps_of(unit, [r["task_id"] for r in rows])
    return [task_dict(r, deps) for r in rows]


def _audience(*agents: str | None) -> list[str]:
    return [a for a in agents if a]


def _make_available(unit: Unit, row: Row, actor: str | None) -> None:
    if row["blocked"] == 0:
        unit.emit(
            Kind.TASK_AVAILABLE,
            actor=actor,
            audience=[EVERYONE],
            task_id=row["task_id"],
            priority=row["priority"],
            description=row["description"][:200],
        )


def _requeue(unit: Unit, row: Row, *, actor: str | None, reason: str) -> None:
    """Puts an unfinished or failed task back on the board (status pending, unclaimed)."""
    unit.tx.execute(
        "UPDATE tasks SET status = 'pending', claimed_by = NULL, claimed_at = NULL, finished_at = NULL,"
        " updated_at = ? WHERE project = ? AND task_id = ?",
        (unit.now, unit.project, row["task_id"]),
    )
    unit.emit(
        Kind.TASK_RESET,
        actor=actor,
        audience=_audience(actor, row["claimed_by"], row["created_by"]),
        task_id=row["task_id"],
        previous_status=row["status"],
        previous_claimer=row["claimed_by"],
        reason=reason,
    )
    _make_available(unit, row, actor)


class TaskSpec:
    """One validated add_task request."""

    def __init__(self, raw: Mapping[str, Any], where: str):
        if not isinstance(raw, Mapping):
            raise InvalidInput(f"{where} must be an object with task_id and description", field=where)
        known = {"task_id", "description", "depends_on", "priority", "payload"}
        extra = sorted(set(raw) - known)
        if extra:
            raise InvalidInput(f"{where} has unknown field(s) {extra}; allowed: {sorted(known)}", field=where)
        prefix = f"{where}." if where else ""
        self.task_id = validate.identifier(raw.get("task_id"), f"{prefix}task_id")  # type: ignore[arg-type]
        self.description = validate.text(
            raw.get("description"), f"{prefix}description", max_chars=MAX_DESCRIPTION_CHARS
        )
        deps = validate.items(raw.get("depends_on"), f"{prefix}depends_on", max_items=MAX_DEPENDENCIES)
        self.depends_on = sorted({validate.identifier(d, f"{prefix}depends_on[{i}]") for i, d in enumerate(deps)})
        if self.task_id in self.depends_on:
            raise InvalidInput(
                f"task {self.task_id} depends on itself; remove it from depends_on", field=f"{prefix}depends_on"
            )
        priority = raw.get("priority")
        if isinstance(priority, float) and priority.is_integer():
            priority = int(priority)  # JSON Schema's integer: 2.0 is 2, as add_task takes it
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise InvalidInput(
                f"{prefix}priority must be a whole number (higher is claimed first)", field=f"{prefix}priority"
            )
        self.priority = int(validate.within(priority, f"{prefix}priority", PRIORITY_RANGE, default=0))
        payload = raw.get("payload")
        if payload is not None and not isinstance(payload, Mapping):
            raise InvalidInput(
                f'{prefix}payload must be a JSON object, e.g. {{"branch": "main"}}', field=f"{prefix}payload"
            )
        try:
            self.payload = None if payload is None else json.dumps(payload, separators=(",", ":"), sort_keys=True)
        except (TypeError, ValueError):
            raise InvalidInput(f"{prefix}payload must be plain JSON", field=f"{prefix}payload") from None
        if self.payload is not None and len(self.payload.encode()) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(
                f"{prefix}payload is larger than {MAX_PAYLOAD_BYTES // 1024} KiB; store a reference "
                "(a path or URL) instead",
                field=f"{prefix}payload",
            )

    def same_as(self, row: Row, deps: list[str]) -> bool:
        return (
            row["description"] == self.description
            and row["priority"] == self.priority
            and row["payload"] == self.payload
            and deps == self.depends_on
        )


class TaskService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def add(
        self,
        task_id: str,
        description: str,
        depends_on: list[str] | None = None,
        priority: int = 0,
        payload: Mapping[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> dict[str, Any]:
        """Adds one task; re-adding an identical task is a no-op (created: false).

        Raises InvalidInput for bad fields, unknown dependencies or a cycle, Conflict when the id
        exists with different content.
        """
        spec = TaskSpec(
            {
                "task_id": task_id,
                "description": description,
                "depends_on": depends_on,
                "priority": priority,
                "payload": payload,
            },
            "",
        )
        result = await self._add([spec], agent_id)
        return {"created": result["created"] == 1, "task": result["tasks"][0]}

    async def add_many(self, tasks: Sequence[Mapping[str, Any]], agent_id: str | None = None) -> dict[str, Any]:
        """Adds a batch atomically; tasks may depend on each other in any order (cycles refused)."""
        items = validate.items(tasks, "tasks", max_items=MAX_BATCH)
        if not items:
            raise InvalidInput("tasks is empty; pass a list of {task_id, description, depends_on?}", field="tasks")
        specs = [TaskSpec(item, f"tasks[{i}]") for i, item in enumerate(items)]
        seen: set[str] = set()
        for spec in specs:
            if spec.task_id in seen:
                raise InvalidInput(f"task {spec.task_id} appears twice in tasks; ids must be unique", field="tasks")
            seen.add(spec.task_id)
        return await self._add(specs, agent_id)

    async def _add(self, specs: list[TaskSpec], agent_id: str | None) -> dict[str, Any]:
        creator = validate.identifier(agent_id, "agent_id") if agent_id else None
        by_id = {s.task_id: s for s in specs}

        def txn(unit: Unit) -> dict[str, Any]:
            if creator:
                touch(unit, creator)
            ids = list(by_id)
            existing = {
                r["task_id"]: r
                for r in unit.tx.all(
                    f"SELECT * FROM tasks WHERE project = ? AND task_id IN ({placeholders(ids)})", (unit.project, *ids)
                )
            }
            existing_deps = _deps_of(unit, list(existing))
            for task, row in existing.items():
                if not by_id[task].same_as(row, existing_deps.get(task, [])):
                    raise Conflict(
                        f"task {task} already exists with a different description, priority, payload or"
                        " dependencies; pick another task_id (tasks are never edited in place)",
                        field="task_id",
                    )
            new = {t: s for t, s in by_id.items() if t not in existing}
            wanted = sorted({d for s in new.values() for d in s.depends_on if d not in by_id})
            found = (
                {
                    r["task_id"]: r["status"]
                    for r in unit.tx.all(
                        f"SELECT task_id, status FROM tasks WHERE project = ? AND task_id IN ({placeholders(wanted)})",
                        (unit.project, *wanted),
                    )
                }
                if wanted
                else {}
            )
            missing = rules.unknown(wanted, found)
            if missing:
                raise InvalidInput(
                    f"depends_on names unknown task(s) {', '.join(missing)}; add them first, or in the"
                    " same add_tasks call",
                    field="depends_on",
                )
            edges = {t: s.depends_on for t, s in new.items()}
            cycle = rules.find_cycle(edges)
            if cycle:
                raise InvalidInput(
                    f"these dependencies form a cycle: {' → '.join(cycle)}; remove one of them", field="depends_on"
                )
            status = {**found, **{t: r["status"] for t, r in existing.items()}}
            top = unit.tx.one("SELECT COALESCE(MAX(seq), 0) AS s FROM tasks WHERE project = ?", (unit.project,))
            seq = int(top["s"]) if top else 0
            for task in rules.topological(edges):
                spec = new[task]
                seq += 1
                blocked = sum(1 for d in spec.depends_on if status.get(d) != rules.DONE)
                status[task] = rules.PENDING
                unit.tx.execute(
                    "INSERT INTO tasks (project, task_id, seq, description, priority, payload, status, blocked,"
                    " created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                    (
                        unit.project,
                        task,
                        seq,
                        spec.description,
                        spec.priority,
                        spec.payload,
                        blocked,
                        creator,
                        unit.now,
                        unit.now,
                    ),
                )
                unit.tx.executemany(
                    "INSERT INTO task_deps (project, task_id, depends_on) VALUES (?, ?, ?)",
                    [(unit.project, task, d) for d in spec.depends_on],
                )
                unit.emit(
                    Kind.TASK_ADDED,
                    actor=creator,
                    audience=[EVERYONE],
                    task_id=task,
                    description=spec.description[:200],
                    priority=spec.priority,
                    depends_on=spec.depends_on,
                    available=blocked == 0,
                )
            rows = unit.tx.all(
                f"SELECT * FROM tasks WHERE project = ? AND task_id IN ({placeholders(ids)})", (unit.project, *ids)
            )
            order = {t: i for i, t in enumerate(ids)}
            rows.sort(key=lambda r: order[r["task_id"]])
            return {"created": len(new), "unchanged": len(existing), "tasks": _with_deps(unit, rows)}

        return await self.ctx.store.write(txn)

    async def list(self, status: str | None = None, limit: int = 500) -> dict[str, Any]:
        """Tasks in board order (oldest first), optionally one status, with counts per status."""
        wanted = validate.choice(status, "status", rules.STATUSES) if status else None
        count = int(validate.within(limit, "limit", LIST_LIMIT_RANGE, default=500))

        def read(unit: Unit) -> dict[str, Any]:
            sql, params = "SELECT * FROM tasks WHERE project = ?", [unit.project]
            if wanted:
                sql += " AND status = ?"
                params.append(wanted)
            rows = unit.tx.all(sql + " ORDER BY seq LIMIT ?", (*params, count))
            return {"tasks": _with_deps(unit, rows), **board_counts(unit)}

        return await self.ctx.store.read(read)

    async def available(self, limit: int = 100) -> dict[str, Any]:
        """Claimable tasks in the order claim_task would take them: highest priority, then oldest."""
        count = int(validate.within(limit, "limit", LIST_LIMIT_RANGE, default=100))

        def read(unit: Unit) -> dict[str, Any]:
            rows = unit.tx.all(
                "SELECT * FROM tasks WHERE project = ? AND status = 'pending' AND blocked = 0"
                " ORDER BY priority DESC, seq LIMIT ?",
                (unit.project, count),
            )
            return {"tasks": _with_deps(unit, rows), "count": len(rows)}

        return await self.ctx.store.read(read)

    async def claim(self, agent_id: str, task_id: str | None = None) -> dict[str, Any]:
        """Claims `task_id`, or the best available task: exactly one caller wins each task.

        Returns `{claimed: true, task}` or `{claimed: false, reason}`. Raises NotFound for an
        unknown task or agent.
        """
        agent = validate.identifier(agent_id, "agent_id")
        task = validate.identifier(task_id, "task_id") if task_id else None

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            if task is None:
                row = unit.tx.one(
                    f"UPDATE tasks SET {_CLAIM_COLUMNS} WHERE project = ? AND status = 'pending' AND blocked = 0"
                    " AND task_id = (SELECT task_id FROM tasks WHERE project = ? AND status = 'pending' AND blocked = 0"
                    " ORDER BY priority DESC, seq LIMIT 1) RETURNING *",
                    (agent, unit.now, unit.now, unit.project, unit.project),
                )
                if row is None:
                    return {"claimed": False, "reason": _nothing_available(unit)}
            else:
                row = unit.tx.one(
                    f"UPDATE tasks SET {_CLAIM_COLUMNS} WHERE project = ? AND task_id = ? AND status = 'pending'"
                    " AND blocked = 0 RETURNING *",
                    (agent, unit.now, unit.now, unit.project, task),
                )
                if row is None:
                    return _why_not(unit, task, agent)
            unit.emit(
                Kind.TASK_CLAIMED,
                actor=agent,
                audience=_audience(agent, row["created_by"]),
                task_id=row["task_id"],
                claimed_by=agent,
                attempt=row["attempts"],
            )
            return {"claimed": True, "task": _with_deps(unit, [row])[0]}

        return await self.ctx.store.write(txn)

    async def update(
        self, task_id: str, agent_id: str, status: str, output: str | None = None, error: str | None = None
    ) -> dict[str, Any]:
        """The claimer reports progress (in_progress), success (done) or failure (failed).

        `done` makes dependants whose other dependencies are done available. Raises NotFound,
        Forbidden when the caller is not the claimer, Conflict for a finished or unclaimed task.
        """
        task = validate.identifier(task_id, "task_id")
        agent = validate.identifier(agent_id, "agent_id")
        new = validate.choice(status, "status", rules.UPDATE_STATUSES)
        out_text = validate.text(output, "output", required=False, max_chars=MAX_OUTPUT_CHARS) if output else None
        err_text = validate.text(error, "error", required=False, max_chars=MAX_OUTPUT_CHARS) if error else None

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            row = _require(unit, task)
            if row["status"] in rules.UNFINISHED and row["claimed_by"] != agent:
                raise Forbidden(
                    f"task {task} is claimed by {row['claimed_by']}; only the claimer may update it", field="agent_id"
                )
            rules.check_update(task, row["status"], new)
            finished = unit.now if new in (rules.DONE, rules.FAILED) else None
            changed = unit.tx.execute(
                "UPDATE tasks SET status = ?, output = COALESCE(?, output), error = ?, finished_at = ?, updated_at = ?"
                " WHERE project = ? AND task_id = ? AND claimed_by = ? AND status IN ('claimed', 'in_progress')",
                (
                    new,
                    out_text,
                    err_text if new == rules.FAILED else None,
                    finished,
                    unit.now,
                    unit.project,
                    task,
                    agent,
                ),
            )
            if not changed:
                raise Conflict(f"task {task} changed meanwhile; get it with list_tasks and retry", field="task_id")
            unblocked: list[str] = []
            if new == rules.DONE:
                rows = unit.tx.all(
                    "UPDATE tasks SET blocked = blocked - 1, updated_at = ? WHERE project = ? AND task_id IN"
                    " (SELECT task_id FROM task_deps WHERE project = ? AND depends_on = ?) RETURNING *",
                    (unit.now, unit.project, unit.project, task),
                )
                for dependant in rows:
                    if dependant["blocked"] == 0 and dependant["status"] == rules.PENDING:
                        unblocked.append(dependant["task_id"])
                        _make_available(unit, dependant, agent)
            unit.emit(
                Kind.TASK_UPDATED,
                actor=agent,
                audience=_audience(agent, row["created_by"]),
                task_id=task,
                status=new,
                previous_status=row["status"],
                unblocked=sorted(unblocked),
            )
            return {
                "updated": True,
                "task": _with_deps(unit, [_require(unit, task)])[0],
                "unblocked": sorted(unblocked),
            }

        return await self.ctx.store.write(txn)

    async def reset(self, task_id: str, agent_id: str | None = None) -> dict[str, Any]:
        """Makes a failed or abandoned task available again (pending, unclaimed).

        Abandoned means claimed by an agent that is offline or gone — or by the caller itself.
        Raises Conflict for a done task or one an online agent is working on.
        """
        task = validate.identifier(task_id, "task_id")
        actor = validate.identifier(agent_id, "agent_id") if agent_id else None

        def txn(unit: Unit) -> dict[str, Any]:
            if actor:
                touch(unit, actor)
            row = _require(unit, task)
            if row["status"] == rules.PENDING:
                return {
                    "reset": False,
                    "task": _with_deps(unit, [row])[0],
                    "reason": f"task {task} is already pending"
                    + ("" if row["blocked"] == 0 else " (it waits for its dependencies)"),
                }
            if row["status"] == rules.DONE:
                raise Conflict(f"task {task} is done; done is final — add a follow-up task instead", field="task_id")
            if row["status"] in rules.UNFINISHED and row["claimed_by"] != actor:
                claimer = unit.tx.one(
                    "SELECT status, last_seen FROM agents WHERE project = ? AND agent_id = ?",
                    (unit.project, row["claimed_by"]),
                )
                if (
                    claimer is not None
                    and claimer["status"] == "online"
                    and claimer["last_seen"] >= self.ctx.online_since(unit.now)
                ):
                    raise Conflict(
                        f"task {task} is {row['status']} by {row['claimed_by']}, who is online; ask them"
                        " (send_message) — reset_task only takes back failed or abandoned tasks",
                        field="task_id",
                    )
            _requeue(unit, row, actor=actor, reason="reset")
            return {"reset": True, "task": _with_deps(unit, [_require(unit, task)])[0]}

        return await self.ctx.store.write(txn)

    def agent_gone(self, unit: Unit, agent_id: str, reason: str) -> None:
        """Agent-gone hook: its unfinished tasks go back on the board (offline or deregistered)."""
        rows = unit.tx.all(
            "SELECT * FROM tasks WHERE project = ? AND claimed_by = ? AND status IN"
            " ('claimed', 'in_progress') ORDER BY seq",
            (unit.project, agent_id),
        )
        for row in rows:
            _requeue(unit, row, actor=None, reason=f"claimer {agent_id} {reason}")

    def status_section(self, unit: Unit) -> dict[str, Any]:
        counts = board_counts(unit)
        active = unit.tx.all(
            "SELECT * FROM tasks WHERE project = ? AND status IN ('claimed', 'in_progress') ORDER BY seq LIMIT 100",
            (unit.project,),
        )
        return {**counts, "in_flight": [task_dict(r) for r in active]}


def board_counts(unit: Unit) -> dict[str, Any]:
    rows = unit.tx.all("SELECT status, COUNT(*) AS n FROM tasks WHERE project = ? GROUP BY status", (unit.project,))
    counts = dict.fromkeys(rules.STATUSES, 0)
    counts.update({r["status"]: int(r["n"]) for r in rows})
    available = unit.tx.one(
        "SELECT COUNT(*) AS n FROM tasks WHERE project = ? AND status = 'pending' AND blocked = 0", (unit.project,)
    )
    return {"counts": counts, "total": sum(counts.values()), "available": int(available["n"]) if available else 0}


def _require(unit: Unit, task: str) -> Row:
    row = unit.tx.one("SELECT * FROM tasks WHERE project = ? AND task_id = ?", (unit.project, task))
    if row is None:
        raise NotFound(f"task {task} does not exist; list_tasks shows the board", field="task_id")
    return row


def _nothing_available(unit: Unit) -> str:
    counts = board_counts(unit)["counts"]
    waiting = unit.tx.one(
        "SELECT COUNT(*) AS n FROM tasks WHERE project = ? AND status = 'pending' AND blocked > 0", (unit.project,)
    )
    blocked = int(waiting["n"]) if waiting else 0
    busy = counts[rules.CLAIMED] + counts[rules.IN_PROGRESS]
    return (
        f"no task is available: {blocked} pending task(s) wait for dependencies, {busy} are being worked on,"
        f" {counts[rules.FAILED]} failed (reset_task retries one); wait for a task.available event"
    )


def _why_not(unit: Unit, task: str, agent: str) -> dict[str, Any]:
    row = _require(unit, task)
    current = _with_deps(unit, [row])[0]
    if row["status"] in rules.UNFINISHED:
        if row["claimed_by"] == agent:  # a retried claim: the caller already has it
            return {"claimed": True, "task": current, "already_yours": True}
        return {
            "claimed": False,
            "task_id": task,
            "claimed_by": row["claimed_by"],
            "reason": f"task {task} is already claimed by {row['claimed_by']}; get_available_tasks lists free ones",
        }
    if row["status"] == rules.DONE:
        return {"claimed": False, "task_id": task, "reason": f"task {task} is already done"}
    if row["status"] == rules.FAILED:
        return {
            "claimed": False,
            "task_id": task,
            "reason": f"task {task} failed ({row['error'] or 'no error given'}); reset_task makes it claimable",
        }
    pending = [d for d in current["depends_on"] if _require(unit, d)["status"] != rules.DONE]
    return {
        "claimed": False,
        "task_id": task,
        "waiting_on": pending,
        "reason": f"task {task} waits for {', '.join(pending)} to be done; claim it when task.available says so",
    }
