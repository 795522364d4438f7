"""Readable ids for server-made records: T-12 for threads, I-7 for intents.

Agents quote these in messages ("see T-12"), so they are short; the number is the row id.
"""

from __future__ import annotations

from huddle.domain.validate import ID_RANGE, out_of_range
from huddle.errors import InvalidInput

# More digits than any id in ID_RANGE has.
MAX_REF_DIGITS = len(str(ID_RANGE[1]))


def thread_ref(number: int) -> str:
    return f"T-{number}"


def intent_ref(number: int) -> str:
    return f"I-{number}"


def parse_ref(value: str | int, prefix: str, field: str) -> int:
    """Accepts `T-12`, `t-12`, `12` or 12 and returns 12."""
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must look like {prefix}-12", field=field)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if text[:2].upper() == f"{prefix}-":
            text = text[2:]
        if not (text.isascii() and text.isdigit()):
            raise InvalidInput(f"{field} {value[:40]!r} is not an id like {prefix}-12", field=field)
        if len(text.lstrip("0")) > MAX_REF_DIGITS:  # int() of thousands of digits is slow, and past 4,300 refused
            raise InvalidInput(
                f"{field} has {len(text)} digits; no id is that long: send one like {prefix}-12", field=field
            )
        number = int(text.lstrip("0") or "0")
    else:
        raise InvalidInput(f"{field} must look like {prefix}-12", field=field)
    low, high = ID_RANGE
    if not low <= number <= high:
        raise InvalidInput(out_of_range(field, low, high, number), field=field)
    return number
