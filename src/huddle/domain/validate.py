"""Field checks shared by every service method, so MCP, REST and CLI refuse bad input alike.

Transports already enforce JSON types through their schemas; these checks cover what a schema
cannot say well: sizes, ranges, identifiers, and the message telling the caller what to do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

from huddle.errors import InvalidInput

MAX_ID_CHARS = 128
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 20_000
MAX_LIST_ITEMS = 200
# Row ids, cursors and fencing tokens: SQLite counters that never get near it, and a bound every
# 64-bit integer column holds.
MAX_COUNTER = 2**62
CURSOR_RANGE = (0, MAX_COUNTER)
ID_RANGE = (1, MAX_COUNTER)
# Past this many digits an integer is described by its length, not spelled out.
MAX_SHOWN_DIGITS = 20
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")

T = TypeVar("T")


def encodable(value: str, field: str) -> str:
    """Refuses text the database cannot store: NUL bytes and lone UTF-16 surrogates (valid JSON!)."""
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL byte; send plain text", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field} contains an unpaired surrogate (\\ud800…); send valid Unicode text", field=field
        ) from None
    return value


def identifier(value: str, field: str) -> str:
    """An id chosen by a client (agent id, task id): short, printable, no spaces.

    Not stripped: an id with a stray space or newline is refused rather than quietly read as
    another id, so every layer sees exactly the id the agent registered with.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field} is required; pass the id you registered with", field=field)
    if len(value) > MAX_ID_CHARS or not _ID_RE.fullmatch(value):
        raise InvalidInput(
            f"{field} {value[:40]!r} is not a valid id: use at most {MAX_ID_CHARS} letters, digits "
            "and . _ : @ / + - (starting with a letter or digit)",
            field=field,
        )
    return value


def slug(name: str) -> str:
    """A readable id derived from a display name: `Alice (laptop)` → `alice-laptop`."""
    out = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return out[:MAX_ID_CHARS] or "agent"


def text(value: str | None, field: str, *, required: bool = True, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Free text (subject, content, plan): required unless said otherwise, and bounded."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"{field} is required and must not be empty", field=field)
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    encodable(value, field)
    if len(value) > max_chars:
        raise InvalidInput(
            f"{field} is {len(value)} characters; at most {max_chars} are allowed — summarise it", field=field
        )
    return value.strip()


def choice(value: str, field: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field} must be one of {', '.join(allowed)}; got {value!r}", field=field)
    return value


def number(value: float | None, field: str, *, low: float, high: float, default: float) -> float:
    """A bounded number such as a TTL or a timeout; `None` takes the default.

    The refusal states the bounds, and never fails itself: an integer of any size compares with
    them exactly and is shown by its length (formatting one as a float would overflow).
    """
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field} must be a number between {show(low)} and {show(high)}", field=field)
    if not low <= value <= high:
        raise InvalidInput(out_of_range(field, low, high, value), field=field)
    return float(value)


def within(value: float | None, field: str, bounds: tuple[float, float], *, default: float) -> float:
    """`number` with the (low, high) bounds a service names once and its tool schema reuses."""
    return number(value, field, low=bounds[0], high=bounds[1], default=default)


def out_of_range(field: str, low: float, high: float, value: object) -> str:
    """The one sentence for a number outside its field's bounds, on every transport."""
    return f"{field} must be between {show(low)} and {show(high)}; got {show(value)}"


def show(value: object) -> str:
    """A number as a person reads it: whole numbers without a fraction, huge integers by their length."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return f"{value:g}"
    if abs(value) >= 10**MAX_SHOWN_DIGITS:
        # Counting digits by bit length: str() of a huge integer is slow, past 4,300 digits refused.
        digits = math.floor(value.bit_length() * math.log10(2)) + 1
        return (
            f"an integer of about {digits} digits" if digits > 4000 else f"an integer of {len(str(abs(value)))} digits"
        )
    return str(value)


def items(values: Iterable[T] | None, field: str, *, max_items: int = MAX_LIST_ITEMS) -> list[T]:
    if values is None:
        return []
    if isinstance(values, str):
        raise InvalidInput(f"{field} must be a list, not a single string", field=field)
    out = list(values)
    if len(out) > max_items:
        raise InvalidInput(f"{field} has {len(out)} entries; at most {max_items} are allowed", field=field)
    return out
