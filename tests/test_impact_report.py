"""What an announce reports about its impacts: the strongest in full, counts over all, awareness groups."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from huddle.domain.impact_report import TOP_IMPACTS, awareness_groups, report, stored_agents
from huddle.domain.scoring import Evidence, Layer, score_agents


def module_evidence(module: str = "src/crowd") -> Evidence:
    return Evidence(Layer.SAME_MODULE, 30, (), f"they work in module {module}", extra={"modules": [module]})


def same_file(intent: str) -> Evidence:
    return Evidence(Layer.SAME_TARGET, 100, ("src/crowd/a.py",), "both announced", extra={"intent_id": intent})


def cochange() -> Evidence:
    return Evidence(Layer.CO_CHANGE, 60, ("src/crowd/b.py",), "committed together")


def crowd() -> dict[str, list[Evidence]]:
    """3 concerned (same file, and the module too), 2 at 60 (co-change and the module), 20 on the module only."""
    shared = module_evidence()
    found: dict[str, list[Evidence]] = {f"m{i:02d}": [shared] for i in range(20)}
    found |= {f"c{i}": [same_file(f"I-{i}"), shared] for i in range(3)}
    found |= {f"g{i}": [cochange(), shared] for i in range(2)}
    return found


def test_the_answer_shows_the_ten_strongest_in_full_and_counts_every_impact_by_category_and_layer() -> None:
    told = report(score_agents(crowd()))
    assert len(told.shown) == TOP_IMPACTS == 10
    assert [i["agent_id"] for i in told.shown] == ["c0", "c1", "c2", "g0", "g1", "m00", "m01", "m02", "m03", "m04"]
    assert [e["layer"] for e in told.shown[0]["evidence"]] == ["0a", "3"]
    assert told.summary == {
        "total": 25,
        "shown": 10,
        "omitted": 15,
        "by_category": {"concerned": 3, "gray_zone": 22, "pass": 0},
        "by_layer": {"0a": 3, "3": 25, "4": 2},
    }


def test_a_report_without_a_limit_shows_everything_and_omits_nothing() -> None:
    told = report(score_agents(crowd()), limit=None)
    assert len(told.shown) == 25
    assert (told.summary["shown"], told.summary["omitted"]) == (25, 0)


def test_no_impacts_is_an_empty_answer_with_zero_counts() -> None:
    told = report([])
    assert told.shown == [] and told.stored == []
    assert told.summary["total"] == 0 and set(told.summary["by_category"].values()) == {0}


def test_the_stored_column_keeps_the_shown_in_full_and_names_every_other_agent_in_groups() -> None:
    impacts = score_agents(crowd())
    told = report(impacts)
    assert told.stored[:10] == told.shown
    groups = told.stored[10:]
    assert groups == [
        {
            "agent_ids": [f"m{i:02d}" for i in range(5, 20)],
            "score": 30,
            "category": "gray_zone",
            "evidence": [{"layer": "3"}],
        }
    ]
    assert stored_agents(told.stored) == [i.agent_id for i in impacts]


def test_stored_agents_reads_the_older_one_impact_per_agent_form_too() -> None:
    older = [
        {"agent_id": "alice", "score": 100, "category": "concerned", "evidence": []},
        {"agent_id": "bob", "score": 10, "category": "pass", "evidence": []},
    ]
    assert stored_agents(older) == ["alice"]


def test_a_crowd_sharing_one_evidence_is_one_awareness_group_carrying_that_evidence_only() -> None:
    [group] = awareness_groups(score_agents({f"m{i:02d}": [module_evidence()] for i in range(50)}))
    assert group.agents == tuple(f"m{i:02d}" for i in range(50))
    assert (group.score, group.category) == (30, "gray_zone")
    assert group.evidence == [module_evidence().to_dict()]


def test_equal_evidence_built_separately_shares_a_group_and_different_evidence_does_not() -> None:
    found = {
        "a": [module_evidence("src/crowd")],
        "b": [module_evidence("src/crowd")],  # another object, same content
        "c": [module_evidence("src/crowd/deep")],
        "d": [same_file("I-9")],  # concerned: a thread tells them, not awareness
    }
    groups = awareness_groups(score_agents(found))
    assert [(g.agents, g.evidence[0]["modules"]) for g in groups] == [
        (("a", "b"), ["src/crowd"]),
        (("c",), ["src/crowd/deep"]),
    ]


def test_agents_whose_evidence_names_their_own_intent_get_separate_awareness_events() -> None:
    # Same layer, same score, same file: only the intent in the evidence differs, and it is each one's own.
    softened = {
        agent: [Evidence(Layer.SAME_TARGET, 50, ("a.py",), "disjoint symbols", extra={"intent_id": intent})]
        for agent, intent in (("a", "I-1"), ("b", "I-2"))
    }
    groups = awareness_groups(score_agents(softened))
    assert [(g.agents, g.evidence[0]["intent_id"]) for g in groups] == [(("a",), "I-1"), (("b",), "I-2")]


# -- crowds kept whole (scoring.Crowd) must report exactly what one Impact per member reports ---------

_EVIDENCE = [
    module_evidence("src/crowd"),
    module_evidence("src/other"),
    Evidence(Layer.SAME_MODULE, 30, (), "they work in module src/crowd"),  # equal content to no other
    cochange(),
    same_file("I-1"),
]


@settings(max_examples=200, deadline=None)
@given(
    singles=st.dictionaries(
        st.sampled_from([f"s{i}" for i in range(12)] + [f"m{i:02d}" for i in range(6)]),
        st.lists(st.sampled_from(range(len(_EVIDENCE))), min_size=1, max_size=3),
        max_size=8,
    ),
    crowds=st.lists(
        st.tuples(
            st.sets(st.sampled_from([f"m{i:02d}" for i in range(30)]), min_size=1), st.sampled_from([0, 1, 2, 3])
        ),
        max_size=3,
    ),
    limit=st.sampled_from([None, 0, 1, 3, 10]),
)
def test_a_crowd_reports_answers_stores_and_groups_awareness_as_one_impact_per_member_would(
    singles: dict[str, list[int]], crowds: list[tuple[set[str], int]], limit: int | None
) -> None:
    # What _score hands over: crowd members with no other evidence (the rest were moved to singles).
    taken: set[str] = set(singles)
    kept: list[tuple[set[str], Evidence]] = []
    for members, which in crowds:
        members = members - taken
        taken |= members
        kept.append((members, _EVIDENCE[which]))
    found = {agent: [_EVIDENCE[i] for i in dict.fromkeys(items)] for agent, items in singles.items()}
    flat = dict(found) | {agent: [evidence] for members, evidence in kept for agent in members}

    whole, per_member = score_agents(found, kept), score_agents(flat)
    assert list(whole) == list(per_member)
    assert (len(whole), whole.max_score, whole.categories()) == (
        len(per_member),
        max((i.score for i in per_member), default=0),
        {i.category for i in per_member},
    )
    for skip, only in ((None, None), ("pass", None), (None, "concerned"), (None, "gray_zone")):
        assert whole.agent_ids(skip=skip, only=only) == [
            i.agent_id for i in per_member if i.category != skip and only in (None, i.category)
        ]
    assert whole.of_category("gray_zone") == [i for i in per_member if i.category == "gray_zone"]
    assert report(whole, limit) == report(list(per_member), limit)
    assert awareness_groups(whole) == awareness_groups(list(per_member))
