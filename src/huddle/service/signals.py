"""Evidence for impact scoring, one provider per family of layers (SPEC F-11).

Every provider answers with indexed lookups keyed by *my* paths and modules, so the cost of an
announce depends on what I touch, not on how many agents, intents or events exist.
Later layers (locks L in service/locks.py; co-change 4, git operations 5 and merge conflicts M in
service/code_signals.py) are further providers registered in the ServiceContext; the scorer
itself never changes. Symbol awareness refines same-file evidence afterwards, in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from huddle.domain.ids import intent_ref
from huddle.domain.paths import module_prefixes, modules_related
from huddle.domain.scoring import Evidence, Layer
from huddle.service.context import ServiceContext, WorkRequest, placeholders
from huddle.storage.base import Row, Unit, joined_list

# (agent, evidence), or (agents, evidence) for a crowd one Evidence concerns alike (domain/scoring.py).
Found = Iterable[tuple[str, Evidence] | tuple[tuple[str, ...], Evidence]]


def _grouped(rows: Sequence[Row]) -> dict[tuple[str, int], list[Row]]:
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["agent_id"], row["intent_id"]), []).append(row)
    return groups


def _active_intent_paths(unit: Unit, paths: Sequence[str], role: str, me: str) -> list[Row]:
    if not paths:
        return []
    return unit.tx.all(
        f"SELECT p.path, p.agent_id, p.intent_id, p.symbols, i.subject FROM intent_paths p"
        f" JOIN intents i ON i.id = p.intent_id"
        f" WHERE p.project = ? AND p.role = ? AND p.path IN ({placeholders(paths)})"
        f" AND p.agent_id != ? AND i.expires_at > ?",
        (unit.project, role, *paths, me, unit.now),
    )


class IntentOverlap:
    """Layers 0a, 0b, 0c: my announced files against their announced files."""

    def __call__(self, unit: Unit, request: WorkRequest) -> Found:
        me = request.agent_id
        checks = (
            (request.target_files, "target", Layer.SAME_TARGET, "both announced work on {files}"),
            (
                request.depends_on_files,
                "target",
                Layer.MY_DEPENDENCY_TARGETED,
                "they are changing {files}, which your work depends on",
            ),
            (
                request.target_files,
                "depends",
                Layer.MY_TARGET_DEPENDED_ON,
                "you are changing {files}, which their work depends on",
            ),
        )
        for my_paths, their_role, layer, template in checks:
            for (agent_id, intent_id), rows in _grouped(_active_intent_paths(unit, my_paths, their_role, me)).items():
                files = tuple(sorted({r["path"] for r in rows}))
                evidence = Evidence(
                    layer,
                    Layer.SCORES[layer],
                    files,
                    template.format(files=", ".join(files)),
                    extra={"intent_id": intent_ref(intent_id), "subject": rows[0]["subject"]},
                )
                yield agent_id, evidence


class RecentEdits:
    """Layers 1 and 2: files they edited recently (or are editing right now)."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def __call__(self, unit: Unit, request: WorkRequest) -> Found:
        since = unit.now - self.ctx.settings.recent_edit_window_s
        for my_paths, layer, what in (
            (request.target_files, Layer.RECENT_EDIT, "a file you target"),
            (request.depends_on_files, Layer.RECENT_DEPENDENCY_EDIT, "a file your work depends on"),
        ):
            if not my_paths:
                continue
            # My paths' windows of edits (index ranges of project, path, ts), copied first and
            # then made distinct (service/files.py IN_WINDOW_FIRST). Asked for DISTINCT directly,
            # SQLite's planner walked every edit of the project in another index's order (5 ms on
            # 100,000 edits); without DISTINCT a file edited 20,000 times in the window came back as
            # 20,000 rows (20-30 ms building them, while the writer waits). The copy costs ~6 µs.
            edited = unit.tx.all(
                f"WITH e AS MATERIALIZED (SELECT agent_id, path FROM file_edits WHERE project = ?"
                f" AND path IN ({placeholders(my_paths)}) AND ts >= ? AND agent_id != ?)"
                " SELECT DISTINCT agent_id, path FROM e",
                (unit.project, *my_paths, since, request.agent_id),
            )
            by_agent: dict[str, set[str]] = {}
            for row in edited:
                by_agent.setdefault(row["agent_id"], set()).add(row["path"])
            minutes = round(self.ctx.settings.recent_edit_window_s / 60)
            for agent_id, files in sorted(by_agent.items()):
                names = ", ".join(sorted(files))
                yield (
                    agent_id,
                    Evidence(
                        layer,
                        Layer.SCORES[layer],
                        tuple(sorted(files)),
                        f"they edited {names} ({what}) in the last {minutes} min",
                    ),
                )
            if layer != Layer.RECENT_EDIT:
                continue
            in_flight = unit.tx.all(
                f"SELECT agent_id, path FROM working_files WHERE project = ? AND path IN ({placeholders(my_paths)})"
                f" AND expires_at > ? AND agent_id != ?",
                (unit.project, *my_paths, unit.now, request.agent_id),
            )
            flight: dict[str, set[str]] = {}
            for row in in_flight:
                flight.setdefault(row["agent_id"], set()).add(row["path"])
            for agent_id, files in flight.items():
                yield (
                    agent_id,
                    Evidence(
                        layer,
                        Layer.SCORES[layer],
                        tuple(sorted(files)),
                        f"they are editing {', '.join(sorted(files))} right now",
                        extra={"in_flight": True},
                    ),
                )


Sql = tuple[str, list[Any]]  # text with its parameters


def _related_selects(
    unit: Unit, table: str, modules: Sequence[str], me: str, columns: str, *, grouped: bool = False
) -> list[Sql]:
    """SELECTs of `columns` from `table` for the rows whose module may be related to one of mine: one
    on my prefixes, one index range per module for the modules below mine; `grouped` groups each by
    module. Separate statements, not one OR: under a GROUP BY, SQLite read all the project's rows in
    module order instead. When my modules nest, a row may come twice; the callers collect sets."""
    prefixes = sorted({p for m in modules for p in module_prefixes(m)})
    group = " GROUP BY module" if grouped else ""  # in index order: no sort
    live, live_params = "", []
    if table == "intent_modules":
        # Ended intents leave this table at once; an expired one only at the next sweep, so check
        # (row by row, by id: the intents table keeps every intent ever announced).
        live = f" AND EXISTS (SELECT 1 FROM intents WHERE intents.id = {table}.intent_id AND intents.expires_at > ?)"
        live_params = [unit.now]
    base = f"SELECT {columns} FROM {table} WHERE project = ?"
    on_prefixes = f"module IN ({placeholders(prefixes)})"
    if table == "intent_modules":
        # My own active intents sit in my own modules, one row each: `agent_id != ?` read them all
        # (2,000 of them took an announce 46 µs). The (project, module, agent_id) index skips them
        # as the two ranges of the other agents' ids, below and above mine, in one statement.
        first = [
            (f"{base} AND {on_prefixes} AND agent_id {op} ?{live}{group}", [unit.project, *prefixes, me, *live_params])
            for op in ("<", ">")
        ]
        selects = [(" UNION ALL ".join(sql for sql, _ in first), [a for _, args in first for a in args])]
    else:
        selects = [
            (f"{base} AND agent_id != ? AND {on_prefixes}{live}{group}", [unit.project, me, *prefixes, *live_params])
        ]
    return selects + [
        (
            f"{base} AND agent_id != ? AND module > ? AND module < ?{live}{group}",
            [unit.project, me, m, m + "\U0010ffff", *live_params],
        )
        for m in modules
    ]


def related_module_rows(unit: Unit, table: str, modules: Sequence[str], me: str) -> list[Row]:
    """Rows of `table` (agent_modules or intent_modules) whose module is related to one of mine.

    Related means equal, or one a segment-aligned prefix of the other.
    """
    if not modules:
        return []
    columns = "module, agent_id, intent_id" if table == "intent_modules" else "module, agent_id"
    rows = [row for sql, args in _related_selects(unit, table, modules, me, columns) for row in unit.tx.all(sql, args)]
    related = _judge(modules, {row["module"] for row in rows})
    return [row for row in rows if related[row["module"]]]


def related_module_agents(unit: Unit, table: str, modules: Sequence[str], me: str) -> dict[str, list[str]]:
    """module → the agents of `table` in it, for each module related to one of mine.

    One row per module, its agents joined by the database (agent ids hold no comma): a crowd of a
    thousand agents on one module is one row to read, not a thousand.
    """
    if not modules:
        return {}
    columns = f"module, {joined_list(unit.tx.dialect, 'agent_id')} AS agents"
    found: dict[str, list[str]] = {}
    for sql, params in _related_selects(unit, table, modules, me, columns, grouped=True):
        for row in unit.tx.all(sql, params):
            found.setdefault(row["module"], []).extend(row["agents"].split(","))
    related = _judge(modules, set(found))
    return {module: agents for module, agents in found.items() if related[module]}


def _judge(mine: Sequence[str], theirs: set[str]) -> dict[str, bool]:
    """Which of their modules are related to one of mine (each distinct module judged once)."""
    return {module: any(modules_related(module, m) for m in mine) for module in theirs}


class SameModule:
    """Layer 3: my modules against theirs (announced with an intent, or registered)."""

    def __call__(self, unit: Unit, request: WorkRequest) -> Found:
        by_module: dict[str, list[str]] = {}
        for table in ("intent_modules", "agent_modules"):
            for module, agents in related_module_agents(unit, table, request.modules, request.agent_id).items():
                by_module.setdefault(module, []).extend(agents)
        if len(by_module) == 1:
            # A crowd on one module: one Evidence for all, reported as one crowd (domain/scoring.py),
            # each agent once, though it may be there by its registration and by an intent.
            [(module, agents)] = by_module.items()
            return [(tuple(agents), self._evidence([module], request))]
        # Their module, or their modules when several: one crowd per set of modules.
        by_agent: dict[str, str | frozenset[str]] = {}
        for module, agents in by_module.items():
            for agent in agents:
                have = by_agent.setdefault(agent, module)
                if have != module:
                    by_agent[agent] = frozenset((have, module)) if isinstance(have, str) else have | {module}
        crowds: dict[str | frozenset[str], list[str]] = {}
        for agent_id, key in by_agent.items():
            crowds.setdefault(key, []).append(agent_id)
        return [
            (tuple(agents), self._evidence([key] if isinstance(key, str) else sorted(key), request))
            for key, agents in crowds.items()
        ]

    @staticmethod
    def _evidence(names: list[str], request: WorkRequest) -> Evidence:
        return Evidence(
            Layer.SAME_MODULE,
            Layer.SCORES[Layer.SAME_MODULE],
            (),
            f"they work in module {', '.join(names)}, related to yours ({', '.join(request.modules)})",
            extra={"modules": names},
        )
