"""Scoring rules: the highest layer wins, categories and verdicts follow SPEC F-11 … F-13."""

from __future__ import annotations

from huddle.domain.scoring import Evidence, Layer, category, score_agents, verdict
from huddle.domain.symbols import Span, judge_symbols


def evidence(layer: str) -> Evidence:
    return Evidence(layer, Layer.SCORES[layer], ("a.py",), f"layer {layer}")


def test_an_agents_score_is_its_highest_layer_and_all_evidence_is_kept() -> None:
    [impact] = score_agents({"bob": [evidence("3"), evidence("0b"), evidence("0a")]})
    assert impact.score == 100
    assert [e.layer for e in impact.evidence] == ["0a", "0b", "3"]
    assert impact.category == "concerned"


def test_categories_split_at_90_and_30() -> None:
    assert [category(s) for s in (100, 90, 89, 30, 29, 0)] == [
        "concerned",
        "concerned",
        "gray_zone",
        "gray_zone",
        "pass",
        "pass",
    ]


def test_verdict_is_consult_when_anyone_is_concerned_else_caution_for_gray_zone_else_proceed() -> None:
    concerned = score_agents({"a": [evidence("0a")], "b": [evidence("3")]})
    gray = score_agents({"b": [evidence("3")]})
    assert verdict(concerned) == "consult"
    assert verdict(gray) == "caution"
    assert verdict([]) == "proceed"


def test_disjoint_symbols_on_the_same_file_lower_100_to_50_and_say_why() -> None:
    softened = judge_symbols(evidence("0a"), {"a.py": [Span("login")]}, {"a.py": [Span("logout")]})
    assert softened.score == 50
    assert "disjoint" in softened.reason
    assert softened.symbols == ("login", "logout")


def test_symbols_do_not_soften_when_they_overlap_or_one_side_named_none() -> None:
    same = judge_symbols(evidence("0a"), {"a.py": [Span("login")]}, {"a.py": [Span("login"), Span("x")]})
    one_sided = judge_symbols(evidence("0a"), {"a.py": [Span("login")]}, {})
    assert same.score == 100
    assert same.symbols == ("login",)
    assert one_sided.score == 100


def test_symbols_with_known_lines_overlap_by_lines_not_by_name() -> None:
    nested = judge_symbols(evidence("0a"), {"a.py": [Span("Greeter", 1, 20)]}, {"a.py": [Span("Greeter.hello", 5, 9)]})
    apart = judge_symbols(evidence("0a"), {"a.py": [Span("Greeter.hello", 5, 9)]}, {"a.py": [Span("top", 22, 30)]})
    assert nested.score == 100
    assert nested.symbols == ("Greeter", "Greeter.hello")
    assert apart.score == 50


def test_bare_edited_lines_against_a_symbol_whose_lines_are_unknown_keep_100() -> None:
    unknown = judge_symbols(evidence("0a"), {"a.py": [Span("logout")]}, {"a.py": [Span("lines 2-3", 2, 3, bare=True)]})
    assert unknown.score == 100
