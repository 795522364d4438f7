"""How the impacts of one announce are reported, so a crowd costs an announce little more than a few peers.

With 1,000 agents on one module every one of them is a gray-zone impact. Listing them all made the
answer 200 KB and the awareness one event per agent; instead:
- the answer holds the strongest `TOP_IMPACTS` in full (highest score first, ties by agent id)
  and `impact_summary`: counts over *all* impacts, so the caller still knows how many are affected;
- the intent row keeps the shown impacts in full and the rest as groups of agent ids with their
  score, category and layers: enough for update_intent to tell who collided before and for the
  conflict-signal chart to count layers;
- awareness is one event per group of agents the *same* evidence concerns (same score, category and
  evidence, field for field), addressed to the group and the announcer. A recipient therefore reads
  exactly the evidence about itself, never another agent's, and a crowd on one module is one event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from huddle.domain.scoring import Crowd, Evidence, Impact, Impacts

TOP_IMPACTS = 10
CATEGORIES = ("concerned", "gray_zone", "pass")

SlimKey = tuple[int, str, tuple[str, ...]]  # score, category, the layers that fired


@dataclass(frozen=True)
class AwarenessGroup:
    """Agents one and the same evidence concerns: they share one awareness event."""

    score: int
    category: str
    evidence: list[dict[str, Any]]
    agents: tuple[str, ...]


@dataclass(frozen=True)
class ImpactReport:
    shown: list[dict[str, Any]]  # the strongest impacts in full
    summary: dict[str, Any]  # counts over all of them
    stored: list[dict[str, Any]]  # the intents.impacts column


def report(impacts: Sequence[Impact], limit: int | None = TOP_IMPACTS) -> ImpactReport:
    """What an announce answers and stores about `impacts` (ranked, strongest first); all shown when
    limit is None. Awareness events are `awareness_groups`.

    A few dict operations per impact: nothing is encoded or sorted per agent beyond the shown ones,
    and a crowd (scoring.Crowd) is counted and stored as slices of its member list.
    """
    total = len(impacts)
    cut = total if limit is None else min(limit, total)
    if isinstance(impacts, Impacts):
        head, taken = impacts.head(cut)
        rest_crowds = [c._replace(agents=c.agents[n:]) for c, n in zip(impacts.crowds, taken[1:], strict=True)]
        rest = _slim(_in_rank_order(impacts.singles[taken[0] :], rest_crowds))
    else:
        head, rest = list(impacts[:cut]), _slim(impacts[cut:])
    shown = [i.to_dict() for i in head]
    counts = {key: len(agents) for key, agents in _slim(head).items()}
    for key, agents in rest.items():
        counts[key] = counts.get(key, 0) + len(agents)
    stored = shown + [
        {"agent_ids": agents, "score": score, "category": cat, "evidence": [{"layer": layer} for layer in layers]}
        for (score, cat, layers), agents in rest.items()
    ]
    return ImpactReport(shown, _summary(counts, total, cut), stored)


def stored_agents(stored: Sequence[dict[str, Any]], *, skip_category: str = "pass") -> list[str]:
    """The agent ids an intents.impacts column names, in order; either form: one impact or a group."""
    out: list[str] = []
    for item in stored:
        if item.get("category") == skip_category:
            continue
        if "agent_ids" in item:
            out += item["agent_ids"]
        else:
            out.append(item["agent_id"])
    return out


def _slim(impacts: Iterable[Impact | Crowd]) -> dict[SlimKey, list[str]]:
    """Agent ids grouped by (score, category, layers), each group in rank order."""
    groups: dict[SlimKey, list[str]] = {}
    # Impacts may share one evidence tuple (domain/scoring.py): its group is found once.
    by_evidence: dict[int, list[str]] = {}
    mixed = _MixedGroups()
    for item in impacts:
        ev = item.evidence
        members = by_evidence.get(id(ev))  # `impacts` keeps every tuple alive: ids are not reused
        if members is None:
            key = (item.score, item.category, _layers(ev))
            members = by_evidence[id(ev)] = groups.setdefault(key, [])
        mixed.add(members, item)
    mixed.sort()
    return groups


class _MixedGroups:
    """Adds impacts and crowds to member lists; a list that got a crowd and anything else is
    sorted at the end, since a crowd's members go in at once where its first member ranks. (All of
    a list has one score, so rank order there is agent id order.)"""

    def __init__(self) -> None:
        self._with_crowd: set[int] = set()  # ids of the lists a crowd went into
        self._mixed: dict[int, list[str]] = {}

    def add(self, members: list[str], item: Impact | Crowd) -> None:
        crowd = isinstance(item, Crowd)
        if members and (crowd or id(members) in self._with_crowd):
            self._mixed[id(members)] = members
        if isinstance(item, Crowd):
            self._with_crowd.add(id(members))
            members.extend(item.agents)
        else:
            members.append(item.agent_id)

    def sort(self) -> None:
        for members in self._mixed.values():
            members.sort()


def _in_rank_order(singles: Sequence[Impact], crowds: Sequence[Crowd]) -> Iterator[Impact | Crowd]:
    """Ranked singles with each crowd placed where its first member ranks."""
    pending = sorted((c for c in crowds if c.agents), key=lambda c: (-c.score, c.agents[0]))
    for impact in singles:
        while pending and (pending[0].score, impact.agent_id) > (impact.score, pending[0].agents[0]):
            yield pending.pop(0)
        yield impact
    yield from pending


def _layers(evidence: Sequence[Evidence]) -> tuple[str, ...]:
    return (evidence[0].layer,) if len(evidence) == 1 else tuple(sorted({e.layer for e in evidence}))


def _summary(counts: dict[SlimKey, int], total: int, shown: int) -> dict[str, Any]:
    by_category = dict.fromkeys(CATEGORIES, 0)
    by_layer: dict[str, int] = {}
    for (_, cat, layers), n in counts.items():
        by_category[cat] = by_category.get(cat, 0) + n
        for layer in layers:
            by_layer[layer] = by_layer.get(layer, 0) + n
    return {
        "total": total,
        "shown": shown,
        "omitted": total - shown,
        "by_category": by_category,
        "by_layer": dict(sorted(by_layer.items())),
    }


def awareness_groups(impacts: Sequence[Impact]) -> list[AwarenessGroup]:
    """Gray-zone impacts grouped by identical score, category and evidence, in rank order.

    Impacts are first grouped by the identity of their Evidence objects (providers hand one object
    to every agent the same fact concerns, so agents sharing it are one group at the cost of a dict
    lookup, and a scoring.Crowd is one group as it stands), then groups whose evidence is equal in
    content are merged, comparing canonical JSON once a group.
    """
    # The evidence tuple itself first (agents may share one), then its Evidence objects' identities.
    by_tuple: dict[int, list[str]] = {}
    by_identity: dict[tuple[int, Any], tuple[tuple[Evidence, ...], int, list[str]]] = {}
    mixed = _MixedGroups()
    singles, crowds = (impacts.singles, impacts.crowds) if isinstance(impacts, Impacts) else (impacts, [])
    gray = [c for c in crowds if c.category == "gray_zone"]
    for item in _in_rank_order(singles, gray):
        if item.category != "gray_zone":
            continue
        ev = item.evidence
        agents = by_tuple.get(id(ev))  # every Evidence stays alive in `impacts`: no id is reused meanwhile
        if agents is None:
            same = id(ev[0]) if len(ev) == 1 else tuple(map(id, ev))
            agents = by_tuple[id(ev)] = by_identity.setdefault((item.score, same), (ev, item.score, []))[2]
        mixed.add(agents, item)
    mixed.sort()
    merged: dict[tuple[int, str], tuple[int, list[dict[str, Any]], list[str]]] = {}
    for ev, score, agents in by_identity.values():
        evidence = [e.to_dict() for e in ev]
        key = (score, json.dumps(evidence, sort_keys=True))
        if key in merged:
            merged[key][2].extend(agents)
        else:
            merged[key] = (score, evidence, agents)
    return [AwarenessGroup(score, "gray_zone", evidence, tuple(agents)) for score, evidence, agents in merged.values()]
