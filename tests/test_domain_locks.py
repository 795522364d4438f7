"""Lock paths, overlap and fairness rules (domain/locks.py): pure table tests plus an exhaustive oracle."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from huddle.domain.locks import (
    EXCLUSIVE,
    INTENT,
    SHARED,
    Claim,
    PatternError,
    anchor_prefixes,
    blockers,
    compatible,
    compile_pattern,
    covers,
    is_glob,
    overlaps,
)

# (a, b, overlap?) — every row is checked in both directions.
OVERLAP_TABLE = [
    # files
    ("src/a.py", "src/a.py", True),
    ("src/a.py", "src/b.py", False),
    ("src/a.py", "src/a.pyc", False),
    ("src/a", "src/a/b.py", True),  # a name is a file or a parent, never both: `src/a` claims below it
    ("src/a", "src/a/", True),
    ("src/a", "src/a/*.py", True),
    ("src/a", "src/ab/c.py", False),
    # directories
    ("src/", "src/a.py", True),
    ("src/", "src/deep/er/a.py", True),
    ("src/auth/", "src/authz/x.py", False),
    ("src/auth/", "src/", True),
    ("src/auth/", "src/auth", True),  # one name: `src/auth` and `src/auth/` are the same claim
    ("src/auth/", "lib/auth/", False),
    # * stays inside a segment
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/.py", True),
    ("src/*.py", "src/x/a.py", False),
    ("src/*/models.py", "src/auth/models.py", True),
    ("src/*/models.py", "src/models.py", False),
    ("src/*/models.py", "src/a/b/models.py", False),
    ("src/*/models.py", "src/auth/", True),
    ("src/*/models.py", "src/auth/views.py", False),
    # ? is one character, never a slash
    ("src/?.py", "src/a.py", True),
    ("src/?.py", "src/ab.py", False),
    ("a?b", "a/b", False),
    # classes
    ("src/[abc].py", "src/b.py", True),
    ("src/[abc].py", "src/d.py", False),
    ("src/[a-c].py", "src/b.py", True),
    ("src/[!a-c].py", "src/b.py", False),
    ("src/[^a-c].py", "src/d.py", True),
    ("src/[]].py", "src/].py", True),
    ("src/[a-].py", "src/-.py", True),
    ("pages/[[]id].tsx", "pages/*].tsx", True),  # [[] escapes a bracket
    ("pages/[[]id].tsx", "pages/i.tsx", False),
    ("src/[.py", "src/[.py", True),  # an unclosed [ is literal
    # ** spans whole segments, including none
    ("src/**/x.py", "src/x.py", True),
    ("src/**/x.py", "src/a/b/c/x.py", True),
    ("src/**/x.py", "src/ax.py", False),
    ("src/**/x.py", "lib/x.py", False),
    ("**/x.py", "x.py", True),
    ("**/x.py", "a/b/x.py", True),
    ("**", "anything/at/all.txt", True),
    ("src/**", "src/a.py", True),
    ("src/**", "src", True),  # the plain name `src` claims everything below `src/`
    ("src/a**b", "src/ab", True),  # ** inside a segment is *
    ("src/a**b", "src/a/b", False),
    # glob ending in / covers everything below each matched directory
    ("src/*/", "src/auth/deep/x.py", True),
    ("src/*/", "src/x.py", False),
    # glob against glob
    ("src/*.py", "src/a*", True),
    ("src/*.py", "src/*.js", False),
    ("src/*/models.py", "src/auth/*", True),
    ("src/*/models.py", "src/*/views.py", False),
    ("src/**/test_*.py", "src/*/test_a.py", True),
    ("src/**/test_*.py", "src/**/*_test.py", True),  # test_x_test.py
    ("src/**/test_*.py", "lib/**", False),
    ("a/**/b", "*/a/b", True),  # a/a/b
    ("*/x", "x/*", True),  # x/x
    ("*/x", "y/*", True),  # y/x
    ("?", "??", False),
    ("[ab]/c", "[bc]/c", True),
    ("[ab]/c", "[cd]/c", False),
    ("[!a]", "[a]", False),
    ("**/a/**", "**/b/**", True),  # a/b/x
    ("x*y", "*z*", True),  # xzy
    ("x*", "*y", True),
    ("x?", "?y", True),
    ("x?", "*yz", False),
    ("src/", "src/**/x.py", True),
    ("src/auth/", "src/*/x.py", True),
    ("src/auth/", "src/*.py", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAP_TABLE)
def test_overlap_table_is_exact_and_symmetric(a, b, expected):
    pa, pb = compile_pattern(a), compile_pattern(b)
    assert overlaps(pa, pb) is expected
    assert overlaps(pb, pa) is expected


def test_kinds_and_anchors_follow_the_path_shape():
    assert (compile_pattern("src/a.py").kind, compile_pattern("src/a.py").anchor) == ("file", "src/a.py")
    assert (compile_pattern("src/auth/").kind, compile_pattern("src/auth/").anchor) == ("dir", "src/auth/")
    assert (compile_pattern("src/*/m.py").kind, compile_pattern("src/*/m.py").anchor) == ("glob", "src/")
    assert compile_pattern("**/m.py").anchor == ""
    assert compile_pattern("src/a*.py").anchor == "src/"


def test_a_literal_path_with_glob_characters_matches_only_itself():
    literal = compile_pattern("pages/[id].tsx", literal=True)
    assert literal.kind == "file"
    assert overlaps(literal, compile_pattern("pages/[id].tsx", literal=True))
    assert not overlaps(literal, compile_pattern("pages/i.tsx"))
    assert overlaps(literal, compile_pattern("pages/*.tsx"))


def test_covers_answers_for_a_single_file():
    assert covers(compile_pattern("pages/[[]id].tsx"), "pages/[id].tsx")
    assert covers(compile_pattern("src/**/*.py"), "src/a/b.py")
    assert not covers(compile_pattern("src/**/*.py"), "src/a/b.js")


@pytest.mark.parametrize("bad", ["src/[!\x00-\U0010ffff]x", "/abs", "a//b", ""])
def test_a_pattern_that_can_match_nothing_is_refused(bad):
    with pytest.raises(PatternError):
        compile_pattern(bad)


def test_a_slash_always_separates_segments_even_inside_brackets():
    # `src/[/]x` is the segments `src`, `[` and `]x`: an unclosed bracket, so literal.
    assert covers(compile_pattern("src/[/]x"), "src/[/]x")


def test_reversed_ranges_are_refused_with_the_fix():
    with pytest.raises(PatternError, match="write a-z"):
        compile_pattern("src/[z-a].py")


def test_anchor_prefixes_list_every_directory_above():
    # Bare names too: a file lease on the name `src` claims everything below `src/`.
    assert anchor_prefixes("src/auth/x.py") == ["", "src", "src/", "src/auth", "src/auth/", "src/auth/x.py"]
    assert anchor_prefixes("src/") == ["", "src", "src/"]
    assert anchor_prefixes("") == [""]


@pytest.mark.parametrize(
    ("held", "requested", "ok"),
    [
        (EXCLUSIVE, EXCLUSIVE, False),
        (EXCLUSIVE, SHARED, False),
        (EXCLUSIVE, INTENT, True),
        (SHARED, EXCLUSIVE, False),
        (SHARED, SHARED, True),
        (SHARED, INTENT, True),
        (INTENT, EXCLUSIVE, True),
        (INTENT, SHARED, True),
        (INTENT, INTENT, True),
    ],
)
def test_mode_compatibility_matches_the_spec(held, requested, ok):
    assert compatible(held, requested) is ok


def _claim(agent, path, mode):
    return Claim(agent, compile_pattern(path), mode)


def test_a_later_compatible_request_does_not_jump_an_earlier_incompatible_waiter():
    holders = [_claim("a", "src/x.py", SHARED)]
    waiting = [_claim("b", "src/", EXCLUSIVE)]
    assert blockers(_claim("c", "src/x.py", SHARED), holders, []) == []
    assert blockers(_claim("c", "src/x.py", SHARED), holders, waiting) == waiting


def test_own_locks_and_intent_requests_are_never_blocked():
    holders = [_claim("a", "src/x.py", EXCLUSIVE)]
    assert blockers(_claim("a", "src/x.py", EXCLUSIVE), holders, []) == []
    assert blockers(_claim("b", "src/x.py", INTENT), holders, []) == []
    assert blockers(_claim("b", "src/y.py", EXCLUSIVE), holders, []) == []


# -- an exhaustive oracle: enumerate every short path and match it with an independent regex -----

ALPHABET = "ab/."
MAX_LEN = 6
PATTERNS = [
    "a",
    "b",
    "a/b",
    "*",
    "*/b",
    "a/*",
    "a*",
    "*b",
    "?",
    "??",
    "a?",
    "[ab]",
    "[!a]",
    "a/",
    "a/b/",
    "*/",
    "**",
    "**/b",
    "a/**",
    "a/**/b",
    "**/a/**",
    "*.a",
    "a.*",
    "?/?",
    "[!.]*",
    "a/*/b",
    "*/*",
    ".*",
    "b/**/a",
    "*/a/",
]


def _oracle_regex(pattern):
    segments = pattern.rstrip("/").split("/")
    parts = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            parts.append(".+" if last else "(?:[^/]+/)*")
            if last:
                return re.compile("".join(parts))
            continue
        out, j = "", 0
        while j < len(seg):
            ch = seg[j]
            if ch == "*":
                while j < len(seg) and seg[j] == "*":
                    j += 1
                out += "[^/]*"
                continue
            if ch == "?":
                out += "[^/]"
            elif ch == "[":
                end = seg.index("]", j + 2)
                body = seg[j + 1 : end]
                out += "(?!/)[^" + re.escape(body[1:]) + "]" if body[0] == "!" else "[" + re.escape(body) + "]"
                j = end
            else:
                out += re.escape(ch)
            j += 1
        parts.append(out + ("" if last else "/"))
    if pattern.endswith("/"):
        parts.append("/.+")
    elif not is_glob(pattern):
        parts.append("(?:/.+)?")  # a plain name claims itself and everything below it
    return re.compile("".join(parts))


def _oracle_overlap(a, b, matched):
    """Shared files; but a glob meets a plain name only by matching it or lying below it."""
    for name, glob in ((a, b), (b, a)):
        if is_glob(glob) and not is_glob(name) and not name.endswith("/"):
            literal = list(itertools.takewhile(lambda seg: not is_glob(seg), glob.split("/")))
            return bool(_oracle_regex(glob).fullmatch(name)) or "".join(f"{s}/" for s in literal).startswith(name + "/")
    return bool(matched[a] & matched[b])


VALID = re.compile(r"[^/]+(?:/[^/]+)*")
UNIVERSE = [
    w for n in range(1, MAX_LEN + 1) for w in map("".join, itertools.product(ALPHABET, repeat=n)) if VALID.fullmatch(w)
]


def test_overlap_agrees_with_brute_force_enumeration_for_every_pair_of_short_patterns():
    matched = {p: {w for w in UNIVERSE if _oracle_regex(p).fullmatch(w)} for p in PATTERNS}
    for a, b in itertools.combinations_with_replacement(PATTERNS, 2):
        expected = _oracle_overlap(a, b, matched)
        assert overlaps(compile_pattern(a), compile_pattern(b)) is expected, (a, b)


def test_covers_agrees_with_the_oracle_on_random_paths():
    rng = random.Random(20240611)
    for _ in range(2000):
        pattern = rng.choice(PATTERNS)
        path = rng.choice(UNIVERSE)
        assert covers(compile_pattern(pattern), path) is bool(_oracle_regex(pattern).fullmatch(path)), (pattern, path)
