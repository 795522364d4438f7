"""The shared argument contract (transports/arguments.py): a number outside its field's bounds is
refused naming the field and both bounds, however it arrives — a literal of any length, a float,
deep inside a list or an object — and a value of a JSON type its field does not take (a numeric
string, a boolean for a number) is refused, never converted."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

from huddle.domain import validate
from huddle.domain.principal import AGENT, Principal, current_principal
from huddle.errors import InvalidInput
from huddle.transports.arguments import BoundOperation, check_values, parse_json_object
from huddle.transports.operation import Operation, between

TTL = (1, 86400)
LINES = (1, 2**31 - 1)


async def sample(
    ttl_s: Annotated[float, between(TTL)] | None = None,
    ranges: list[list[Annotated[int, between(LINES)]]] | None = None,
    ids: list[str | Annotated[int, between(validate.ID_RANGE)]] | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An operation with bounded numbers at the top level, in nested lists and in a union, and a free-form object."""
    return {"ttl_s": ttl_s, "ranges": ranges, "ids": ids, "payload": payload}


@pytest.fixture
def bound() -> BoundOperation:
    return BoundOperation(Operation("sample", "test", sample))


async def refusal(bound: BoundOperation, body: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        await bound(parse_json_object(body))
    return caught.value


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            b'{"ttl_s": ' + b"9" * 5000 + b"}",
            "ttl_s",
            "ttl_s must be between 1 and 86400; got an integer of 5000 digits",
        ),
        (
            b'{"ttl_s": -' + b"9" * 400 + b"}",
            "ttl_s",
            "ttl_s must be between 1 and 86400; got an integer of 400 digits",
        ),
        (b'{"ttl_s": 86401}', "ttl_s", "ttl_s must be between 1 and 86400; got 86401"),
        (b'{"ttl_s": 0.5}', "ttl_s", "ttl_s must be between 1 and 86400; got 0.5"),
        (b'{"ttl_s": 1e400}', "ttl_s", "ttl_s must be between 1 and 86400; got inf"),
        (
            b'{"ranges": [[1, 2], [3, ' + b"9" * 400 + b"]]}",
            "ranges[1][1]",
            "ranges[1][1] must be between 1 and 2147483647; got an integer of 400 digits",
        ),
        (b'{"ids": ["M-1", 0]}', "ids[1]", "ids[1] must be between 1 and 4611686018427387904; got 0"),
    ],
)
async def test_a_number_outside_its_bounds_is_refused_naming_the_field_and_both_bounds(
    bound: BoundOperation, body: bytes, field: str, message: str
) -> None:
    error = await refusal(bound, body)
    assert error.field == field and error.message == message


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            b'{"ttl_s": "30"}',
            "ttl_s",
            'ttl_s must be a number between 1 and 86400; got the string "30"; send 30 without quotes',
        ),
        # Out of bounds as well: no advice to send it unquoted, since that would be refused too.
        (b'{"ttl_s": "999999"}', "ttl_s", 'ttl_s must be a number between 1 and 86400; got the string "999999"; see'),
        (b'{"ttl_s": true}', "ttl_s", "ttl_s must be a number between 1 and 86400; got true; see"),
        (
            b'{"ranges": [[1, "2"]]}',
            "ranges[0][1]",
            "ranges[0][1] must be an integer between 1 and 2147483647; got the",
        ),
        (
            b'{"ranges": [[1, 2.5]]}',
            "ranges[0][1]",
            "must be an integer between 1 and 2147483647; got the number 2.5; send a whole number",
        ),
        (b'{"ranges": "1-2"}', "ranges", 'ranges must be an array; got the string "1-2"; send an array: ["1-2"]'),
        (
            b'{"ids": [false]}',
            "ids[0]",
            "ids[0] must be a string or an integer between 1 and 4611686018427387904; got false",
        ),
        (b'{"payload": [1]}', "payload", "payload must be an object; got an array"),
        (b'{"ids": ["' + b"x" * 100 + b'"], "payload": 7}', "payload", "payload must be an object; got the number 7"),
    ],
)
async def test_a_value_of_a_json_type_its_field_does_not_take_is_refused_not_converted(
    bound: BoundOperation, body: bytes, field: str, message: str
) -> None:
    error = await refusal(bound, body)
    assert error.field == field and message in error.message, error.message


async def test_a_long_string_is_shown_cut_short(bound: BoundOperation) -> None:
    error = await refusal(bound, b'{"ttl_s": "' + b"x" * 5000 + b'"}')
    assert 'got the string "' + "x" * 40 + '…"' in error.message and len(error.message) < 300


async def test_the_first_wrong_value_in_the_order_sent_is_named(bound: BoundOperation) -> None:
    assert (await refusal(bound, b'{"ttl_s": "1", "ranges": [["1"]]}')).field == "ttl_s"
    assert (await refusal(bound, b'{"ranges": [[1, 2], ["3"], ["4"]]}')).field == "ranges[1][0]"


async def test_json_schemas_own_conversions_are_kept(bound: BoundOperation) -> None:
    """An integer is a number, and a number without a fraction is an integer (JSON Schema 2020-12)."""
    result = await bound(parse_json_object(b'{"ttl_s": 30, "ranges": [[1.0, 2]], "ids": [3.0, "M-4"]}'))
    assert result["ranges"] == [[1, 2]] and all(type(n) is int for n in result["ranges"][0])
    assert result["ids"] == [3, "M-4"] and type(result["ids"][0]) is int


async def test_null_for_an_optional_field_and_anything_in_a_free_form_object_pass(bound: BoundOperation) -> None:
    body = b'{"ttl_s": null, "ranges": null, "payload": {"n": "1", "b": true, "l": [null]}}'
    result = await bound(parse_json_object(body))
    assert result == {"ttl_s": None, "ranges": None, "ids": None, "payload": {"n": "1", "b": True, "l": [None]}}


async def test_the_bounds_are_inclusive_and_numbers_inside_them_pass_untouched(bound: BoundOperation) -> None:
    result = await bound(parse_json_object(b'{"ttl_s": 86400, "ranges": [[1, 2147483647]], "ids": [1, "M-2"]}'))
    assert result == {"ttl_s": 86400, "ranges": [[1, 2147483647]], "ids": [1, "M-2"], "payload": None}


async def test_a_huge_number_in_a_free_form_object_is_refused_without_claiming_a_range(bound: BoundOperation) -> None:
    error = await refusal(bound, b'{"payload": {"n": ' + b"9" * 400 + b"}}")
    assert error.field == "payload.n" and "integer of 400 digits" in error.message
    assert "between" not in error.message


def test_without_a_schema_only_values_no_field_can_take_are_refused() -> None:
    check_values({"limit": 10**18, "deep": [[1]], "text": "30", "flag": True})
    with pytest.raises(InvalidInput, match="beyond 64 bits") as caught:
        check_values({"limit": 2**70})
    assert caught.value.field == "limit"


def test_a_list_of_strings_passes_whole_and_a_wrong_entry_among_them_is_named_by_its_index() -> None:
    schema = {"type": "object", "properties": {"paths": {"type": "array", "items": {"type": "string"}}}}
    check_values({"paths": ["a.py"] * 10_000}, schema)
    with pytest.raises(InvalidInput, match=r"paths\[3\] must be a string; got the number 7") as caught:
        check_values({"paths": ["a.py", "b.py", "c.py", 7, "d.py"]}, schema)
    assert caught.value.field == "paths[3]"


HUGE = {
    "400-digit": 10**400,
    "5001-digit-negative": -(10**5000),
    "inf": float("inf"),
    "nan": float("nan"),
    "2**62+1": 2**62 + 1,
}


@pytest.mark.parametrize("value", HUGE.values(), ids=list(HUGE))
def test_the_service_check_refuses_any_number_outside_its_bounds_without_failing_itself(value: float) -> None:
    """Before: formatting a 400-digit integer as a float raised OverflowError (a 500)."""
    with pytest.raises(InvalidInput) as caught:
        validate.within(value, "cursor", validate.CURSOR_RANGE, default=0)
    assert caught.value.message.startswith("cursor must be between 0 and 4611686018427387904; got ")


async def whoami(agent_id: str, note: dict[str, Any] | None = None) -> dict[str, Any]:
    """An operation acting as an agent, with a free-form object."""
    return {"agent_id": agent_id, "note": note}


async def test_in_token_mode_null_for_the_acting_agent_means_the_caller_as_leaving_it_out_does() -> None:
    bound = BoundOperation(Operation("whoami", "test", whoami))
    token = current_principal.set(Principal("alice", "repo", "default", frozenset({AGENT})))
    try:
        assert await bound({"agent_id": None}) == {"agent_id": "alice", "note": None}
        assert await bound({}) == {"agent_id": "alice", "note": None}
    finally:
        current_principal.reset(token)
    with pytest.raises(InvalidInput, match="agent_id must be a string; got null"):
        await bound({"agent_id": None})  # open mode: there is no caller to stand for


async def test_in_token_mode_a_refusal_does_not_ask_for_the_acting_agent_the_token_already_names() -> None:
    bound = BoundOperation(Operation("whoami", "test", whoami))
    token = current_principal.set(Principal("alice", "repo", "default", frozenset({AGENT})))
    try:
        with pytest.raises(InvalidInput) as caught:
            await bound({"note": "not an object"})
    finally:
        current_principal.reset(token)
    assert caught.value.field == "note" and "agent_id" not in caught.value.message


@pytest.mark.parametrize(
    ("note", "field"),
    [({"k": "\ud800"}, "note.k"), ({"\udc00": 1}, "note key '\\udc00'"), ({"l": ["ok", "\ud800"]}, "note.l[1]")],
)
async def test_a_lone_surrogate_in_a_free_form_object_is_refused_by_where_it_is(note: Any, field: str) -> None:
    bound = BoundOperation(Operation("whoami", "test", whoami))
    with pytest.raises(InvalidInput, match="unpaired surrogate") as caught:
        await bound({"agent_id": "alice", "note": note})
    assert caught.value.field == field
