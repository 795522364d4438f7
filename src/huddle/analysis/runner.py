"""The background analysis loops: symbols, co-change and predicted merge conflicts.

Each job reads what it needs in one short read, does the slow part (parsing, git) in a worker
thread, and lands the result in one write; the announce transaction only ever reads the tables.
Jobs are also callable directly (`refresh_symbols`, `refresh_cochange`, `check_merges`), which is
how tests drive them without waiting for a period to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huddle.analysis import cochange, deps, merges
from huddle.analysis.files import read_source, stat_source
from huddle.analysis.git import GitError, head_or_empty
from huddle.analysis.languages import available, grammar_for
from huddle.analysis.symbols import Definition, parse_definitions
from huddle.analysis.worker import in_daemon_thread
from huddle.background import Background
from huddle.domain.events import Event, Kind
from huddle.service.code_signals import merge_evidence
from huddle.service.context import ServiceContext, dumps, placeholders
from huddle.service.depmap import map_source, store_map
from huddle.service.threads import open_thread
from huddle.storage.base import Unit

log = logging.getLogger(__name__)
MAX_SYMBOL_FILES = 1000  # files (re)considered per symbol pass: the recently edited and announced ones
MAX_DEFINITIONS = 5000  # per file: a generated file's millionth definition helps no one
MAX_LINE_CHARS = 2000  # a file with a longer line is minified or generated: not parsed
WRITE_BATCH = 2000  # rows per write transaction: announces share the single writer and interleave
STUCK_AFTER_S = 600.0  # a job running this long is reported as stuck on /readyz (git times out at 60 s)
MAX_SCAN_FILES = 5000  # a bigger repository derives its map on demand: `huddle deps scan --write`
MIN_GAP_S = 1.0  # between two symbol passes woken by a burst of edits: one pass per burst
WAKING_KINDS = frozenset({Kind.FILE_EDITED, Kind.FILE_EDITING, Kind.INTENT_ANNOUNCED})


@dataclass
class JobState:
    """What /readyz reports per job."""

    runs: int = 0
    last_refresh: float | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    running_since: float | None = None  # time.monotonic() when the current run started

    def to_dict(self, now: float) -> dict[str, Any]:
        running = None if self.running_since is None else round(now - self.running_since, 1)
        stuck = running is not None and running > STUCK_AFTER_S
        error = f"running for {running:.0f} s, far longer than expected (stuck?)" if stuck else self.error
        return {
            "runs": self.runs,
            "last_refresh": self.last_refresh,
            "error": error,
            "running_s": running,
            "stuck": stuck,
            **self.detail,
        }


@dataclass(frozen=True)
class ParsedFile:
    path: str
    mtime_ns: int
    size: int
    language: str
    definitions: Sequence[Definition]


class Analysis:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.enabled = ctx.settings.analysis == "on"
        self.state = {"symbols": JobState(), "cochange": JobState(), "merges": JobState(), "deps": JobState()}
        self._locks = {name: asyncio.Lock() for name in self.state}
        self._loops = [Background(f"huddle-analysis-{name}") for name in ("symbols", "cochange", "merges")]
        self._wake = asyncio.Event()
        self._scanned = ""  # HEAD and file list the derived dependency map was made from
        # (commit, commit) → prediction: heads that did not move are not merged again.
        self._predictions: dict[tuple[str, str], merges.Prediction | None] = {}
        if self.enabled:
            ctx.bus.add_listener(self._on_events)

    def _on_events(self, events: Sequence[Event]) -> None:
        if any(e.kind in WAKING_KINDS for e in events):
            self._wake.set()

    def start(self) -> None:
        """Starts the three loops (when the `analysis` setting is on)."""
        if not self.enabled:
            return
        s = self.ctx.settings
        jobs: list[tuple[Callable[[], Awaitable[object]], float, bool]] = [
            (self.refresh_symbols, s.analysis_interval_s, True),
            (self._refresh_history, s.cochange_refresh_s, False),
            (self.check_merges, s.merge_check_interval_s, False),
        ]
        for loop, (job, period, wakes) in zip(self._loops, jobs, strict=True):
            loop.start(self._forever(job, period, wakes))

    async def stop(self) -> None:
        for loop in self._loops:
            await loop.stop()

    def readiness(self, now: float | None = None) -> dict[str, Any]:
        """For /readyz: per job its runs, last refresh, last error and counts, and how long a
        running job has run (`stuck` past STUCK_AFTER_S). `now` is a time.monotonic() reading."""
        if not self.enabled:
            return {"ok": True, "enabled": False}
        alive = all(loop.running for loop in self._loops)
        now = time.monotonic() if now is None else now
        return {
            "ok": alive,
            "enabled": True,
            **{name: job.to_dict(now) for name, job in self.state.items()},
            "languages": available(),
        }

    async def _forever(self, job: Callable[[], Awaitable[object]], period: float, wakes: bool) -> None:
        while True:
            try:
                if self.ctx.leader:  # with several instances on one database, only the leader analyses
                    await job()
            except GitError as exc:  # recorded for /readyz (no git, not a repository, old git)
                log.warning("analysis: %s", exc)
            except Exception:  # the job recorded its error for /readyz; keep the loop alive
                log.exception("analysis job failed")
            if wakes:
                await asyncio.sleep(MIN_GAP_S)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel from stop().
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await self._wake.wait()
                self._wake.clear()
            else:
                await asyncio.sleep(period)

    async def _run(self, name: str, job: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        state = self.state[name]
        async with self._locks[name]:
            state.running_since = time.monotonic()
            try:
                detail = await job()
            except Exception as exc:  # shown on /readyz until the next successful run
                state.error = str(exc) if isinstance(exc, GitError) else f"{type(exc).__name__}: {exc}"
                state.runs += 1
                raise
            finally:
                state.running_since = None
            state.runs += 1
            state.error = None
            state.last_refresh = time.time()
            state.detail = detail
            return detail

    # --- symbols -------------------------------------------------------------------------------

    async def refresh_symbols(self) -> dict[str, Any]:
        """Re-parses the recently edited and announced files whose contents changed."""
        return await self._run("symbols", self._refresh_symbols)

    async def _refresh_symbols(self) -> dict[str, Any]:
        def candidates(unit: Unit) -> dict[str, tuple[int, int]]:
            since = unit.now - self.ctx.settings.recent_edit_window_s
            rows = unit.tx.all(
                "SELECT path FROM file_edits WHERE project = ? AND ts >= ? UNION"
                " SELECT path FROM intent_paths WHERE project = ? AND role = 'target' UNION"
                " SELECT path FROM working_files WHERE project = ? LIMIT ?",
                (unit.project, since, unit.project, unit.project, MAX_SYMBOL_FILES),
            )
            paths = [r["path"] for r in rows]
            known = {}
            for chunk in range(0, len(paths), 500):
                part = paths[chunk : chunk + 500]
                for r in unit.tx.all(
                    "SELECT path, mtime_ns, size FROM symbol_files WHERE project = ?"
                    f" AND path IN ({placeholders(part)})",
                    (unit.project, *part),
                ):
                    known[r["path"]] = (r["mtime_ns"], r["size"])
            return {p: known.get(p, (-1, -1)) for p in paths}

        seen = await self.ctx.store.read(candidates)
        limit = self.ctx.settings.symbol_max_file_bytes
        changed, gone = await in_daemon_thread(
            "huddle-symbols", lambda: _parse_changed(self.ctx.repo_root, seen, limit)
        )
        # Small transactions, one file at a time: announces queue on the same writer and get
        # their turn between two batches instead of waiting for the whole pass.
        for step in symbol_writes(changed, gone):
            await self.ctx.store.write(step.apply)
        return {"files_indexed": len(seen) - len(gone), "files_parsed": len(changed)}

    async def _refresh_history(self) -> None:
        """The slow, rarely refreshed jobs: co-change, then the derived dependency map."""
        try:
            await self.refresh_cochange()
        finally:
            await self.refresh_dependency_map()

    # --- derived dependency map ----------------------------------------------------------------

    async def refresh_dependency_map(self) -> dict[str, Any]:
        """Derives the module map from imports, unless a map was set by hand (which always wins)."""
        return await self._run("deps", self._refresh_dependency_map)

    async def _refresh_dependency_map(self) -> dict[str, Any]:
        if await self.ctx.store.read(map_source) == "hand":
            return {"source": "hand", "modules": None}

        def derive() -> dict[str, tuple[list[str], list[str]]] | str | None:
            files = deps.source_files(self.ctx.repo_root)
            if len(files) > MAX_SCAN_FILES:
                return None
            # Imports change with commits: rescan only when HEAD or the file list moved.
            key = f"{head_or_empty(self.ctx.repo_root)}:{hash(tuple(files))}"
            if key == self._scanned:
                return "unchanged"
            self._scanned = key
            return {m: (spec["depends_on"], spec["paths"]) for m, spec in deps.scan(self.ctx.repo_root).items()}

        parsed = await in_daemon_thread("huddle-deps", derive)
        if parsed == "unchanged":
            return {**self.state["deps"].detail, "unchanged": True}
        if parsed is None:
            return {"source": None, "modules": None, "note": f"over {MAX_SCAN_FILES} files: run `huddle deps scan`"}
        if not parsed or isinstance(parsed, str):
            return {"source": None, "modules": 0}

        def store(unit: Unit) -> dict[str, Any]:
            if map_source(unit) == "hand":  # set by hand while we were scanning
                return {"source": "hand", "modules": None}
            return {"source": "scan", **store_map(unit, parsed, None, source="scan")}

        return await self.ctx.store.write(store)

    # --- co-change -----------------------------------------------------------------------------

    async def refresh_cochange(self) -> dict[str, Any]:
        """Rebuilds the co-change index from the repository's recent history."""
        return await self._run("cochange", self._refresh_cochange)

    async def _refresh_cochange(self) -> dict[str, Any]:
        s = self.ctx.settings

        def build() -> tuple[int, list[cochange.Pair]]:
            commits = cochange.read_history(
                self.ctx.repo_root,
                max_commits=s.cochange_max_commits,
                days=s.cochange_days,
                max_files=s.cochange_max_files,
            )
            return len(commits), cochange.build_index(commits)

        commits, pairs = await in_daemon_thread("huddle-cochange", build)

        def store(unit: Unit) -> None:
            unit.tx.execute("DELETE FROM cochange WHERE project = ?", (unit.project,))
            unit.tx.executemany(
                "INSERT INTO cochange (project, path_a, path_b, together, commits) VALUES (?, ?, ?, ?, ?)",
                [(unit.project, p.path_a, p.path_b, p.together, p.commits) for p in pairs],
            )

        await self.ctx.store.write(store)
        return {"commits_indexed": commits, "pairs": len(pairs)}

    # --- predicted merge conflicts -------------------------------------------------------------

    async def check_merges(self) -> dict[str, Any]:
        """Merges every pair of online agents' work in memory; a new conflict opens a thread."""
        return await self._run("merges", self._check_merges)

    async def _check_merges(self) -> dict[str, Any]:
        if not merges.merge_tree_supported():
            raise GitError("this git lacks `merge-tree --write-tree` (needs git 2.38 or newer); no merge prediction")

        def agents(unit: Unit) -> list[tuple[str, str, str]]:
            since = self.ctx.online_since(unit.now)
            rows = unit.tx.all(
                "SELECT agent_id, branch, worktree FROM agents WHERE project = ? AND status = 'online'"
                " AND last_seen >= ? AND (branch != '' OR worktree != '') ORDER BY agent_id",
                (unit.project, since),
            )
            return [(r["agent_id"], r["branch"], r["worktree"]) for r in rows]

        sides = await self.ctx.store.read(agents)
        found = await in_daemon_thread("huddle-merges", lambda: self._predict_pairs(sides))
        branches = {a: b for a, b, _ in sides}
        opened = await self.ctx.store.write(lambda unit: self._store_merges(unit, found, branches))
        return {
            "agents": len(sides),
            "pairs_checked": len(sides) * (len(sides) - 1) // 2,
            "conflicts": len(found),
            "threads_opened": opened,
        }

    def _predict_pairs(self, sides: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str], merges.Prediction]:
        repo = self.ctx.repo_root
        heads: dict[str, str] = {}
        for agent_id, branch, worktree in sides:
            head = None
            if worktree and Path(worktree).is_dir() and merges.same_repository(repo, worktree):
                try:
                    head = merges.snapshot(worktree)
                except GitError as exc:
                    log.info("cannot snapshot %s's worktree %s: %s", agent_id, worktree, exc)
            if head is None and branch:
                head = merges.branch_head(repo, branch)
            if head:
                heads[agent_id] = head
        found: dict[tuple[str, str], merges.Prediction] = {}
        ids = sorted(heads)
        cache: dict[tuple[str, str], merges.Prediction | None] = {}
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                key = (heads[a], heads[b])
                if key[0] == key[1]:
                    continue
                if key in self._predictions:
                    cache[key] = self._predictions[key]
                else:
                    cache[key] = merges.predict(repo, *key)
                if cache[key] is not None:
                    found[(a, b)] = cache[key]  # type: ignore[assignment]
        self._predictions = cache  # keep only what is current
        return found

    def _store_merges(
        self, unit: Unit, found: dict[tuple[str, str], merges.Prediction], branches: dict[str, str]
    ) -> int:
        existing = {
            (r["agent_a"], r["agent_b"]): r
            for r in unit.tx.all(
                "SELECT agent_a, agent_b, fingerprint, thread_id FROM merge_conflicts WHERE project = ?",
                (unit.project,),
            )
        }
        for pair in set(existing) - set(found):
            unit.tx.execute(
                "DELETE FROM merge_conflicts WHERE project = ? AND agent_a = ? AND agent_b = ?", (unit.project, *pair)
            )
        opened = 0
        for (a, b), prediction in found.items():
            before = existing.get((a, b))
            thread_id = before["thread_id"] if before else None
            if before is None or before["fingerprint"] != prediction.fingerprint:
                evidence = merge_evidence(prediction.files, prediction.hunks, None).to_dict()
                evidence["messages"] = prediction.messages
                where = f"{a} ({branches.get(a) or 'worktree'}) and {b} ({branches.get(b) or 'worktree'})"
                thread_id = open_thread(
                    unit,
                    self.ctx,
                    initiator=a,
                    subject=f"Predicted merge conflict between {where} in {', '.join(prediction.files)}",
                    intent_id=None,
                    respondents=[b],
                    target_files=prediction.files,
                    impacts=[
                        {"agent_id": b, "score": evidence["score"], "category": "concerned", "evidence": [evidence]}
                    ],
                )
                unit.emit(
                    Kind.MERGE_CONFLICT,
                    actor=None,
                    audience=[a, b],
                    thread_id=thread_id,
                    agents=[a, b],
                    files=prediction.files,
                    hunks=prediction.hunks,
                    messages=prediction.messages,
                )
                opened += 1
            unit.tx.execute(
                "INSERT INTO merge_conflicts (project, agent_a, agent_b, files, hunks, fingerprint, thread_id,"
                " checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project, agent_a, agent_b) DO UPDATE SET"
                " files = excluded.files, hunks = excluded.hunks, fingerprint = excluded.fingerprint,"
                " thread_id = excluded.thread_id, checked_at = excluded.checked_at",
                (
                    unit.project,
                    a,
                    b,
                    dumps(prediction.files),
                    dumps(prediction.hunks),
                    prediction.fingerprint,
                    thread_id,
                    unit.now,
                ),
            )
        return opened


def _parse_changed(root: str, seen: dict[str, tuple[int, int]], max_bytes: int) -> tuple[list[ParsedFile], list[str]]:
    """Parses the files whose (mtime, size) differ from the indexed version; lists the vanished.

    Only regular files inside the repository are read (see files.py); a file over `max_bytes` or
    with a line over MAX_LINE_CHARS (minified, generated) is indexed without definitions, so it
    is not looked at again until it changes.
    """
    changed, gone = [], []
    for path, (mtime_ns, size) in seen.items():
        found = stat_source(root, path)
        if found is None:
            if mtime_ns != -1:
                gone.append(path)
            continue
        if (found.mtime_ns, found.size) == (mtime_ns, size):
            continue
        grammar = grammar_for(path)
        definitions = None
        if grammar is not None and found.size <= max_bytes:
            source = read_source(root, path, max_bytes)
            if source is not None and not _generated(source):
                definitions = parse_definitions(path, source)
        language = grammar.name if grammar is not None and definitions is not None else ""
        kept = (definitions or [])[:MAX_DEFINITIONS]
        changed.append(ParsedFile(path, found.mtime_ns, found.size, language, kept))
    return changed, gone


def _generated(source: bytes) -> bool:
    """Minified or generated: some line is longer than any hand-written one."""
    return any(len(line) > MAX_LINE_CHARS for line in source.split(b"\n"))


@dataclass
class SymbolWrite:
    """One write transaction of a symbol pass: forget files, add definitions, mark files indexed."""

    forget: list[str] = field(default_factory=list)
    definitions: list[tuple[str, Definition]] = field(default_factory=list)
    indexed: list[ParsedFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.forget) + len(self.definitions) + len(self.indexed)

    def apply(self, unit: Unit) -> None:
        for path in self.forget:
            unit.tx.execute("DELETE FROM symbol_defs WHERE project = ? AND path = ?", (unit.project, path))
            unit.tx.execute("DELETE FROM symbol_files WHERE project = ? AND path = ?", (unit.project, path))
        unit.tx.executemany(
            "INSERT INTO symbol_defs (project, path, name, kind, start_line, end_line) VALUES (?, ?, ?, ?, ?, ?)",
            [(unit.project, path, d.name, d.kind, d.start, d.end) for path, d in self.definitions],
        )
        unit.tx.executemany(
            "INSERT INTO symbol_files (project, path, mtime_ns, size, language, indexed_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(unit.project, f.path, f.mtime_ns, f.size, f.language, unit.now) for f in self.indexed],
        )


def symbol_writes(changed: Sequence[ParsedFile], gone: Sequence[str]) -> list[SymbolWrite]:
    """The pass's writes, each at most WRITE_BATCH rows. Small files share a transaction, whole.
    A bigger file is forgotten, its definitions added batch by batch, and only then recorded as
    indexed: a pass cut short leaves it unrecorded, so the next pass parses it again."""
    steps: list[SymbolWrite] = []
    current = SymbolWrite()

    def flush() -> None:
        nonlocal current
        if current.rows:
            steps.append(current)
            current = SymbolWrite()

    for path in gone:
        if current.rows + 1 > WRITE_BATCH:
            flush()
        current.forget.append(path)
    for f in changed:
        defs = [(f.path, d) for d in f.definitions]
        if len(defs) + 2 <= WRITE_BATCH:
            if current.rows + len(defs) + 2 > WRITE_BATCH:
                flush()
            current.forget.append(f.path)
            current.definitions += defs
            current.indexed.append(f)
            continue
        flush()
        steps.append(SymbolWrite(forget=[f.path]))
        steps += [SymbolWrite(definitions=defs[i : i + WRITE_BATCH]) for i in range(0, len(defs), WRITE_BATCH)]
        steps.append(SymbolWrite(indexed=[f]))
    flush()
    return steps
