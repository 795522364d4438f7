"""One argument contract for every transport: a bounded JSON parse, bounded values, strict fields,
and one formatter for what is wrong.

MCP and REST both call operations through `BoundOperation`, so a hostile or careless body gets the
same answer whichever way it arrives: an `InvalidInput` naming the field and what to send instead.
Nothing here lets a parser or validator reach an exception that would become a 500 — deep
nesting (`RecursionError`), integer literals past Python's digit limit (`ValueError`), numbers too
large for SQLite or a float (`OverflowError`) are all refused before any service sees them.

JSON types are strict: a value is accepted when the tool's published input schema allows its JSON
type, and never converted into one it allows — `"30"` is not a number, `true` is not 1, `5` is
not a string. The only conversions left are JSON Schema's own: an integer is a number, and a
number with no fraction (`30.0`) is an integer.
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
# The JSON types each node of a schema allows, by the node's id (see type_table).
TypeTable = dict[int, frozenset[str] | None]


def check_values(args: dict[str, Any], schema: Schema | None = None, table: TypeTable | None = None) -> None:
    """Refuses values no field can take: too deep, integers beyond 64 bits, non-finite floats —
    and, with the tool's input `schema`, every value whose JSON type its field does not allow
    (`ttl_s must be a number between 1 and 86400; got the string "30"; send 30 without quotes`)
    and every number outside its field's `minimum`…`maximum`, in one sentence naming the field
    and both bounds (`ttl_s must be between 1 and 86400; got 0`).

    Iterative, so a deep value cannot exhaust the stack here either. Fields are checked in the
    order they were sent and the first wrong one is the error's `field`; up to MAX_PROBLEMS are
    told in one answer, with the required arguments missing, so a client mends them all at once.
    `table` is `type_table(schema)`, for a caller that checks many calls against one schema.
    """
    root = schema or {}
    properties = root.get("properties", {})
    stack: list[tuple[str, Any, int, Schema | None]] = [
        (str(name), value, 1, properties.get(name)) for name, value in reversed(args.items())
    ]
    problems: list[InvalidInput] = []
    while stack and len(problems) < MAX_PROBLEMS:
        where, value, depth, node = stack.pop()
        try:
            stack.extend(reversed(_check_value(root, table, where, value, depth, node)))
        except InvalidInput as problem:
            problems.append(problem)
    if problems:
        missing = [f"{name}: required; add it" for name in root.get("required", []) if name not in args]
        unknown = [
            f"{_key(str(name))}: unknown argument; this tool takes {', '.join(properties)}"
            for name in args
            if properties and name not in properties
        ]
        told = [p.message for p in problems] + (missing + unknown)[: MAX_PROBLEMS - len(problems)]
        raise InvalidInput(". Also: ".join(told), field=problems[0].field)


# More wrong values than this in one call are not all named: the answer stays short.
MAX_PROBLEMS = 10


def _check_value(
    root: Schema, table: TypeTable | None, where: str, value: Any, depth: int, node: Schema | None
) -> list[tuple[str, Any, int, Schema | None]]:
    """Raises InvalidInput if `value` is wrong for `node`; else its entries to check next (a list or object's)."""
    node = _resolve(root, node)
    expected = table[id(node)] if table is not None and id(node) in table else _types(root, node)
    numeric = type(value) in _NUMBER_TYPES
    if expected is not None and not (expected & _NUMERIC if numeric else _JSON_TYPES.get(type(value)) in expected):
        raise _wrong_type(root, where, value, node, expected)
    if isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{where} is nested more than {MAX_DEPTH} levels deep; send flat JSON", field=where)
        if isinstance(value, dict):
            for key in value:
                if not key.isascii():
                    validate.encodable(key, f"{where} key {_key(key)!r}")
        return _children(root, where, value, depth, node)
    if not numeric:
        if type(value) is str and not value.isascii():
            validate.encodable(value, where)  # a lone surrogate: no response or database could hold it
        return []
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
    if expected is not None and "number" not in expected and isinstance(value, float) and not value.is_integer():
        raise _wrong_type(root, where, value, node, expected)
    return []


# JSON Schema's names for JSON's types, in the order a message lists them.
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
_NUMERIC = frozenset({"integer", "number"})
_NUMBER_TYPES = frozenset({int, float, _Oversized})  # not bool: true is not a number
# A string shown in a message is cut to this many characters.
SHOWN_CHARS = 40


def json_text_fields(schema: Schema) -> dict[str, tuple[type, ...]]:
    """The arguments a client may send as JSON text inside a string, which the MCP transport parses
    for it (mcp_server.py; some clients send `"[\\"a\\"]"` for a list, or `"null"` for nothing),
    each with the Python types that text may hold: the array or object the argument takes, and
    null when it is optional. An argument that takes a string keeps its text as sent."""
    required = set(schema.get("required", []))
    fields: dict[str, tuple[type, ...]] = {}
    for name, node in schema.get("properties", {}).items():
        types = _types(schema, _resolve(schema, node))
        if types is None or "string" in types:
            continue
        held: list[type] = [kind for word, kind in (("array", list), ("object", dict)) if word in types]
        if "null" in types or name not in required:
            held.append(type(None))
        if held:
            fields[str(name)] = tuple(held)
    return fields


def optional_non_null(schema: Schema) -> frozenset[str]:
    """Optional arguments whose type has no null: null sent for one means "not given" (clients
    with strict tool schemas send null for every optional argument they leave out)."""
    required = set(schema.get("required", []))
    optional = (name for name in schema.get("properties", {}) if name not in required)
    return frozenset(
        str(name)
        for name in optional
        if (types := _types(schema, _resolve(schema, schema["properties"][name]))) is not None and "null" not in types
    )


# The JSON Schema type of each Python type a JSON parse gives (a number's is checked apart: see
# check_values). Looked up by exact type, once per value on every call: no chain of isinstance.
_JSON_TYPES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    type(None): "null",
    list: "array",
    dict: "object",
    int: "integer",
    float: "number",
}
# What a node of one declared type takes: a number's includes the integers.
_ONE_TYPE = {kind: frozenset({kind, "integer"} if kind == "number" else {kind}) for kind in _TYPE_WORDS}


def type_table(schema: Schema) -> TypeTable:
    """`_types` of every node of `schema`, worked out once for an operation instead of on each call.
    By id: valid while `schema` lives, so keep the two together (BoundOperation does)."""
    table: TypeTable = {}
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            table[id(node)] = _types(schema, _resolve(schema, node))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return table


def _types(root: Schema, node: Schema | None) -> frozenset[str] | None:
    """The JSON types a resolved `node` allows (its own, or its `anyOf` alternatives'); None when it
    declares none (a free-form value such as a payload takes any)."""
    if not isinstance(node, dict):
        return None
    kind = node.get("type")
    if "anyOf" not in node and isinstance(kind, str):
        return _ONE_TYPE.get(kind, frozenset({kind}))
    options = node.get("anyOf")
    alternatives: list[Schema | None] = (
        [_resolve(root, o) for o in options] if isinstance(options, list) and options else [node]
    )
    found: set[str] = set()
    for option in alternatives:
        kind = option.get("type") if isinstance(option, dict) else None
        if isinstance(kind, str):
            found.add(kind)
        elif isinstance(kind, list) and kind:
            found.update(str(k) for k in kind)
        else:
            return None  # an alternative without a type takes anything
    if "number" in found:
        found.add("integer")
    return frozenset(found)


def _expected(root: Schema, node: Schema | None, types: frozenset[str]) -> str:
    """What a field takes, in words: `a number between 1 and 86400`, `one of "a", "b"`, `a string or an integer`."""
    words: list[str] = []
    bounds = _bounds(root, node)
    enum = next((o["enum"] for o in _options(root, node) if isinstance(o.get("enum"), list)), None)
    shown = [t for t in _TYPE_WORDS if t in types and not (t == "integer" and "number" in types)]
    for kind in shown:
        if kind == "null" and len(shown) > 1:
            continue  # null is the same as leaving an optional field out; the hint says so
        if kind == "string" and enum:
            words.append("one of " + ", ".join(json.dumps(e) for e in enum))
        elif kind in _NUMERIC and bounds is not None:
            words.append(f"{_TYPE_WORDS[kind]} between {validate.show(bounds[0])} and {validate.show(bounds[1])}")
        else:
            words.append(_TYPE_WORDS[kind])
    return " or ".join(words)


def _shown(value: Any) -> str:
    """A value as a message names it: `the string "30"`, `the number 5`, `true`, `an array`."""
    if isinstance(value, str):
        text = json.dumps(value[:SHOWN_CHARS], ensure_ascii=False)
        return f'the string {text[:-1]}…"' if len(value) > SHOWN_CHARS else f"the string {text}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, _Oversized):
        return f"an integer of {value.digits} digits"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**validate.MAX_SHOWN_DIGITS:
        return validate.show(value)  # "an integer of 30 digits"
    if isinstance(value, int | float):
        return f"the number {validate.show(value)}"
    return "an array" if isinstance(value, list) else "an object"


def _number_in(text: str) -> int | float | None:
    """The JSON number a string spells (`"30"`, `" 2.5 "`), or None."""
    text = text.strip()
    if not text or len(text) > MAX_INT_DIGITS:
        return None
    try:
        number = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, InvalidInput):
        return None
    return number if isinstance(number, int | float) and not isinstance(number, bool) else None


def _holds_json(text: str, types: frozenset[str]) -> bool:
    """True when `text` is JSON text of an array or object of one of `types` (a value sent as its own text)."""
    stripped = text.strip()
    if not stripped.startswith(("[", "{")):
        return False
    try:
        value = parse_json_value(stripped.encode())
    except InvalidInput:
        return False
    return ("array" in types and isinstance(value, list)) or ("object" in types and isinstance(value, dict))


def _fix(root: Schema, value: Any, node: Schema | None, types: frozenset[str]) -> str:
    """What to send instead, when there is something more exact to say than the field's type.
    (Null for an optional argument never gets here: BoundOperation reads it as "not given".)"""
    if isinstance(value, str) and types & _NUMERIC:
        number = _number_in(value)
        bounds = _bounds(root, node)
        fits = number is not None and (
            "number" in types or (isinstance(number, int) or (math.isfinite(number) and number.is_integer()))
        )
        if number is not None and fits and (bounds is None or bounds[0] <= number <= bounds[1]):
            return f"send {value.strip()} without quotes"
    if isinstance(value, str) and "boolean" in types and value.strip().lower() in ("true", "false"):
        return f"send {value.strip().lower()} without quotes"
    if isinstance(value, int | float) and not isinstance(value, bool) and "string" in types:
        enum = next((o["enum"] for o in _options(root, node) if isinstance(o.get("enum"), list)), None)
        if enum is None or str(value) in enum:
            return f"send it in quotes: {json.dumps(str(value))}"
    if isinstance(value, str) and _holds_json(value, types):
        return "send the value itself, not JSON text in a string"
    if isinstance(value, str) and "array" in types and len(value) <= SHOWN_CHARS:
        return f"send an array: {json.dumps([value], ensure_ascii=False)}"
    if isinstance(value, float) and types & _NUMERIC and "number" not in types:
        return "send a whole number"
    return SCHEMA_HINT


def _wrong_type(root: Schema, where: str, value: Any, node: Schema | None, types: frozenset[str]) -> InvalidInput:
    """`ttl_s must be a number between 1 and 86400; got the string "30"; send 30 without quotes`."""
    expected = _expected(root, node, types)
    fix = _fix(root, value, node, types)
    return InvalidInput(f"{where} must be {expected}; got {_shown(value)}; {fix}", field=where)


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


def _all_strings_allowed(root: Schema, items: Schema | None, value: list[Any]) -> bool:
    """True when every entry of `value` is a string and the list's `items` schema takes any string."""
    node = _resolve(root, items)
    if not isinstance(node, dict) or node.get("type") != "string" or len(node) > 1:
        return False  # a string schema with more to it (an enum, a pattern) is checked entry by entry
    return all(type(item) is str and item.isascii() for item in value)  # other text: checked for surrogates


def _children(
    root: Schema, where: str, value: dict[str, Any] | list[Any], depth: int, node: Schema | None
) -> list[tuple[str, Any, int, Schema | None]]:
    """The entries of a list or object, each with the schema that describes it (None: free-form)."""
    options = _options(root, node)
    if isinstance(value, list):
        items = next((o.get("items") for o in options if o.get("type") == "array"), None)
        if _all_strings_allowed(root, items, value):
            return []  # a string has nothing more to check: a long list of paths costs one pass in C
        return [(f"{where}[{i}]", item, depth + 1, items) for i, item in enumerate(value)]
    described = next((o for o in options if o.get("type") == "object"), {})
    props = described.get("properties", {})
    extra = described.get("additionalProperties")
    return [
        (f"{where}.{_key(key)}", item, depth + 1, props.get(key, extra if isinstance(extra, dict) else None))
        for key, item in value.items()
    ]


def _key(key: str) -> str:
    """An object's key as an error's field path names it: a 50 KB key does not make a 50 KB answer."""
    return key if len(key) <= SHOWN_CHARS else key[:SHOWN_CHARS] + "…"


def _message(err: Any, known: list[str]) -> str:
    where = ".".join(_key(str(p)) for p in err["loc"]) or "arguments"
    kind = err["type"]
    if kind == "unexpected_keyword_argument":
        return f"{where}: unknown argument; this tool takes {', '.join(known) or 'no arguments'}"
    if kind == "missing_argument":
        return f"{where}: required; add it"
    return f"{where}: {str(err['msg']).lower()}"


def invalid_arguments(exc: pydantic.ValidationError, known: list[str]) -> InvalidInput:
    """Turns pydantic's report into one sentence per field the caller can act on."""
    errors = exc.errors()
    parts = [_message(err, known) for err in errors[:10]]
    first = ".".join(_key(str(p)) for p in errors[0]["loc"]) if errors else ""
    return InvalidInput("invalid arguments — " + "; ".join(parts) + "; " + SCHEMA_HINT, field=first or None)


class BoundOperation:
    """An operation behind the shared argument contract; both transports call it the same way."""

    def __init__(self, op: Operation):
        self.op = op
        # Lax mode is safe here: check_values has refused every JSON type the schema does not allow,
        # so the only conversions left are int → float and 30.0 → 30, which JSON Schema makes too.
        self._call: Callable[..., Awaitable[Result]] = pydantic.validate_call(op.fn)
        self.known = list(inspect.signature(op.fn).parameters)
        # The input schema tools/list and GET /api/v1/tools publish: its bounds are the ones enforced.
        self.schema: Schema = func_metadata(op.fn).arg_model.model_json_schema()
        self._types = type_table(self.schema)
        self._null_is_default = optional_non_null(self.schema)
        self.acting = acting_argument(op, self.known)

    async def __call__(self, args: dict[str, Any]) -> Result:
        """Checks `args` (raising InvalidInput naming the field), that the caller may make this call
        (token mode: Forbidden when it names another agent), and runs the operation."""
        if self._null_is_default and any(value is None for value in args.values()):
            args = {k: v for k, v in args.items() if v is not None or k not in self._null_is_default}
        principal = current_principal.get()
        acting = self.acting
        if principal is not None and not principal.is_admin and acting is not None and args.get(acting) is None:
            # Token mode: an agent acts as itself, so an acting argument left out or null is the caller
            # (what `authorize` would fill in) — before the check, which would call it missing.
            args = {**args, acting: principal.agent_id}
        check_values(args, self.schema, self._types)
        if principal is not None:
            args = dict(args)  # `authorize` fills in the caller's id; the caller's dict stays as sent
            authorize(self.op, self.acting, args)
        try:
            # validate_call on a coroutine function validates when awaited, not when called.
            return await self._call(**args)
        except pydantic.ValidationError as exc:
            raise invalid_arguments(exc, self.known) from None
