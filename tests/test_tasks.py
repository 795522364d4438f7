"""The task board and worker slots (SPEC F-50 … F-54): dependencies, atomic claims, recovery."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from coordination_helpers import event_count, mcp_sessions, next_event, register, watch
from helpers import call, make_coordinator
from huddle.domain.events import Kind
from huddle.errors import Conflict, Forbidden, InvalidInput, NotFound

# Service tests take `coordinator` (both backends); server tests start theirs on both too.
pytestmark = pytest.mark.both_backends


async def test_a_task_becomes_available_only_when_all_its_dependencies_are_done(coordinator):
    await register(coordinator, "alice")
    tasks = coordinator.tasks
    await tasks.add("setup-db", "Set up the database")
    await tasks.add("setup-project", "Initialise the project")
    await tasks.add("auth-api", "Auth API routes", depends_on=["setup-project", "setup-db"])
    assert [t["task_id"] for t in (await tasks.available())["tasks"]] == ["setup-db", "setup-project"]
    for task in ("setup-db", "setup-project"):
        assert (await tasks.claim("alice", task))["claimed"]
        done = await tasks.update(task, "alice", "done", output="ok")
    assert done["unblocked"] == ["auth-api"]
    assert [t["task_id"] for t in (await tasks.available())["tasks"]] == ["auth-api"]


async def test_claim_without_a_task_id_takes_the_highest_priority_then_the_oldest(coordinator):
    await register(coordinator, "alice")
    await coordinator.tasks.add_many(
        [
            {"task_id": "old-low", "description": "a"},
            {"task_id": "old-high", "description": "b", "priority": 5},
            {"task_id": "new-high", "description": "c", "priority": 5},
        ]
    )
    order = [(await coordinator.tasks.claim("alice"))["task"]["task_id"] for _ in range(3)]
    assert order == ["old-high", "new-high", "old-low"]
    nothing = await coordinator.tasks.claim("alice")
    assert nothing["claimed"] is False and "no task is available" in nothing["reason"]


async def test_a_refused_claim_says_why(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.tasks.add("a", "first")
    await coordinator.tasks.add("b", "second", depends_on=["a"])
    await coordinator.tasks.claim("alice", "a")
    taken = await coordinator.tasks.claim("bob", "a")
    assert taken == {
        "claimed": False,
        "task_id": "a",
        "claimed_by": "alice",
        "reason": "task a is already claimed by alice; get_available_tasks lists free ones",
    }
    blocked = await coordinator.tasks.claim("bob", "b")
    assert blocked["claimed"] is False and blocked["waiting_on"] == ["a"]
    again = await coordinator.tasks.claim("alice", "a")  # a retried claim is not a failure
    assert again["claimed"] is True and again["already_yours"] is True
    with pytest.raises(NotFound, match="list_tasks"):
        await coordinator.tasks.claim("bob", "zzz")


async def test_only_the_claimer_may_update_a_task_and_done_is_final(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.tasks.add("a", "first")
    with pytest.raises(Conflict, match="claim it"):
        await coordinator.tasks.update("a", "alice", "done")
    await coordinator.tasks.claim("alice", "a")
    with pytest.raises(Forbidden, match="only the claimer"):
        await coordinator.tasks.update("a", "bob", "done")
    progress = await coordinator.tasks.update("a", "alice", "in_progress", output="halfway")
    assert progress["task"]["status"] == "in_progress" and progress["task"]["output"] == "halfway"
    await coordinator.tasks.update("a", "alice", "done")
    with pytest.raises(Conflict, match="final"):
        await coordinator.tasks.update("a", "alice", "failed", error="oops")
    with pytest.raises(Conflict, match="final"):
        await coordinator.tasks.reset("a")


async def test_reset_makes_a_failed_task_available_but_not_one_an_online_agent_is_working_on(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.tasks.add_many([{"task_id": "a", "description": "x"}, {"task_id": "b", "description": "y"}])
    await coordinator.tasks.claim("alice", "a")
    await coordinator.tasks.update("a", "alice", "failed", error="tests red")
    failed = await coordinator.tasks.claim("bob", "a")
    assert failed["claimed"] is False and "tests red" in failed["reason"]
    reset = await coordinator.tasks.reset("a", "bob")
    assert reset["reset"] is True and reset["task"]["available"] is True and reset["task"]["error"] == "tests red"
    assert (await coordinator.tasks.claim("bob", "a"))["task"]["attempts"] == 2
    await coordinator.tasks.claim("alice", "b")
    with pytest.raises(Conflict, match="alice, who is online"):
        await coordinator.tasks.reset("b", "bob")
    assert (await coordinator.tasks.reset("b", "alice"))["reset"] is True  # the claimer may hand it back


async def test_cycles_and_unknown_dependencies_are_refused_and_nothing_is_written(coordinator):
    before = await event_count(coordinator)
    with pytest.raises(InvalidInput, match="form a cycle"):
        await coordinator.tasks.add_many(
            [
                {"task_id": "a", "description": "x", "depends_on": ["c"]},
                {"task_id": "b", "description": "x", "depends_on": ["a"]},
                {"task_id": "c", "description": "x", "depends_on": ["b"]},
            ]
        )
    with pytest.raises(InvalidInput, match="unknown task"):
        await coordinator.tasks.add("d", "x", depends_on=["nope"])
    with pytest.raises(InvalidInput, match="depends on itself"):
        await coordinator.tasks.add("e", "x", depends_on=["e"])
    assert await event_count(coordinator) == before
    assert (await coordinator.tasks.list())["total"] == 0


async def test_a_batch_may_list_dependants_before_their_dependencies(coordinator):
    result = await coordinator.tasks.add_many(
        [
            {"task_id": "deploy", "description": "x", "depends_on": ["build", "test"]},
            {"task_id": "test", "description": "x", "depends_on": ["build"]},
            {"task_id": "build", "description": "x"},
        ]
    )
    assert result["created"] == 3
    assert [t["task_id"] for t in result["tasks"]] == ["deploy", "test", "build"]  # as given
    assert [t["task_id"] for t in (await coordinator.tasks.available())["tasks"]] == ["build"]


async def test_re_adding_an_identical_task_is_a_no_op_and_a_different_one_conflicts(coordinator):
    first = await coordinator.tasks.add("a", "same", priority=2, payload={"k": [1, 2]})
    again = await coordinator.tasks.add("a", "same", priority=2, payload={"k": [1, 2]})
    assert first["created"] is True and again["created"] is False
    with pytest.raises(Conflict, match="another task_id"):
        await coordinator.tasks.add("a", "different")


async def test_worker_slots_are_limited_idempotent_and_returned(coordinator):
    names = [f"w{i}" for i in range(6)]
    await register(coordinator, *names)
    slots = [(await coordinator.workers.claim(n))["slot"] for n in names[:5]]
    assert slots == [1, 2, 3, 4, 5]
    full = await coordinator.workers.claim("w5")
    assert full["claimed"] is False and "all 5 worker slots" in full["reason"]
    assert (await coordinator.workers.claim("w2"))["already_held"] is True
    with pytest.raises(Forbidden):
        await coordinator.workers.release("w5", slot=1)
    assert (await coordinator.workers.release("w2"))["slot"] == 3
    assert (await coordinator.workers.claim("w5"))["slot"] == 3
    workers = await coordinator.workers.workers()
    assert workers["total"] == 5 and workers["busy"] == 5 and workers["free"] == 0
    status = await coordinator.status.status()
    assert status["workers"]["busy"] == 5 and status["tasks"]["total"] == 0 and status["messages"]["waiting"] == []


async def test_when_an_agent_goes_offline_its_tasks_and_worker_slot_return_to_the_pool(tmp_path, repo, backend):
    coordinator = make_coordinator(tmp_path, repo, agent_ttl_s=0.3, **backend)
    await coordinator.start()
    try:
        await register(coordinator, "alice")
        await coordinator.tasks.add("a", "x")
        await coordinator.workers.claim("alice")
        with watch(coordinator, Kind.TASK_RESET, task_id="a") as reset:
            await coordinator.tasks.claim("alice", "a")
            await coordinator.tasks.update("a", "alice", "in_progress")
            event = await next_event(reset)
        assert event.data["reason"] == "claimer alice offline"
        assert [t["task_id"] for t in (await coordinator.tasks.available())["tasks"]] == ["a"]
        assert (await coordinator.workers.workers())["busy"] == 0
        assert (await coordinator.locks.list_locks())["locks"] == []
    finally:
        await coordinator.stop()


async def test_deregistering_returns_tasks_slots_and_leases_at_once(coordinator):
    await register(coordinator, "alice")
    await coordinator.tasks.add("a", "x")
    await coordinator.tasks.claim("alice", "a")
    await coordinator.workers.claim("alice")
    await coordinator.locks.acquire("alice", "src/")
    await coordinator.agents.deregister("alice")
    assert (await coordinator.tasks.available())["count"] == 1
    assert (await coordinator.workers.workers())["busy"] == 0
    assert (await coordinator.locks.list_locks())["locks"] == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"task_id": "has space"}, "task_id"),
        ({"task_id": ""}, "task_id"),
        ({"description": ""}, "description"),
        ({"description": "x" * 10_001}, "description"),
        ({"priority": 1.5}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": 10**6}, "priority"),
        ({"payload": {"blob": "x" * 70_000}}, "payload"),
        ({"payload": {1, 2}}, "payload"),
        ({"depends_on": [f"t{i}" for i in range(101)]}, "depends_on"),
        ({"depends_on": "a"}, "depends_on"),
    ],
)
async def test_bad_task_input_is_refused_naming_the_field_and_writes_nothing(coordinator, args, field):
    before = await event_count(coordinator)
    with pytest.raises(InvalidInput) as error:
        await coordinator.tasks.add(**{"task_id": "t", "description": "d", **args})
    assert error.value.field == field
    assert await event_count(coordinator) == before
    assert (await coordinator.tasks.list())["total"] == 0


async def test_an_update_with_an_unknown_status_or_huge_output_is_refused(coordinator):
    await register(coordinator, "alice")
    await coordinator.tasks.add("a", "x")
    await coordinator.tasks.claim("alice", "a")
    with pytest.raises(InvalidInput) as error:
        await coordinator.tasks.update("a", "alice", "pending")
    assert error.value.field == "status"
    with pytest.raises(InvalidInput) as error:
        await coordinator.tasks.update("a", "alice", "done", output="x" * 20_001)
    assert error.value.field == "output"
    assert (await coordinator.tasks.list())["tasks"][0]["status"] == "claimed"


# -- real server, official MCP client ------------------------------------------------------------

AGENTS = 50
ROUNDS = 4


async def test_fifty_agents_race_to_claim_one_task_and_exactly_one_wins_every_round(huddle_server):
    async with mcp_sessions(huddle_server.mcp_url, AGENTS) as clients:
        for i, client in enumerate(clients):
            await call(client, "register_agent", name=f"agent {i}", agent_id=f"agent-{i}")
        for round_no in range(ROUNDS):
            await call(clients[0], "add_task", task_id=f"prize-{round_no}", description="only one may have it")
            results = [None] * AGENTS

            async def race(i, round_no=round_no, results=results):
                # Half name the task, half ask for "the best available": both paths must be atomic.
                args = {"task_id": f"prize-{round_no}"} if i % 2 else {}
                results[i] = await call(clients[i], "claim_task", agent_id=f"agent-{i}", **args)

            async with anyio.create_task_group() as tg:
                for i in range(AGENTS):
                    tg.start_soon(race, i)
            assert sum(1 for r in results if r["claimed"]) == 1, f"round {round_no}"
            winner = next(r for r in results if r["claimed"])
            assert winner["task"]["task_id"] == f"prize-{round_no}"


TASKS = 200
WORKERS = 20


def _dependencies(i: int) -> list[str]:
    return [f"t{j:03d}" for j in (i - 7, i - 13, i - 50) if j >= 0]


async def test_two_hundred_tasks_are_each_claimed_exactly_once_by_twenty_workers_in_dependency_order(huddle_server):
    async with mcp_sessions(huddle_server.mcp_url, WORKERS + 1) as clients:
        boss, workers = clients[0], clients[1:]
        await call(boss, "register_agent", name="boss")
        await call(
            boss,
            "add_tasks",
            agent_id="boss",
            tasks=[
                {"task_id": f"t{i:03d}", "description": f"task {i}", "depends_on": _dependencies(i), "priority": i % 3}
                for i in range(TASKS)
            ],
        )
        claims: list[tuple[str, str]] = []
        done: set[str] = set()
        progress = anyio.Event()

        async def worker(n: int) -> None:
            nonlocal progress
            me = f"worker-{n}"
            await call(workers[n], "register_agent", name=me)
            while len(done) < TASKS:
                seen = progress  # taken before the claim, so a completion during the call is not missed
                result = await call(workers[n], "claim_task", agent_id=me)
                if not result["claimed"]:
                    await seen.wait()  # nothing claimable until some task is done
                    continue
                task = result["task"]["task_id"]
                claims.append((task, me))
                await call(workers[n], "update_task", task_id=task, agent_id=me, status="done")
                done.add(task)
                progress.set()
                progress = anyio.Event()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(WORKERS):
                    tg.start_soon(worker, n)
        assert sorted(task for task, _ in claims) == [f"t{i:03d}" for i in range(TASKS)]  # each exactly once
        assert len({who for _, who in claims}) > 1

        # The event log orders every claim after the completion of each of its dependencies.
        cursor, events = 0, []
        while True:
            page = await call(boss, "get_updates", agent_id="boss", cursor=cursor, limit=500)
            events += page["events"]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        completed_at = {e["task_id"]: e["cursor"] for e in events if e["event"] == "task.updated"}
        claimed_at = {e["task_id"]: e["cursor"] for e in events if e["event"] == "task.claimed"}
        assert len(claimed_at) == TASKS
        for i in range(TASKS):
            for dep in _dependencies(i):
                assert completed_at[dep] < claimed_at[f"t{i:03d}"]
        board = await call(boss, "list_tasks")
        assert board["counts"]["done"] == TASKS


async def test_tasks_and_their_state_survive_a_restart(huddle_server):
    async with Client(huddle_server.mcp_url) as client:
        await call(client, "register_agent", name="alice")
        await call(
            client,
            "add_tasks",
            tasks=[{"task_id": "a", "description": "x"}, {"task_id": "b", "description": "y", "depends_on": ["a"]}],
        )
        await call(client, "claim_task", agent_id="alice", task_id="a")
        await call(client, "update_task", task_id="a", agent_id="alice", status="done", output="built")
    huddle_server.restart()
    async with Client(huddle_server.mcp_url) as client:
        board = await call(client, "list_tasks")
        available = await call(client, "get_available_tasks")
    statuses = {t["task_id"]: (t["status"], t.get("output")) for t in board["tasks"]}
    assert statuses == {"a": ("done", "built"), "b": ("pending", None)}
    assert [t["task_id"] for t in available["tasks"]] == ["b"]
