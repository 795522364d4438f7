"""SQL that reads the same on SQLite and PostgreSQL: each test pins a difference between the two
dialects that once made Huddle answer differently depending on its backend.

They run on both backends (`coordinator`); the PostgreSQL databases of the tests sort text like a
typical production install (tests/postgres_helpers.py), not like the C locale.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coordination_helpers import register
from helpers import ManualClock, make_coordinator
from huddle.push.log import EventFilter, read_after
from huddle.service.coordinator import Coordinator
from huddle.service.guard import GuardService
from huddle.service.hooks import ClaudeHookService


async def test_a_directory_lease_sees_every_lease_below_it_whatever_the_names_and_the_collation(
    coordinator: Coordinator,
) -> None:
    """Overlap candidates are read as a prefix range on the lock anchor: under a linguistic
    collation `src/a/zz.py` sorts after `src/a0` and the range missed it."""
    await register(coordinator, "alice", "bob")
    below = ["src/a/zz.py", "src/a/Zeta.py", "src/a/-x.py", "src/a/~/y.py", "src/a/b c/d.py"]
    for path in below:
        assert (await coordinator.locks.acquire("bob", path))["granted"], path
    refused = await coordinator.locks.acquire("alice", "src/a/", "exclusive")
    assert not refused["granted"]
    assert sorted(h["path"] for h in refused["holders"]) == sorted(below)
    assert (await coordinator.locks.acquire("alice", "src/a0/x.py"))["granted"]  # a sibling, not below


async def test_names_are_listed_in_code_point_order_on_both_backends(coordinator: Coordinator) -> None:
    ids = ["alice", "Bob", "zed", "Zoe", "9lives", "al-ex", "al.ex", "ALICE"]
    await register(coordinator, *ids)
    listed = [a["agent_id"] for a in (await coordinator.agents.list_agents())["agents"]]
    assert listed == sorted(ids)


async def test_kind_filters_read_from_the_log_pass_exactly_what_the_live_filter_passes(
    coordinator: Coordinator,
) -> None:
    """Replay (SQL) and live delivery (Python) must agree: LIKE folded case on SQLite and took
    `_` for any character on both."""
    await register(coordinator, "alice", "bob")
    await coordinator.updates.log_action_summary("alice", "did a thing")
    await coordinator.messages.send("alice", "hello", "bob")
    everything = await read_after(coordinator.store, 0)
    assert len(everything) >= 4
    for kinds in ("action.*", "Action.*", "ACTION.*", "agent.*", "agen_.*", "message.sent", "Message.sent"):
        wanted = EventFilter.parse(kinds=kinds)
        replayed = [e.cursor for e in await read_after(coordinator.store, 0, wanted)]
        assert replayed == [e.cursor for e in everything if wanted(e)], kinds
        listed = await coordinator.insights.list_events(after=0, kinds=kinds)
        assert [e["cursor"] for e in listed["events"]] == replayed, kinds
    assert [e.kind for e in await read_after(coordinator.store, 0, EventFilter.parse(kinds="Action.*"))] == []


async def test_an_agent_whose_id_only_resembles_an_overseers_is_counted_as_a_peer(coordinator: Coordinator) -> None:
    """Overseers are exactly the `human:` ids (case-sensitive, as everywhere else)."""
    await register(coordinator, "alice", "Human:bob", "HUMAN:carol")
    ready = await coordinator.agents.wait_for_peers(3, timeout_s=0)
    assert (ready["ready"], ready["online"]) == (True, 3)


@pytest.fixture
async def frozen(tmp_path: Path, repo: Path, backend: dict[str, str]) -> AsyncIterator[Coordinator]:
    """A coordinator whose clock stands still: every edit has the same time, so ranks tie."""
    coordinator = make_coordinator(tmp_path, repo, clock=ManualClock(), **backend)
    await coordinator.start()
    try:
        yield coordinator
    finally:
        await coordinator.stop()


async def test_ties_in_rankings_and_unordered_lists_come_out_in_name_order(frozen: Coordinator) -> None:
    """Without an explicit tie-break, rows of equal rank come out in whatever order a plan yields
    (SQLite: often by key; PostgreSQL: hash or heap order)."""
    coordinator = frozen
    await register(coordinator, "zed", "amy", "kim", "bob")
    paths = ["src/m.py", "src/b.py", "src/z.py", "src/a.py"]
    for agent in ("zed", "amy", "kim"):
        for path in paths:
            await coordinator.files.log_edit(agent, path)
    hot = await coordinator.files.hot_files()
    assert [f["path"] for f in hot["files"]] == sorted(paths)
    status = await coordinator.status.status()
    assert [f["path"] for f in status["file_activity"]] == sorted(paths)
    conflicts = await coordinator.files.check_file_conflict("src/m.py", "bob")
    assert [c["agent_id"] for c in conflicts["agents"]] == ["amy", "kim", "zed"]
    session = await coordinator.files.session_files("zed")
    assert [f["path"] for f in session["files"]] == sorted(paths)


async def test_a_threads_respondents_are_listed_in_name_order(coordinator: Coordinator) -> None:
    await register(coordinator, "zed", "kim", "amy")
    await coordinator.intents.announce("zed", "zed's change", ["src/app.py"])
    await coordinator.intents.announce("kim", "kim's change", ["src/app.py"])
    opened = await coordinator.intents.announce("amy", "amy's change", ["src/app.py"])
    thread = await coordinator.threads.get(opened["thread_id"])
    assert thread["expected_respondents"] == sorted(thread["expected_respondents"]) == ["kim", "zed"]


async def test_hook_sessions_find_their_agent_by_directory_and_deliver_each_event_once(
    coordinator: Coordinator, repo: Path
) -> None:
    hooks = ClaudeHookService(coordinator)
    (repo / "svc").mkdir()

    def payload(session: str, cwd: Path, event: str) -> dict[str, Any]:
        return {"session_id": session, "transcript_path": "/dev/null", "cwd": str(cwd), "hook_event_name": event}

    await hooks.handle("SessionStart", payload("s-alice", repo / "svc", "SessionStart"), "alice")
    await hooks.handle("SessionStart", payload("s-bob", repo, "SessionStart"), "bob")
    assert await hooks.agents_in(str(repo / "svc")) == ["alice"]
    assert await hooks.agents_in(str(repo)) == ["bob", "alice"]  # newest session first
    await coordinator.messages.send("alice", "heads up", "bob")
    news = await hooks.deliver("bob")
    assert news is not None and "heads up" in news
    assert await hooks.deliver("bob") is None  # delivered once

    # An edit into another agent's exclusive lease is denied; an allowed one is logged once it ran.
    for name in ("locked.py", "free.py"):
        (repo / "svc" / name).write_text("x = 1\n")
    await coordinator.locks.acquire("bob", "svc/locked.py")

    def edit(event: str, name: str) -> dict[str, Any]:
        tool = {"file_path": str(repo / "svc" / name), "old_string": "x = 1", "new_string": "x = 2"}
        return payload("s-alice", repo / "svc", event) | {"tool_name": "Edit", "tool_input": tool}

    denied = await hooks.handle("PreToolUse", edit("PreToolUse", "locked.py"), "alice")
    assert denied["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert await hooks.handle("PreToolUse", edit("PreToolUse", "free.py"), "alice") == {}
    await hooks.handle("PostToolUse", edit("PostToolUse", "free.py"), "alice")
    assert [f["path"] for f in (await coordinator.files.session_files("alice"))["files"]] == ["svc/free.py"]

    # The git guard: a staged file under another agent's lease, a push onto a branch being rebased.
    guard = GuardService(coordinator, hooks)
    commit = await guard.pre_commit(["svc/locked.py", "svc/free.py"], agent_id="alice")
    assert not commit["ok"] and [b["holder"] for b in commit["blocked"]] == ["bob"]
    await coordinator.intents.announce("bob", "rebase main", None, kind="git_rebase", branch="main")  # type: ignore[arg-type]
    push = await guard.pre_push("main", agent_id="alice")
    assert not push["ok"], push


async def test_intents_in_my_module_are_found_whoever_they_belong_to_whatever_their_ids_order(
    coordinator: Coordinator,
) -> None:
    """The other agents' intents in my module are read as two ranges of agent ids, below mine and
    above it (service/signals.py), so that my own intents there are skipped: ids on either side, in
    either letter case and beside mine by one character, are all found; mine never is."""
    others = ["Mia", "MIB", "mi", "mia0", "mib", "a", "zed", "Zoe"]
    await register(coordinator, "mia", *others)
    for i in range(3):  # my own earlier intents in the module
        await coordinator.intents.announce(
            "mia", f"earlier {i}", [f"src/shared/mine{i}.py"], target_modules=["src/shared"]
        )
    for name in others:
        await coordinator.intents.announce(name, "theirs", [f"src/shared/{name}.py"], target_modules=["src/shared"])
    result = await coordinator.intents.announce("mia", "mine", ["src/shared/new.py"], target_modules=["src/shared"])
    assert result["impact_summary"]["total"] == len(others)
    listed = {i["agent_id"] for i in result["impacts"]}
    assert listed == set(others)
