"""Impact scoring rules (SPEC F-11 … F-13). Pure: evidence in, impacts and a verdict out.

Each layer is a signal with a fixed score; an agent's score is the highest layer that fires
against it. Evidence keeps the layer as data — nothing downstream parses reason strings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple, overload

CONCERNED_AT = 90
GRAY_ZONE_AT = 30


class Layer:
    """Layer ids and their scores, as in SPEC F-11."""

    SAME_TARGET = "0a"  # my targets ∩ their targets
    MY_DEPENDENCY_TARGETED = "0b"  # my depends_on ∩ their targets
    MY_TARGET_DEPENDED_ON = "0c"  # my targets ∩ their depends_on
    RECENT_EDIT = "1"  # a target edited by them recently, or being edited now
    RECENT_DEPENDENCY_EDIT = "2"  # a depends_on file edited by them recently
    SAME_MODULE = "3"  # same module, or one a segment prefix of the other
    CO_CHANGE = "4"  # git co-change probability
    GIT_OPERATION = "5"  # git operation on the same branch while they edit
    LOCK = "L"  # a target locked exclusively by them
    MERGE_CONFLICT = "M"  # git merge-tree predicts a textual conflict between our branches/worktrees

    SCORES: Mapping[str, int] = {
        "0a": 100,
        "0b": 80,
        "0c": 80,
        "1": 100,
        "2": 80,
        "3": 30,
        "4": 60,  # 60 above 0.5 probability, 40 above 0.2: the evidence carries the exact score
        "5": 90,
        "L": 100,
        "M": 90,
    }


@dataclass(frozen=True)
class Evidence:
    layer: str
    score: int
    files: tuple[str, ...] = ()
    reason: str = ""
    symbols: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.layer,
            "score": self.score,
            "files": list(self.files),
            "reason": self.reason,
        }
        if self.symbols:
            out["symbols"] = list(self.symbols)
        out.update(self.extra)
        return out


class Impact(NamedTuple):
    """One impacted agent. A named tuple, not a frozen dataclass: a crowd builds one per agent, and a
    frozen dataclass's __init__ (one object.__setattr__ per field) cost twice as much."""

    agent_id: str
    score: int
    category: str
    evidence: tuple[Evidence, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "score": self.score,
            "category": self.category,
            "evidence": [e.to_dict() for e in self.evidence],
        }


def category(score: int) -> str:
    if score >= CONCERNED_AT:
        return "concerned"
    if score >= GRAY_ZONE_AT:
        return "gray_zone"
    return "pass"


def verdict(impacts: Iterable[Impact]) -> str:
    """proceed when nobody is touched, caution for gray zones only, consult when anyone is concerned."""
    categories = impacts.categories() if isinstance(impacts, Impacts) else {impact.category for impact in impacts}
    if "concerned" in categories:
        return "consult"
    if "gray_zone" in categories:
        return "caution"
    return "proceed"


class Crowd(NamedTuple):
    """Agents one and the same piece of evidence concerns alike (a crowd on a module): kept as one
    entry through scoring, the answer and the events, so its cost grows with C-level list and set
    work per member, not with Python objects per member."""

    score: int
    category: str
    evidence: tuple[Evidence, ...]
    agents: tuple[str, ...]  # sorted, each once

    def member(self, agent_id: str) -> Impact:
        return Impact(agent_id, self.score, self.category, self.evidence)


class Impacts(Sequence[Impact]):
    """The impacts of one request, ranked: highest score first, ties by agent id.

    Agents with evidence of their own are `singles` (ranked Impacts); agents that share one piece
    of evidence and nothing else are `crowds`. As a sequence it is every Impact in rank order, built
    on first use; the methods below answer from the parts without building one Impact per member.
    """

    def __init__(self, singles: list[Impact], crowds: Sequence[Crowd] = ()):
        self.singles = singles
        self.crowds = sorted((c for c in crowds if c.agents), key=_crowd_rank)
        self._all: list[Impact] | None = None if self.crowds else singles

    def __len__(self) -> int:
        return len(self.singles) + sum(len(c.agents) for c in self.crowds)

    @overload
    def __getitem__(self, index: int) -> Impact: ...

    @overload
    def __getitem__(self, index: slice) -> list[Impact]: ...

    def __getitem__(self, index: int | slice) -> Impact | list[Impact]:
        return self.all()[index]

    def __iter__(self) -> Iterator[Impact]:
        return iter(self.all())

    def all(self) -> list[Impact]:
        """Every impact in rank order (one object per crowd member: for the rare caller that needs them)."""
        if self._all is None:
            everyone = self.singles + [c.member(a) for c in self.crowds for a in c.agents]
            everyone.sort(key=_AGENT)
            everyone.sort(key=_SCORE, reverse=True)
            self._all = everyone
        return self._all

    @property
    def max_score(self) -> int:
        return max([*(c.score for c in self.crowds), *(i.score for i in self.singles[:1])], default=0)

    def categories(self) -> set[str]:
        return {i.category for i in self.singles} | {c.category for c in self.crowds}

    def head(self, n: int) -> tuple[list[Impact], list[int]]:
        """The `n` strongest impacts, and how many of them came from the singles and from each crowd
        (always a prefix of each: both are ranked)."""
        if not self.crowds:
            shown = self.singles[:n]
            return shown, [len(shown)]
        candidates = [(i, 0) for i in self.singles[:n]]
        for k, crowd in enumerate(self.crowds, start=1):
            candidates += [(crowd.member(a), k) for a in crowd.agents[:n]]
        candidates.sort(key=lambda pair: pair[0].agent_id)
        candidates.sort(key=lambda pair: pair[0].score, reverse=True)
        taken = [0] * (len(self.crowds) + 1)
        for _, source in candidates[:n]:
            taken[source] += 1
        return [impact for impact, _ in candidates[:n]], taken

    def agent_ids(self, *, skip: str | None = None, only: str | None = None) -> list[str]:
        """The agents in rank order, leaving out category `skip` or keeping only category `only`."""

        def wanted(cat: str) -> bool:
            return cat != skip and (only is None or cat == only)

        crowds = [c for c in self.crowds if wanted(c.category)]
        if not crowds:
            return [i.agent_id for i in self.singles if wanted(i.category)]
        if len(crowds) == 1 and not any(wanted(i.category) for i in self.singles):
            return list(crowds[0].agents)
        return [i.agent_id for i in self.all() if wanted(i.category)]

    def of_category(self, cat: str) -> list[Impact]:
        if not any(c.category == cat for c in self.crowds):
            return [i for i in self.singles if i.category == cat]
        return [i for i in self.all() if i.category == cat]


def score_agents(
    evidence: Mapping[str, Sequence[Evidence]], crowds: Iterable[tuple[Collection[str], Evidence]] = ()
) -> Impacts:
    """One Impact per agent with any evidence, highest score first (ties by agent id).

    `crowds` are agents one Evidence concerns and that have no other evidence (the caller moves an
    agent with more into `evidence`); each becomes a Crowd, its members sorted.
    """
    impacts = []
    # Most agents have one piece of evidence, and agents may share one Evidence object:
    # its score, category and tuple are worked out once.
    single: dict[int, tuple[int, str, tuple[Evidence, ...]]] = {}
    for agent_id, items in evidence.items():
        if len(items) == 1:
            only = items[0]
            known = single.get(id(only))  # `evidence` keeps every Evidence alive: ids are not reused
            if known is None:
                known = single[id(only)] = (only.score, category(only.score), (only,))
            top, cat, ordered = known
        else:
            ordered = tuple(sorted(items, key=_strongest_first))
            if not ordered:
                continue
            top = ordered[0].score
            cat = category(top)
        impacts.append(Impact(agent_id, top, cat, ordered))
    # Highest score first, ties by agent id: two stable sorts on plain attributes build no key tuples.
    impacts.sort(key=_AGENT)
    impacts.sort(key=_SCORE, reverse=True)
    return Impacts(
        impacts, [Crowd(e.score, category(e.score), (e,), tuple(sorted(set(agents)))) for agents, e in crowds]
    )


def _crowd_rank(crowd: Crowd) -> tuple[int, str]:
    return -crowd.score, crowd.agents[0] if crowd.agents else ""


_AGENT = attrgetter("agent_id")
_SCORE = attrgetter("score")


def _strongest_first(e: Evidence) -> tuple[int, str]:
    return -e.score, e.layer
