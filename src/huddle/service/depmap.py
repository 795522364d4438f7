"""The module dependency map and blast radius (SPEC F-35).

Agents (or `huddle deps scan --write`) describe modules: which paths they own and which modules
they depend on; with none set by hand, the background analysis derives it from imports. The
blast radius of a change is every module that depends on it, transitively.
"""

from __future__ import annotations

import fnmatch
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from huddle.domain import validate
from huddle.domain.events import Kind
from huddle.domain.paths import normalize_module
from huddle.errors import InvalidInput, NotFound
from huddle.service.context import ServiceContext, dumps
from huddle.storage.base import Unit

MAX_MODULES = 2000


MAX_DERIVED_DEPENDS = 100  # files an announce may depend on through the map


@dataclass(frozen=True)
class _Index:
    """The map arranged for per-announce lookups: exact file → modules, then prefixes and globs."""

    version: float | None
    graph: dict[str, tuple[list[str], list[str]]]
    by_file: dict[str, list[str]]
    patterns: list[tuple[str, str]]

    def owners(self, path: str) -> set[str]:
        found = set(self.by_file.get(path, ()))
        for pattern, module in self.patterns:
            if (pattern.endswith("/") and path.startswith(pattern)) or fnmatch.fnmatchcase(path, pattern):
                found.add(module)
        return found


class DependencyMapService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self._index = _Index(None, {}, {}, [])

    def depends_files(self, unit: Unit, targets: Sequence[str]) -> tuple[str, ...]:
        """Files of the modules my targets' modules depend on (plain files only, at most 100).

        Runs inside the announce transaction: one primary-key read says whether the map changed;
        the map itself is reloaded only then.
        """
        row = unit.tx.one("SELECT updated_at FROM dependency_map_source WHERE project = ?", (unit.project,))
        version = float(row["updated_at"]) if row else None
        if version is None:
            return ()
        if version != self._index.version:
            self._index = _index(version, _load(unit))
        graph = self._index.graph
        owners = {m for t in targets for m in self._index.owners(t)}
        files = {
            p
            for m in owners
            for dep in graph[m][0]
            for p in graph.get(dep, ([], []))[1]
            if not p.endswith("/") and not any(c in p for c in "*?[")
        }
        return tuple(sorted(files - set(targets)))[:MAX_DERIVED_DEPENDS]

    async def set_map(self, modules: Mapping[str, Mapping[str, Any]], agent_id: str | None = None) -> dict[str, Any]:
        """Replaces the project's dependency map. Unknown dependencies are refused, not guessed."""
        if not isinstance(modules, Mapping) or not modules:
            raise InvalidInput(
                'modules must be an object like {"auth": {"depends_on": ["db"], "paths": ["src/auth/"]}}',
                field="modules",
            )
        if len(modules) > MAX_MODULES:
            raise InvalidInput(f"modules has {len(modules)} entries; at most {MAX_MODULES}", field="modules")
        parsed: dict[str, tuple[list[str], list[str]]] = {}
        for raw_name, spec in modules.items():
            name = normalize_module(raw_name, field=f"modules.{raw_name}")
            if not isinstance(spec, Mapping):
                raise InvalidInput(
                    f"modules.{name} must be an object with depends_on and paths", field=f"modules.{name}"
                )
            unknown_keys = set(spec) - {"depends_on", "paths"}
            if unknown_keys:
                raise InvalidInput(
                    f"modules.{name} has unknown keys {sorted(unknown_keys)}; use depends_on and paths",
                    field=f"modules.{name}",
                )
            deps = [
                normalize_module(d, field=f"modules.{name}.depends_on[{i}]")
                for i, d in enumerate(validate.items(spec.get("depends_on"), f"modules.{name}.depends_on"))
            ]
            paths = [
                self.ctx.path(p, f"modules.{name}.paths[{i}]")
                for i, p in enumerate(validate.items(spec.get("paths"), f"modules.{name}.paths"))
            ]
            parsed[name] = (deps, paths)
        for name, (deps, _) in parsed.items():
            missing = [d for d in deps if d not in parsed]
            if missing:
                raise InvalidInput(
                    f"module {name} depends on {missing}, which the map does not define; "
                    "add them (with empty depends_on) or drop the dependency",
                    field=f"modules.{name}.depends_on",
                )
        actor = validate.identifier(agent_id, "agent_id") if agent_id else None

        return await self.ctx.store.write(lambda unit: store_map(unit, parsed, actor, source="hand"))

    async def blast_radius(self, module: str | None = None, path: str | None = None) -> dict[str, Any]:
        """Modules affected by a change to `module` (or to the module owning `path`), nearest first."""
        if bool(module) == bool(path):
            raise InvalidInput("give exactly one of module or path", field="module")
        name = normalize_module(module) if module else None
        norm = self.ctx.path(path) if path else None

        def read(unit: Unit) -> dict[str, Any]:
            graph = _load(unit)
            starts = [name] if name else owners_of(graph, norm or "")
            if name and name not in graph:
                raise NotFound(f"module {name} is not in the dependency map; set_dependency_map first", field="module")
            if not starts:
                return {"path": norm, "modules": [], "affected": [], "note": "no module in the map owns this path"}
            dependents: dict[str, list[str]] = {}
            for mod, (deps, _) in graph.items():
                for dep in deps:
                    dependents.setdefault(dep, []).append(mod)
            distance = {s: 0 for s in starts}
            queue = deque(starts)
            while queue:
                current = queue.popleft()
                for nxt in sorted(dependents.get(current, [])):
                    if nxt not in distance:
                        distance[nxt] = distance[current] + 1
                        queue.append(nxt)
            affected = sorted((m for m in distance if m not in starts), key=lambda m: (distance[m], m))
            return {
                "module": name,
                "path": norm,
                "modules": starts,
                "affected": [{"module": m, "distance": distance[m]} for m in affected],
            }

        return await self.ctx.store.read(read)

    async def module_info(self, module: str) -> dict[str, Any]:
        """A module's paths, dependencies and direct dependents. Raises NotFound for an unknown module."""
        name = normalize_module(module)

        def read(unit: Unit) -> dict[str, Any]:
            graph = _load(unit)
            if name not in graph:
                raise NotFound(f"module {name} is not in the dependency map; set_dependency_map first", field="module")
            deps, paths = graph[name]
            return {
                "module": name,
                "depends_on": deps,
                "paths": paths,
                "dependents": sorted(m for m, (d, _) in graph.items() if name in d),
            }

        return await self.ctx.store.read(read)


def store_map(
    unit: Unit, parsed: Mapping[str, tuple[list[str], list[str]]], actor: str | None, *, source: str
) -> dict[str, Any]:
    """Replaces the map; `source` is `hand` (set_dependency_map) or `scan` (derived in the background).

    A map set by hand is never replaced by a scan (the scan checks `map_source` first).
    """
    unit.tx.execute("DELETE FROM dependency_modules WHERE project = ?", (unit.project,))
    unit.tx.executemany(
        "INSERT INTO dependency_modules (project, module, depends_on, paths) VALUES (?, ?, ?, ?)",
        [(unit.project, n, dumps(d), dumps(p)) for n, (d, p) in parsed.items()],
    )
    unit.tx.execute(
        "INSERT INTO dependency_map_source (project, source, updated_at) VALUES (?, ?, ?) ON CONFLICT (project)"
        " DO UPDATE SET source = excluded.source, updated_at = excluded.updated_at",
        (unit.project, source, unit.now),
    )
    unit.emit(Kind.DEPENDENCY_MAP, actor=actor, modules=len(parsed), source=source)
    return {"modules": len(parsed), "edges": sum(len(d) for d, _ in parsed.values())}


def map_source(unit: Unit) -> str | None:
    row = unit.tx.one("SELECT source FROM dependency_map_source WHERE project = ?", (unit.project,))
    return str(row["source"]) if row else None


def _index(version: float, graph: dict[str, tuple[list[str], list[str]]]) -> _Index:
    by_file: dict[str, list[str]] = {}
    patterns: list[tuple[str, str]] = []
    for module, (_, paths) in graph.items():
        for p in paths:
            if p.endswith("/") or any(c in p for c in "*?["):
                patterns.append((p, module))
            else:
                by_file.setdefault(p, []).append(module)
    return _Index(version, graph, by_file, patterns)


def _load(unit: Unit) -> dict[str, tuple[list[str], list[str]]]:
    rows = unit.tx.all("SELECT module, depends_on, paths FROM dependency_modules WHERE project = ?", (unit.project,))
    return {r["module"]: (json.loads(r["depends_on"]), json.loads(r["paths"])) for r in rows}


def owners_of(graph: Mapping[str, tuple[list[str], list[str]]], path: str) -> list[str]:
    """Modules whose paths (a directory `src/auth/`, a file, or a glob) contain `path`."""
    return sorted(_index(0.0, dict(graph)).owners(path))
