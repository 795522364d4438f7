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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from huddle.domain.scoring import Impact

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

    A few dict operations per impact: nothing is encoded or sorted per agent beyond the shown ones.
    """
    cut = len(impacts) if limit is None else min(limit, len(impacts))
    shown = [i.to_dict() for i in impacts[:cut]]
    rest = _slim(impacts[cut:])
    counts = {key: len(agents) for key, agents in _slim(impacts[:cut]).items()}
    for key, agents in rest.items():
        counts[key] = counts.get(key, 0) + len(agents)
    stored = shown + [
        {"agent_ids": agents, "score": score, "category": cat, "evidence": [{"layer": layer} for layer in layers]}
        for (score, cat, layers), agents in rest.items()
    ]
    return ImpactReport(shown, _summary(counts, len(impacts), cut), stored)


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


def _slim(impacts: Sequence[Impact]) -> dict[SlimKey, list[str]]:
    """Agent ids grouped by (score, category, layers)."""
    groups: dict[SlimKey, list[str]] = {}
    # Impacts of a crowd share one evidence tuple (domain/scoring.py): its group is found once.
    by_evidence: dict[int, list[str]] = {}
    for impact in impacts:
        ev = impact.evidence
        members = by_evidence.get(id(ev))  # `impacts` keeps every tuple alive: ids are not reused
        if members is None:
            layers = (ev[0].layer,) if len(ev) == 1 else tuple(sorted({e.layer for e in ev}))
            members = by_evidence[id(ev)] = groups.setdefault((impact.score, impact.category, layers), [])
        members.append(impact.agent_id)
    return groups


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
    to every agent the same fact concerns, so a crowd is one group at the cost of a dict lookup),
    then groups whose evidence is equal in content are merged, comparing canonical JSON once a group.
    """
    # The evidence tuple itself first (a crowd shares one), then its Evidence objects' identities.
    by_tuple: dict[int, list[str]] = {}
    by_identity: dict[tuple[int, Any], tuple[Impact, list[str]]] = {}
    for impact in impacts:
        if impact.category == "gray_zone":
            ev = impact.evidence
            # Every Evidence stays alive in `impacts` meanwhile, so no id is reused for another.
            agents = by_tuple.get(id(ev))
            if agents is None:
                same = id(ev[0]) if len(ev) == 1 else tuple(map(id, ev))
                agents = by_tuple[id(ev)] = by_identity.setdefault((impact.score, same), (impact, []))[1]
            agents.append(impact.agent_id)
    merged: dict[tuple[int, str], tuple[Impact, list[dict[str, Any]], list[str]]] = {}
    for first, agents in by_identity.values():
        evidence = [e.to_dict() for e in first.evidence]
        key = (first.score, json.dumps(evidence, sort_keys=True))
        if key in merged:
            merged[key][2].extend(agents)
        else:
            merged[key] = (first, evidence, agents)
    return [AwarenessGroup(i.score, i.category, evidence, tuple(agents)) for i, evidence, agents in merged.values()]
