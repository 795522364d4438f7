"""Shared context (SPEC F-42): share, full-text query, author-only delete."""

from __future__ import annotations

import pytest

from coordination_helpers import event_count, register
from huddle.errors import Forbidden, InvalidInput, NotFound


@pytest.fixture
async def board(coordinator):
    await register(coordinator, "alice", "bob")
    share = coordinator.shared_context.share
    await share(
        "alice",
        "discovery",
        "The auth module uses JWT tokens stored in httpOnly cookies, not localStorage.",
        ["auth", "security"],
    )
    await share("bob", "convention", "Every API handler returns the {ok, error, code} envelope.", ["api"])
    await share("alice", "decision", "We authenticate websocket connections with the same JWT.", ["auth"])
    await share("bob", "blocker", "CI is red on main because of a flaky migration test.")
    return coordinator


async def test_shared_context_is_queried_by_type_tag_and_author(board):
    query = board.shared_context.query
    assert [e["type"] for e in (await query(type="convention"))["entries"]] == ["convention"]
    assert len((await query(tag="auth"))["entries"]) == 2
    assert {e["agent_id"] for e in (await query(agent_id="bob"))["entries"]} == {"bob"}
    newest_first = (await query())["entries"]
    assert [e["type"] for e in newest_first] == ["blocker", "decision", "convention", "discovery"]


async def test_keyword_search_is_full_text_over_content_and_tags_with_word_prefixes(board):
    query = board.shared_context.query
    assert {e["type"] for e in (await query(keyword="jwt"))["entries"]} == {"discovery", "decision"}
    assert [e["type"] for e in (await query(keyword="cookie"))["entries"]] == ["discovery"]  # prefix of cookies
    assert [e["type"] for e in (await query(keyword="JWT websocket"))["entries"]] == ["decision"]  # all words
    assert [e["type"] for e in (await query(keyword="security"))["entries"]] == ["discovery"]  # a tag
    assert (await query(keyword="kubernetes"))["entries"] == []
    assert [e["type"] for e in (await query(keyword="jwt", type="decision"))["entries"]] == ["decision"]


@pytest.mark.parametrize("keyword", ['"unbalanced', "auth*", "NOT auth", "a AND (b", "c++ / -x", "ümlaut"])
async def test_search_syntax_in_a_keyword_is_plain_text_never_an_error(board, keyword):
    result = await board.shared_context.query(keyword=keyword)
    assert isinstance(result["entries"], list)


async def test_only_the_author_may_delete_an_entry(board):
    [entry] = (await board.shared_context.query(type="blocker"))["entries"]
    with pytest.raises(Forbidden, match="only its author"):
        await board.shared_context.delete(entry["id"], "alice")
    assert (await board.shared_context.delete(entry["id"], "bob"))["deleted"] is True
    assert (await board.shared_context.query(keyword="flaky"))["entries"] == []
    with pytest.raises(NotFound):
        await board.shared_context.delete(entry["id"], "bob")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"type": "rumour"}, "type"),
        ({"content": ""}, "content"),
        ({"content": "x" * 20_001}, "content"),
        ({"tags": ["has space"]}, "tags[0]"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"tags": "auth"}, "tags"),
    ],
)
async def test_bad_context_input_is_refused_naming_the_field_and_writes_nothing(coordinator, args, field):
    await register(coordinator, "alice")
    before = await event_count(coordinator)
    with pytest.raises(InvalidInput) as error:
        await coordinator.shared_context.share(**{"agent_id": "alice", "type": "note", "content": "x", **args})
    assert error.value.field == field
    assert await event_count(coordinator) == before
    assert (await coordinator.shared_context.query())["entries"] == []


async def test_a_keyword_without_words_is_refused(coordinator):
    with pytest.raises(InvalidInput, match="no searchable words"):
        await coordinator.shared_context.query(keyword="*** !!!")


async def test_sharing_emits_an_event_for_everyone(coordinator):
    await register(coordinator, "alice", "bob")
    cursor = await event_count(coordinator)
    await coordinator.shared_context.share("alice", "note", "heads up", ["ops"])
    events = (await coordinator.updates.get_updates("bob", cursor))["events"]
    assert [e["event"] for e in events] == ["context.shared"] and events[0]["tags"] == ["ops"]
