"""Symbol awareness (SPEC F-15): same file, provably different symbols lowers 100 to 50.

Each side's symbols in a file are spans: announced names (resolved to their lines when the file's
definitions are indexed) and the definitions their logged edit ranges fall in. Pure: the scoring
service gathers the spans, this decides and words the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from huddle.domain.scoring import Evidence

SOFTENED_SCORE = 50


@dataclass(frozen=True)
class Span:
    """A symbol one side touches: its name and, when known, its lines (1-based, inclusive)."""

    name: str
    start: int | None = None
    end: int | None = None
    bare: bool = False  # lines outside every known definition: a place, not a name

    def meets(self, other: Span) -> bool:
        """Same symbol: overlapping lines when both are known, otherwise the same (tail) name.

        Bare lines against a name whose lines are unknown cannot be told apart: they meet.
        """
        if self.start is not None and self.end is not None and other.start is not None and other.end is not None:
            return self.start <= other.end and other.start <= self.end
        if self.bare or other.bare:
            return True
        a, b = self.name, other.name
        return a == b or a.endswith("." + b) or b.endswith("." + a)


def judge_symbols(
    evidence: Evidence, mine: Mapping[str, Sequence[Span]], theirs: Mapping[str, Sequence[Span]]
) -> Evidence:
    """Lowers a same-file 100 to 50 when, in every file, both sides' symbols are known and disjoint.

    Overlapping symbols keep 100 and are named; a file where either side names nothing keeps 100
    as it is (nothing proves the work is apart).
    """
    if evidence.score < 100 or not evidence.files:
        return evidence
    shared: set[str] = set()
    apart: list[tuple[str, list[str], list[str]]] = []
    for path in evidence.files:
        my_spans, their_spans = mine.get(path, ()), theirs.get(path, ())
        if not my_spans or not their_spans:
            return evidence
        meeting = {s.name for m in my_spans for t in their_spans if m.meets(t) for s in (m, t)}
        if meeting:
            shared |= meeting
        else:
            apart.append((path, sorted({s.name for s in my_spans}), sorted({s.name for s in their_spans})))
    if shared:
        return replace(
            evidence,
            symbols=tuple(sorted(shared)),
            reason=evidence.reason + f" — both touch {', '.join(sorted(shared))}",
        )
    names = sorted({n for _, a, b in apart for n in (*a, *b)})
    detail = "; ".join(f"{path}: yours {', '.join(a)}, theirs {', '.join(b)}" for path, a, b in apart)
    return replace(
        evidence,
        score=SOFTENED_SCORE,
        symbols=tuple(names),
        reason=evidence.reason + f" — but the symbols are disjoint ({detail}), so 100 → {SOFTENED_SCORE}",
        extra={**evidence.extra, "symbols_disjoint": True},
    )
