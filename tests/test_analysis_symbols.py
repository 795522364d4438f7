"""Every supported language's fixture file yields its definitions with the right lines (F-15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huddle.analysis.languages import EXTENSIONS, GRAMMARS, available
from huddle.analysis.symbols import parse_definitions, symbols_for_ranges

FIXTURES = Path(__file__).parent / "fixtures" / "symbols"
EXPECTED: dict[str, list[list[object]]] = json.loads((FIXTURES / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_file_yields_its_definitions_with_correct_lines(name: str) -> None:
    found = parse_definitions(name, (FIXTURES / name).read_bytes())
    assert found is not None, f"no grammar parsed {name}"
    assert [[d.name, d.start, d.end] for d in found] == EXPECTED[name]


def test_every_supported_language_has_a_fixture_and_its_grammar_loads_offline() -> None:
    covered = {EXTENSIONS[Path(name).suffix] for name in EXPECTED}
    assert covered == set(GRAMMARS)
    assert available() == dict.fromkeys(GRAMMARS, True)


def test_a_file_no_grammar_parses_has_no_definitions_rather_than_an_error() -> None:
    assert parse_definitions("notes.txt", b"def looks_like_python():\n    pass\n") is None


def test_edit_ranges_map_to_the_innermost_definition_or_stay_bare_lines_outside_any() -> None:
    source = (FIXTURES / "sample.py").read_bytes()
    definitions = parse_definitions("sample.py", source)
    assert definitions is not None
    spans = symbols_for_ranges(definitions, [[10, 10], [5, 6], [1, 1]])
    assert [(s.name, s.start, s.end) for s in spans] == [
        ("Greeter.bye.inner", 9, 10),
        ("Greeter.hello", 5, 6),
        ("lines 1-1", 1, 1),
    ]
