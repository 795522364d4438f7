"""Scoring from code intelligence: symbols (F-15), co-change 4 (F-16), git operations 5, merges M (F-17).

All of it reads tables the background analysis wrote (analysis/runner.py) by index, keyed by my
paths, my branch or my agent id: no parsing and no git on the request path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from huddle.analysis.symbols import Definition, resolve_names, symbols_for_ranges
from huddle.domain.ids import intent_ref
from huddle.domain.scoring import Evidence, Layer
from huddle.domain.symbols import Span, judge_symbols
from huddle.service.context import ServiceContext, WorkRequest, placeholders
from huddle.service.signals import Found
from huddle.storage.base import Row, Unit

SYMBOL_LAYERS = (Layer.SAME_TARGET, Layer.RECENT_EDIT)
GIT_KIND = "git_%"  # the partial index intents_active_git is declared with this very predicate


def _definitions(unit: Unit, paths: Sequence[str]) -> dict[str, list[Definition]]:
    out: dict[str, list[Definition]] = {}
    if not paths:
        return out
    for row in unit.tx.all(
        "SELECT path, name, kind, start_line, end_line FROM symbol_defs WHERE project = ?"
        f" AND path IN ({placeholders(paths)})",
        (unit.project, *paths),
    ):
        out.setdefault(row["path"], []).append(Definition(row["name"], row["kind"], row["start_line"], row["end_line"]))
    return out


def refine_with_symbols(
    unit: Unit, ctx: ServiceContext, request: WorkRequest, found: dict[str, list[Evidence]]
) -> dict[str, list[Evidence]]:
    """The one place symbol awareness applies: same-file 100s (layers 0a and 1) against each agent.

    My side is the announced target_symbols; theirs is what they announced for the file plus the
    definitions their logged or in-flight edit ranges fall in. An edit without ranges keeps 100.
    """
    if not request.symbols:
        return found
    candidates = {
        path
        for items in found.values()
        for e in items
        if e.layer in SYMBOL_LAYERS and e.score >= 100
        for path in e.files
    }
    if not candidates:
        return found
    files = sorted(candidates)
    agents = sorted(found)
    defs = _definitions(unit, files)
    mine = {path: resolve_names(defs.get(path, []), sorted(request.symbols)) for path in files}
    theirs: dict[str, dict[str, list[Span]]] = {}
    for row in unit.tx.all(
        f"SELECT p.agent_id, p.path, p.symbols FROM intent_paths p JOIN intents i ON i.id = p.intent_id"
        f" WHERE p.project = ? AND p.role = 'target' AND p.path IN ({placeholders(files)})"
        f" AND p.agent_id IN ({placeholders(agents)}) AND i.expires_at > ?",
        (unit.project, *files, *agents, unit.now),
    ):
        names = json.loads(row["symbols"])
        theirs.setdefault(row["agent_id"], {}).setdefault(row["path"], []).extend(
            resolve_names(defs.get(row["path"], []), names)
        )
    since = unit.now - ctx.settings.recent_edit_window_s
    for row in unit.tx.all(
        f"SELECT agent_id, path, ranges, symbols FROM file_edits WHERE project = ? AND path IN ({placeholders(files)})"
        f" AND ts >= ? AND agent_id IN ({placeholders(agents)})",
        (unit.project, *files, since, *agents),
    ):
        spans = theirs.setdefault(row["agent_id"], {}).setdefault(row["path"], [])
        spans += symbols_for_ranges(defs.get(row["path"], []), json.loads(row["ranges"]))
        spans += resolve_names(defs.get(row["path"], []), json.loads(row["symbols"]))
    unknown = _edit_without_ranges(unit, files, agents, since)
    # In-flight edits (start_editing, the hooks' PreToolUse) carry the lines they will touch when known.
    for row in unit.tx.all(
        f"SELECT agent_id, path, ranges FROM working_files WHERE project = ? AND path IN ({placeholders(files)})"
        f" AND agent_id IN ({placeholders(agents)}) AND expires_at > ?",
        (unit.project, *files, *agents, unit.now),
    ):
        ranges = json.loads(row["ranges"])
        if not ranges:
            unknown.add(row["agent_id"])
            continue
        spans = theirs.setdefault(row["agent_id"], {}).setdefault(row["path"], [])
        spans += symbols_for_ranges(defs.get(row["path"], []), ranges)
    for agent_id in unknown:
        theirs.pop(agent_id, None)  # an edit with no ranges could be anywhere in the file
    refined: dict[str, list[Evidence]] = {}
    for agent_id, items in found.items():
        refined[agent_id] = [
            judge_symbols(e, mine, theirs.get(agent_id, {})) if e.layer in SYMBOL_LAYERS else e for e in items
        ]
    return refined


def _edit_without_ranges(unit: Unit, paths: Sequence[str], agents: Sequence[str], since: float) -> set[str]:
    """Agents with a recent edit of one of `paths` that logged no ranges: nothing proves it apart."""
    rows = unit.tx.all(
        f"SELECT DISTINCT agent_id FROM file_edits WHERE project = ? AND path IN ({placeholders(paths)})"
        f" AND ts >= ? AND agent_id IN ({placeholders(agents)}) AND ranges = '[]' AND symbols = '[]'",
        (unit.project, *paths, since, *agents),
    )
    return {r["agent_id"] for r in rows}


class CoChange:
    """Layer 4: a file I target is usually committed together with a file they work on."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def __call__(self, unit: Unit, request: WorkRequest) -> Found:
        mine = request.target_files
        if not mine:
            return
        pairs = unit.tx.all(
            "SELECT path_a, path_b, together, commits FROM cochange WHERE project = ?"
            f" AND path_a IN ({placeholders(mine)})",
            (unit.project, *mine),
        )
        partners: dict[str, list[Row]] = {}
        for row in pairs:
            if row["path_b"] not in mine:
                partners.setdefault(row["path_b"], []).append(row)
        if not partners:
            return
        others = sorted(partners)
        since = unit.now - self.ctx.settings.recent_edit_window_s
        rows = unit.tx.all(
            f"SELECT p.agent_id, p.path FROM intent_paths p JOIN intents i ON i.id = p.intent_id WHERE p.project = ?"
            f" AND p.role = 'target' AND p.path IN ({placeholders(others)}) AND p.agent_id != ? AND i.expires_at > ?"
            f" UNION SELECT agent_id, path FROM file_edits WHERE project = ? AND path IN ({placeholders(others)})"
            f" AND ts >= ? AND agent_id != ?",
            (unit.project, *others, request.agent_id, unit.now, unit.project, *others, since, request.agent_id),
        )
        by_agent: dict[str, set[str]] = {}
        for row in rows:
            by_agent.setdefault(row["agent_id"], set()).add(row["path"])
        for agent_id, theirs in by_agent.items():
            links = [
                {
                    "file": r["path_a"],
                    "with": path,
                    "together": r["together"],
                    "commits": r["commits"],
                    "p": round(r["together"] / r["commits"], 3),
                }
                for path in sorted(theirs)
                for r in partners[path]
            ]
            best = max(links, key=lambda link: link["p"])
            score = 60 if best["p"] > 0.5 else 40
            yield (
                agent_id,
                Evidence(
                    Layer.CO_CHANGE,
                    score,
                    tuple(sorted(theirs)),
                    f"{best['file']} and {best['with']} (which they work on) changed together in"
                    f" {best['together']} of {best['commits']} commits touching {best['file']}"
                    f" (P={best['p']:.2f})",
                    extra={"cochange": links},
                ),
            )


class GitOperation:
    """Layer 5: a git operation on a branch while someone else works on it, in either direction."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def __call__(self, unit: Unit, request: WorkRequest) -> Found:
        if not request.branch:
            return
        if request.kind.startswith("git_"):
            yield from self._working_on_branch(unit, request)
        rows = unit.tx.all(
            "SELECT id, agent_id, kind, subject FROM intents WHERE project = ? AND branch = ? AND status = 'active'"
            f" AND kind LIKE '{GIT_KIND}' AND expires_at > ? AND agent_id != ?",
            (unit.project, request.branch, unit.now, request.agent_id),
        )
        for row in rows:
            yield (
                row["agent_id"],
                Evidence(
                    Layer.GIT_OPERATION,
                    Layer.SCORES[Layer.GIT_OPERATION],
                    (),
                    f"they are about to {row['kind'].removeprefix('git_')} branch {request.branch}, which you work on",
                    extra={"branch": request.branch, "intent_id": intent_ref(row["id"]), "operation": row["kind"]},
                ),
            )

    def _working_on_branch(self, unit: Unit, request: WorkRequest) -> Found:
        mates = [
            r["agent_id"]
            for r in unit.tx.all(
                "SELECT agent_id FROM agents WHERE project = ? AND branch = ? AND branch != '' AND agent_id != ?",
                (unit.project, request.branch, request.agent_id),
            )
        ]
        if not mates:
            return
        since = unit.now - self.ctx.settings.recent_edit_window_s
        marks = placeholders(mates)
        rows = unit.tx.all(
            f"SELECT p.agent_id, p.path FROM intent_paths p JOIN intents i ON i.id = p.intent_id WHERE p.project = ?"
            f" AND p.role = 'target' AND p.agent_id IN ({marks}) AND i.expires_at > ?"
            f" UNION SELECT agent_id, path FROM file_edits WHERE project = ? AND agent_id IN ({marks}) AND ts >= ?"
            f" UNION SELECT agent_id, path FROM working_files WHERE project = ? AND agent_id IN ({marks})"
            f" AND expires_at > ?",
            (unit.project, *mates, unit.now, unit.project, *mates, since, unit.project, *mates, unit.now),
        )
        working: dict[str, set[str]] = {}
        for row in rows:
            working.setdefault(row["agent_id"], set()).add(row["path"])
        operation = request.kind.removeprefix("git_")
        for agent_id, files in working.items():
            yield (
                agent_id,
                Evidence(
                    Layer.GIT_OPERATION,
                    Layer.SCORES[Layer.GIT_OPERATION],
                    tuple(sorted(files)),
                    f"you are about to {operation} branch {request.branch} while they work on it"
                    f" ({', '.join(sorted(files))})",
                    extra={"branch": request.branch, "operation": request.kind},
                ),
            )


class MergeConflict:
    """Layer M: the background merge-tree check found textual conflicts between our work."""

    def __call__(self, unit: Unit, request: WorkRequest) -> Found:
        rows = unit.tx.all(
            "SELECT agent_a, agent_b, files, hunks, thread_id FROM merge_conflicts WHERE project = ? AND agent_a = ?"
            " UNION ALL SELECT agent_a, agent_b, files, hunks, thread_id FROM merge_conflicts"
            " WHERE project = ? AND agent_b = ?",
            (unit.project, request.agent_id, unit.project, request.agent_id),
        )
        for row in rows:
            other = row["agent_b"] if row["agent_a"] == request.agent_id else row["agent_a"]
            files: list[str] = json.loads(row["files"])
            touched = [f for f in files if f in request.target_files]
            if not touched and not request.kind.startswith("git_"):
                continue
            yield other, merge_evidence(files, json.loads(row["hunks"]), row["thread_id"])


def merge_evidence(files: Sequence[str], hunks: Sequence[dict[str, Any]], thread_id: str | None) -> Evidence:
    """The evidence for a predicted merge conflict, shared by announce and the sweep's thread."""
    return Evidence(
        Layer.MERGE_CONFLICT,
        Layer.SCORES[Layer.MERGE_CONFLICT],
        tuple(files),
        f"merging your work with theirs would conflict in {', '.join(files)} (git merge-tree)",
        extra={"hunks": list(hunks), "thread_id": thread_id},
    )
