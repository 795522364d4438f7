"""Impact scoring rules (SPEC F-11 … F-13). Pure: evidence in, impacts and a verdict out.

Each layer is a signal with a fixed score; an agent's score is the highest layer that fires
against it. Evidence keeps the layer as data — nothing downstream parses reason strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

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
    categories = {impact.category for impact in impacts}
    if "concerned" in categories:
        return "consult"
    if "gray_zone" in categories:
        return "caution"
    return "proceed"


def score_agents(evidence: Mapping[str, Sequence[Evidence]]) -> list[Impact]:
    """One Impact per agent with any evidence, highest score first (ties by agent id)."""
    impacts = []
    # Most agents have one piece of evidence, and a crowd on a module shares one Evidence object:
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
    return impacts


_AGENT = attrgetter("agent_id")
_SCORE = attrgetter("score")


def _strongest_first(e: Evidence) -> tuple[int, str]:
    return -e.score, e.layer
