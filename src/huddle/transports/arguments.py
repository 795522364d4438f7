"""One argument contract for every transport: a bounded JSON parse, bounded values, strict fields,
and one formatter for what is wrong.

MCP and REST both call operations through `BoundOperation`, so a hostile or careless body gets the
same answer whichever way it arrives: an `InvalidInput` naming the field and what to send instead.
Nothing here lets a parser or validator reach an exception that would become a 500 — deep
nesting (`RecursionError`), integer literals past Python's digit limit (`ValueError`), numbers too
large for SQLite or a float (`OverflowError`) are all refused before any service sees them.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from mcp.server.mcpserver.utilities.func_metadata import func_metadata

from huddle.domain import validate
from huddle.domain.principal import current_principal
from huddle.errors import InvalidInput
from huddle.transports.acting import acting_argument, authorize
from huddle.transports.operation import Operation, Result

# Deeper than any argument Huddle takes (the dependency map is three levels) by a wide margin.
MAX_DEPTH = 32
# SQLite stores 64-bit integers; anything wider cannot be a cursor, a limit, an id or a count.
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
# An integer literal longer than this is refused before int() parses it (int64 has 19 digits).
MAX_INT_DIGITS = 20
SCHEMA_HINT = "see the tool's input schema (MCP tools/list, or GET /api/v1/tools)"


class _Oversized:
    """Stands in for an integer literal too long to parse, so the walk below can name its field."""

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(text: str) -> int | _Oversized:
    digits = len(text.lstrip("-"))
    return _Oversized(digits) if digits > MAX_INT_DIGITS else int(text)


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a number JSON allows; send a finite number")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parses a request body into the arguments object, or raises InvalidInput saying why."""
    if not body.strip():
        return {}
    value = parse_json_value(body)
    if not isinstance(value, dict):
        raise InvalidInput('the request body must be a JSON object of arguments, e.g. {"agent_id": "alice"}')
    return value


def parse_json_value(body: bytes) -> Any:
    """Any JSON value, parsed without the parser's own failure modes: a body nested too deep or
    holding an integer literal too long is an InvalidInput naming where, never a RecursionError
    or ValueError. Values are not checked yet: run `check_values` on the object."""
    try:
        return json.loads(body, parse_int=_parse_int, parse_constant=_refuse_constant)
    except RecursionError:
        field = _deep_field(body)
        raise InvalidInput(
            f"{field or 'the request body'} is nested more than {MAX_DEPTH} levels deep; send flat JSON",
            field=field,
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("the request body is not valid JSON; send an object of arguments") from None


def _deep_field(body: bytes) -> str | None:
    """The top-level key under which a too-deep body nests (found by a scan, not a parse)."""
    text = body.decode("utf-8", errors="replace")
    depth = 0
    key: str | None = None
    in_string = escaped = False
    start = 0
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                if depth == 1:
                    candidate = text[start : i + 1]
                    rest = text[i + 1 : i + 64].lstrip()
                    if rest.startswith(":"):
                        try:
                            key = str(json.loads(candidate))
                        except ValueError:
                            key = None
        elif ch == '"':
            in_string, start = True, i
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return key
        elif ch in "]}":
            depth -= 1
    return None


Schema = dict[str, Any]


def check_values(args: dict[str, Any], schema: Schema | None = None) -> None:
    """Refuses values no field can take: too deep, integers beyond 64 bits, non-finite floats —
    and, with the tool's input `schema`, every number outside its field's `minimum`…`maximum`,
    in one sentence naming the field and both bounds (`ttl_s must be between 1 and 86400`).

    Iterative, so a deep value cannot exhaust the stack here either.
    """
    root = schema or {}
    properties = root.get("properties", {})
    stack: list[tuple[str, Any, int, Schema | None]] = [
        (str(name), value, 1, properties.get(name)) for name, value in args.items()
    ]
    while stack:
        where, value, depth, node = stack.pop()
        node = _resolve(root, node)
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidInput(f"{where} is nested more than {MAX_DEPTH} levels deep; send flat JSON", field=where)
            stack.extend(_children(root, where, value, depth, node))
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | _Oversized):
            continue
        bounds = _bounds(root, node)
        shown: Any = value.digits if isinstance(value, _Oversized) else value
        if bounds is not None:
            low, high = bounds
            # int against float compares exactly in Python, however many digits: no float() of a huge int.
            inside = not isinstance(value, _Oversized) and (
                low <= value <= high if isinstance(value, int) else math.isfinite(value) and low <= value <= high
            )
            if not inside:
                got = f"an integer of {value.digits} digits" if isinstance(value, _Oversized) else validate.show(shown)
                raise InvalidInput(
                    f"{where} must be between {validate.show(low)} and {validate.show(high)}; got {got}", field=where
                )
        elif isinstance(value, _Oversized):
            raise InvalidInput(
                # Not the 64-bit bounds: they are not this field's range, and naming them misleads.
                f"{where} is an integer of {value.digits} digits, larger than any value this field takes; "
                "send a number in the field's range (see the tool's description)",
                field=where,
            )
        elif isinstance(value, int) and not MIN_INT <= value <= MAX_INT:
            raise InvalidInput(
                f"{where} is beyond 64 bits, larger than any value this field takes; send a number in the"
                " field's range (see the tool's description)",
                field=where,
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{where} must be a finite number (got {value}); send a smaller number", field=where)


def _resolve(root: Schema, node: Schema | None) -> Schema | None:
    """`node` with a local `$ref` followed (pydantic puts named types under `$defs`)."""
    for _ in range(MAX_DEPTH):
        if not isinstance(node, dict) or "$ref" not in node:
            return node
        ref = str(node["$ref"])
        node = root.get("$defs", {}).get(ref.rsplit("/", 1)[-1]) if ref.startswith("#/$defs/") else None
    return None


def _options(root: Schema, node: Schema | None) -> list[Schema]:
    """The node and, for a union (`anyOf`), each alternative."""
    node = _resolve(root, node)
    if not isinstance(node, dict):
        return []
    alternatives = [_resolve(root, o) for o in node.get("anyOf", [])]
    return [node, *(o for o in alternatives if isinstance(o, dict))]


def _bounds(root: Schema, node: Schema | None) -> tuple[float, float] | None:
    """(minimum, maximum) of the numeric alternative of `node`, when it declares them."""
    for option in _options(root, node):
        if option.get("type") in ("integer", "number") and "minimum" in option and "maximum" in option:
            return option["minimum"], option["maximum"]
    return None


def _children(
    root: Schema, where: str, value: dict[str, Any] | list[Any], depth: int, node: Schema | None
) -> list[tuple[str, Any, int, Schema | None]]:
    """The entries of a list or object, each with the schema that describes it (None: free-form)."""
    options = _options(root, node)
    if isinstance(value, list):
        items = next((o.get("items") for o in options if o.get("type") == "array"), None)
        return [(f"{where}[{i}]", item, depth + 1, items) for i, item in enumerate(value)]
    described = next((o for o in options if o.get("type") == "object"), {})
    props = described.get("properties", {})
    extra = described.get("additionalProperties")
    return [
        (f"{where}.{key}", item, depth + 1, props.get(key, extra if isinstance(extra, dict) else None))
        for key, item in value.items()
    ]


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _message(err: Any, known: list[str], schema: Schema) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "arguments"
    kind = err["type"]
    if kind == "unexpected_keyword_argument":
        return f"{where}: unknown argument; this tool takes {', '.join(known) or 'no arguments'}"
    if kind == "missing_argument":
        return f"{where}: required; add it"
    if kind in _BOUND_ERRORS:
        # A number that only became one here (a numeric string): the same sentence as check_values.
        bounds = _bounds(schema, _node_at(schema, err["loc"]))
        if bounds is not None:
            return validate.out_of_range(where, bounds[0], bounds[1], err.get("input"))
    return f"{where}: {str(err['msg']).lower()}"


def _node_at(schema: Schema, loc: tuple[Any, ...]) -> Schema | None:
    """The schema of the value at pydantic's error location (names, list indexes, union branch tags)."""
    node: Schema | None = schema
    for step in loc:
        options = _options(schema, node)
        if isinstance(step, int):
            node = next((o.get("items") for o in options if o.get("type") == "array"), None)
        else:
            props: Schema = next((o["properties"] for o in options if isinstance(o.get("properties"), dict)), {})
            if step in props:
                node = props[step]
            # else: a union branch tag such as `int` or `function-after[...]`; the node stays
    return node


def invalid_arguments(exc: pydantic.ValidationError, known: list[str], schema: Schema | None = None) -> InvalidInput:
    """Turns pydantic's report into one sentence per field the caller can act on."""
    errors = exc.errors()
    parts = [_message(err, known, schema or {}) for err in errors[:10]]
    first = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
    return InvalidInput("invalid arguments — " + "; ".join(parts) + "; " + SCHEMA_HINT, field=first or None)


class BoundOperation:
    """An operation behind the shared argument contract; both transports call it the same way."""

    def __init__(self, op: Operation):
        self.op = op
        self._call: Callable[..., Awaitable[Result]] = pydantic.validate_call(op.fn)
        self.known = list(inspect.signature(op.fn).parameters)
        # The input schema tools/list and GET /api/v1/tools publish: its bounds are the ones enforced.
        self.schema: Schema = func_metadata(op.fn).arg_model.model_json_schema()
        self.acting = acting_argument(op, self.known)

    async def __call__(self, args: dict[str, Any]) -> Result:
        """Checks `args` (raising InvalidInput naming the field), that the caller may make this call
        (token mode: Forbidden when it names another agent), and runs the operation."""
        check_values(args, self.schema)
        if current_principal.get() is not None:
            args = dict(args)  # `authorize` fills in the caller's id; the caller's dict stays as sent
            authorize(self.op, self.acting, args)
        try:
            # validate_call on a coroutine function validates when awaited, not when called.
            return await self._call(**args)
        except pydantic.ValidationError as exc:
            raise invalid_arguments(exc, self.known, self.schema) from None
