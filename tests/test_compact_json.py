"""compact_json: the same text json.dumps gives with the same options, from encoders made once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from huddle import compact_json

VALUES: list[Any] = [
    {"b": [1, 2.5, None, True], "a": "é ✓ \u2028 \x00"},
    ["naïve", {"nested": {"k": "v"}}, -0.0, 10**20],
    "a lone \ud800 surrogate",
    [],
]


@pytest.mark.parametrize("value", VALUES)
def test_stored_text_is_json_dumps_compact_and_ascii_only(value: Any) -> None:
    text = compact_json.stored(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert text.isascii()


@pytest.mark.parametrize("value", VALUES)
def test_readable_text_keeps_non_ascii_characters_as_they_are(value: Any) -> None:
    assert compact_json.readable(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_a_value_json_cannot_encode_is_refused_as_json_dumps_refuses_it() -> None:
    with pytest.raises(TypeError):
        compact_json.stored({"when": object()})
    with pytest.raises(ValueError):
        compact_json.readable(_circular())


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop
