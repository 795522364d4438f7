"""What every capability service shares: store, bus, settings, and the extension points.

Capabilities (agents, intents, threads, files, locks, tasks…) are separate services that meet
here instead of importing each other's internals:
- `agent_gone_hooks` run inside the transaction that takes an agent offline or deregisters it,
  so its threads, leases, slots and tasks are released atomically with its departure;
- `signal_providers` contribute evidence to impact scoring (one per layer family), so a new layer
  (locks, co-change, git operations) plugs in without touching the scorer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from huddle import compact_json
from huddle.bus.memory import EventBus
from huddle.domain import paths
from huddle.domain.scoring import Evidence
from huddle.service.repo_aliases import RepoAliases
from huddle.settings import Settings
from huddle.storage.base import Store, Unit

T = TypeVar("T")

AgentGoneHook = Callable[[Unit, str, str], None]
"""(unit, agent_id, reason) where reason is 'offline' or 'deregistered'."""


@dataclass(frozen=True)
class WorkRequest:
    """What an agent intends to touch, normalised: the input of impact scoring."""

    agent_id: str
    kind: str
    target_files: tuple[str, ...]
    depends_on_files: tuple[str, ...]
    modules: tuple[str, ...]
    symbols: frozenset[str]
    branch: str


class SignalProvider(Protocol):
    """Finds evidence that `request` collides with other agents' work; must use indexed lookups.

    Yields (agent id, evidence), or (agent ids, evidence) for a crowd one Evidence concerns alike."""

    def __call__(
        self, unit: Unit, request: WorkRequest
    ) -> Iterable[tuple[str, Evidence] | tuple[tuple[str, ...], Evidence]]: ...


@dataclass
class ServiceContext:
    store: Store
    bus: EventBus
    settings: Settings
    agent_gone_hooks: list[AgentGoneHook] = field(default_factory=list)
    signal_providers: list[SignalProvider] = field(default_factory=list)
    # agent id → monotonic time of the last heartbeat written for a read-only call
    read_heartbeats: dict[str, float] = field(default_factory=dict)
    # files my targets depend on per the dependency map, for announces that name none (depmap.py)
    depends_from_map: Callable[[Unit, Sequence[str]], tuple[str, ...]] | None = None
    # Whether this process runs the background jobs now (always, unless the database is shared).
    leader: bool = True

    @property
    def project(self) -> str:
        return self.store.project

    @property
    def instance(self) -> str:
        """This server process among those sharing the database (lock-queue entries carry it)."""
        return self.store.instance

    @functools.cached_property
    def repo_root(self) -> str:
        # Resolving the repo path touches the filesystem; do it once, not on every path we check.
        return str(self.settings.repo_path)

    @functools.cached_property
    def aliases(self) -> RepoAliases:
        return RepoAliases(self.repo_root)

    def path(self, raw: str, field: str = "path") -> str:
        """`raw` as the repo-relative path of the file itself (symlinks inside the repo resolved)."""
        try:
            normal = paths.normalize_path(raw, self.repo_root, field=field, is_link=self.aliases.is_link)
        except paths.OutsideRepository:
            # Outside, but perhaps where a symlink in the repository leads: then that is its name.
            outside = self.aliases.outside(raw, field)
            if outside is None:
                raise
            return outside
        return self.aliases.canonical(normal, field)

    def paths(self, raws: Sequence[str] | None, field: str) -> tuple[str, ...]:
        """Each of `raws` normalised and resolved as `path` does it, duplicates (also through links)
        dropped; errors name the entry. Unlike `path`, a name outside the repository is refused."""
        # Every entry is normalised (and refused if bad) before any is resolved, and once: `path`
        # would normalise each again.
        normal = paths.normalize_each(raws, self.repo_root, field=field, is_link=self.aliases.is_link)
        return tuple(dict.fromkeys(self.aliases.canonical(n, f"{field}[{i}]") for i, n in enumerate(normal)))

    def online_since(self, now: float) -> float:
        """Agents seen at or after this instant count as online."""
        return now - self.settings.agent_ttl_s


def dumps(value: Any) -> str:
    """A value as the database stores it (compact_json.stored)."""
    return compact_json.stored(value)


def placeholders(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))
