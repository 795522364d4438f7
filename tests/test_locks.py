"""Leases (SPEC F-30 … F-32) and scoring layer L, through the service API and a real server."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from coordination_helpers import event_count, mcp_sessions, next_event, register, watch
from helpers import call, make_coordinator
from huddle.domain.events import Kind
from huddle.errors import InvalidInput, NotFound

# Service tests take `coordinator` (both backends); server tests start theirs on both too.
pytestmark = pytest.mark.both_backends


async def test_second_exclusive_lock_is_refused_with_holder_mode_and_expiry(coordinator):
    await register(coordinator, "alice", "bob")
    first = await coordinator.locks.acquire("alice", "src/auth/", "exclusive")
    second = await coordinator.locks.acquire("bob", "src/auth/models.py", "exclusive")
    assert first["granted"] is True and first["fencing_token"] >= 1
    assert second["granted"] is False
    assert second["holders"] == [
        {"agent_id": "alice", "mode": "exclusive", "path": "src/auth/", "expires_at": first["expires_at"]}
    ]
    assert "alice" in second["reason"] and first["expires_at"] in second["reason"]
    assert "wait_s" in second["reason"]  # says what to do next


async def test_overlap_is_exact_for_globs_and_directories(coordinator):
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "src/*/models.py"))["granted"]
    assert (await coordinator.locks.acquire("bob", "src/auth/views.py"))["granted"]  # no overlap
    assert (await coordinator.locks.acquire("bob", "src/models.py"))["granted"]  # * needs one segment
    assert not (await coordinator.locks.acquire("bob", "src/**/models.py"))["granted"]  # src/x/models.py
    assert not (await coordinator.locks.acquire("bob", "src/billing/"))["granted"]  # src/billing/models.py


async def test_shared_locks_coexist_and_block_exclusive(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    assert (await coordinator.locks.acquire("alice", "docs/api.md", "shared"))["granted"]
    assert (await coordinator.locks.acquire("bob", "docs/", "shared"))["granted"]
    refused = await coordinator.locks.acquire("carol", "docs/api.md", "exclusive")
    assert refused["granted"] is False
    assert {h["agent_id"] for h in refused["holders"]} == {"alice", "bob"}
    assert {h["mode"] for h in refused["holders"]} == {"shared"}


async def test_exclusive_blocks_shared(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.locks.acquire("alice", "a.py", "exclusive")
    assert (await coordinator.locks.acquire("bob", "a.py", "shared"))["granted"] is False


async def test_intent_never_blocks_but_warns_both_ways(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    await coordinator.locks.acquire("alice", "src/a.py", "exclusive")
    intent = await coordinator.locks.acquire("bob", "src/", "intent")
    assert intent["granted"] is True
    assert any("alice" in w and "src/a.py" in w for w in intent["warnings"])
    # An intent lock does not stop anyone either, but they are told about it.
    carol = await coordinator.locks.acquire("carol", "src/b.py", "exclusive")
    assert carol["granted"] is True
    assert any("bob" in w and "intent" in w for w in carol["warnings"])


async def test_reacquiring_your_own_lock_renews_it_with_the_same_token(coordinator):
    await register(coordinator, "alice")
    first = await coordinator.locks.acquire("alice", "a.py", "exclusive", ttl_s=5)
    again = await coordinator.locks.acquire("alice", "a.py", "exclusive", ttl_s=60)
    assert again["granted"] and again["renewed"] is True
    assert again["fencing_token"] == first["fencing_token"]
    assert again["ttl_s"] == 60


async def test_a_mode_change_is_a_new_grant_with_a_new_token(coordinator):
    await register(coordinator, "alice", "bob")
    shared = await coordinator.locks.acquire("alice", "a.py", "shared")
    exclusive = await coordinator.locks.acquire("alice", "a.py", "exclusive")  # upgrade, nobody else there
    assert exclusive["granted"] and exclusive["previous_mode"] == "shared"
    assert exclusive["fencing_token"] > shared["fencing_token"]
    downgraded = await coordinator.locks.acquire("alice", "a.py", "shared")
    assert downgraded["granted"] and downgraded["fencing_token"] > exclusive["fencing_token"]
    # An upgrade must still be compatible with other holders.
    await coordinator.locks.acquire("bob", "a.py", "shared")
    upgrade = await coordinator.locks.acquire("alice", "a.py", "exclusive")
    assert upgrade["granted"] is False and upgrade["holders"][0]["agent_id"] == "bob"
    assert (await coordinator.locks.list_locks(agent_id="alice"))["locks"][0]["mode"] == "shared"  # kept


async def test_own_locks_never_block_each_other(coordinator):
    await register(coordinator, "alice")
    assert (await coordinator.locks.acquire("alice", "src/", "exclusive"))["granted"]
    assert (await coordinator.locks.acquire("alice", "src/a.py", "exclusive"))["granted"]


async def test_fencing_tokens_strictly_increase_across_paths(coordinator):
    await register(coordinator, "alice", "bob")
    tokens = []
    for i in range(5):
        tokens.append((await coordinator.locks.acquire("alice", f"f{i}.py"))["fencing_token"])
        await coordinator.locks.release("alice", f"f{i}.py")
        tokens.append((await coordinator.locks.acquire("bob", f"f{i}.py"))["fencing_token"])
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


async def test_queued_requests_are_granted_in_arrival_order_on_release(coordinator):
    await register(coordinator, "alice", "bob", "carol", "dave")
    await coordinator.locks.acquire("alice", "a.py")
    order: list[str] = []
    results: dict[str, dict] = {}
    with watch(coordinator, Kind.LOCK_ACQUIRED, path="a.py") as grants:
        async with anyio.create_task_group() as tg:
            for name in ("bob", "carol", "dave"):
                with watch(coordinator, Kind.LOCK_QUEUED, holder=name) as queued:

                    async def wait_for_it(name=name):
                        results[name] = await coordinator.locks.acquire(name, "a.py", "exclusive", wait_s=20)

                    tg.start_soon(wait_for_it)
                    await next_event(queued)  # bob is queued before carol asks, carol before dave
            holder = "alice"
            for _ in range(3):
                await coordinator.locks.release(holder, "a.py")
                event = await next_event(grants)
                holder = event.data["holder"]
                order.append(holder)
            await coordinator.locks.release(holder, "a.py")
    assert order == ["bob", "carol", "dave"]
    assert all(r["granted"] and r["queued"] for r in results.values())
    assert results["bob"]["fencing_token"] < results["carol"]["fencing_token"] < results["dave"]["fencing_token"]


async def test_queued_requests_are_granted_in_arrival_order_on_expiry(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    await coordinator.locks.acquire("alice", "a.py", ttl_s=1)
    order: list[str] = []
    with watch(coordinator, Kind.LOCK_ACQUIRED, path="a.py") as grants:
        async with anyio.create_task_group() as tg:
            for name in ("bob", "carol"):
                with watch(coordinator, Kind.LOCK_QUEUED, holder=name) as queued:
                    tg.start_soon(lambda n=name: coordinator.locks.acquire(n, "a.py", wait_s=20, ttl_s=1))
                    await next_event(queued)
            for _ in range(2):  # alice's lease runs out, then bob's
                order.append((await next_event(grants)).data["holder"])
    assert order == ["bob", "carol"]


async def test_a_later_compatible_request_does_not_jump_an_earlier_queued_one(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    await coordinator.locks.acquire("alice", "a.py", "shared")
    async with anyio.create_task_group() as tg:
        with watch(coordinator, Kind.LOCK_QUEUED, holder="bob") as queued:
            tg.start_soon(lambda: coordinator.locks.acquire("bob", "a.py", "exclusive", wait_s=20))
            await next_event(queued)
        # Shared is compatible with alice's shared lock, but bob's exclusive request came first.
        refused = await coordinator.locks.acquire("carol", "a.py", "shared")
        assert refused["granted"] is False
        assert refused["queued_ahead"] == [{"agent_id": "bob", "mode": "exclusive", "path": "a.py"}]
        with watch(coordinator, Kind.LOCK_ACQUIRED, holder="bob") as bob_granted:
            await coordinator.locks.release("alice", "a.py")
            await next_event(bob_granted)
        await coordinator.locks.release("bob", "a.py")
    assert (await coordinator.locks.acquire("carol", "a.py", "shared"))["granted"]


async def test_a_queued_request_gives_up_after_wait_s_and_leaves_the_queue(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    await coordinator.locks.acquire("alice", "a.py", "exclusive")
    result = await coordinator.locks.acquire("bob", "a.py", "exclusive", wait_s=0.2)
    assert result["granted"] is False and "after waiting 0.2 s" in result["reason"]
    assert (await coordinator.locks.check_lock("a.py"))["waiting"] == []


async def test_a_queued_request_whose_caller_goes_away_leaves_the_queue_and_unblocks_those_behind(coordinator):
    await register(coordinator, "alice", "bob", "carol")
    await coordinator.locks.acquire("alice", "a.py", "shared")
    with (
        watch(coordinator, Kind.LOCK_QUEUED, holder="bob") as queued,
        watch(coordinator, Kind.LOCK_WAIT_ENDED, holder="bob") as ended,
    ):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: coordinator.locks.acquire("bob", "a.py", "exclusive", wait_s=60))
            await next_event(queued)
            assert not (await coordinator.locks.acquire("carol", "a.py", "shared"))["granted"]  # bob is ahead
            tg.cancel_scope.cancel()  # bob's connection drops
        assert (await next_event(ended)).data["reason"] == "cancelled"
    assert (await coordinator.locks.check_lock("a.py"))["waiting"] == []
    assert (await coordinator.locks.acquire("carol", "a.py", "shared"))["granted"]


async def test_an_expired_lease_frees_itself_and_its_holder_is_told(coordinator):
    await register(coordinator, "alice", "bob")
    before = await event_count(coordinator)
    with watch(coordinator, Kind.LOCK_EXPIRED, holder="alice") as expired:
        await coordinator.locks.acquire("alice", "a.py", ttl_s=1)
        await next_event(expired)
    updates = await coordinator.updates.get_updates("alice", before)
    lost = [e for e in updates["events"] if e["event"] == "lock.expired"]
    assert lost and lost[0]["path"] == "a.py" and "acquire it again" in lost[0]["reason"]
    assert (await coordinator.locks.acquire("bob", "a.py"))["granted"]


async def test_renewing_keeps_the_token_and_fails_clearly_after_expiry(coordinator):
    await register(coordinator, "alice")
    grant = await coordinator.locks.acquire("alice", "a.py", ttl_s=1)
    renewed = await coordinator.locks.renew("alice", "a.py", ttl_s=30)
    assert renewed["renewed"] and renewed["fencing_token"] == grant["fencing_token"]
    await coordinator.locks.release("alice", "a.py")
    with pytest.raises(NotFound, match="acquire_lock again"):
        await coordinator.locks.renew("alice", "a.py")
    again = await coordinator.locks.release("alice", "a.py")
    assert again["released"] is False and "list_locks" in again["reason"]


async def test_deregistering_releases_locks_at_once_and_grants_the_queue(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.locks.acquire("alice", "src/", "exclusive")
    async with anyio.create_task_group() as tg:
        with (
            watch(coordinator, Kind.LOCK_QUEUED, holder="bob") as queued,
            watch(coordinator, Kind.LOCK_ACQUIRED, holder="bob") as granted,
        ):
            tg.start_soon(lambda: coordinator.locks.acquire("bob", "src/x.py", wait_s=20))
            await next_event(queued)
            await coordinator.agents.deregister("alice")
            assert (await next_event(granted)).data["path"] == "src/x.py"
    assert [lock["agent_id"] for lock in (await coordinator.locks.list_locks())["locks"]] == ["bob"]


async def test_an_offline_agent_keeps_its_leases_until_their_ttl(tmp_path, repo, backend):
    coordinator = make_coordinator(tmp_path, repo, agent_ttl_s=0.2, **backend)
    await coordinator.start()
    try:
        await register(coordinator, "alice")
        with watch(coordinator, Kind.AGENT_OFFLINE) as offline:
            await coordinator.locks.acquire("alice", "a.py", ttl_s=60)
            await next_event(offline)
        assert (await coordinator.locks.check_lock("a.py"))["exclusive_holder"] == "alice"
    finally:
        await coordinator.stop()


async def test_a_directory_named_without_its_slash_is_locked_as_the_directory(coordinator, repo):
    (repo / "src" / "auth").mkdir(parents=True)
    await register(coordinator, "alice", "bob")
    grant = await coordinator.locks.acquire("alice", "src/auth")
    assert grant["path"] == "src/auth/" and grant["kind"] == "dir"
    assert not (await coordinator.locks.acquire("bob", "src/auth/jwt.py"))["granted"]
    assert (await coordinator.locks.release("alice", "src/auth"))["released"]


async def test_an_existing_file_with_brackets_in_its_name_is_locked_literally(coordinator, repo):
    (repo / "pages").mkdir()
    (repo / "pages" / "[id].tsx").write_text("")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "pages/[id].tsx"))["kind"] == "file"
    assert (await coordinator.locks.acquire("bob", "pages/i.tsx"))["granted"]  # not the glob [id]
    assert not (await coordinator.locks.acquire("bob", "pages/*.tsx"))["granted"]


async def test_check_and_list_show_holders_queue_and_what_you_could_get(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.locks.acquire("alice", "src/a.py", "shared")
    await coordinator.locks.acquire("bob", "lib/b.py", "exclusive")
    check = await coordinator.locks.check_lock("src/")
    assert check["locked"] is True and check["exclusive_holder"] is None
    assert check["can_acquire"] == {"exclusive": False, "shared": True, "intent": True}
    assert [lock["path"] for lock in (await coordinator.locks.list_locks(path="lib/**"))["locks"]] == ["lib/b.py"]
    assert [lock["path"] for lock in (await coordinator.locks.list_locks(agent_id="alice"))["locks"]] == ["src/a.py"]
    status = await coordinator.status.status()
    assert status["locks"]["active"] == 2


async def test_layer_l_scores_an_exclusive_lock_by_another_agent_at_100(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.locks.acquire("alice", "src/auth/", "exclusive")
    result = await coordinator.intents.announce("bob", "fix login", ["src/auth/login.py"])
    assert result["verdict"] == "consult"
    impact = result["impacts"][0]
    assert impact["agent_id"] == "alice" and impact["score"] == 100
    assert impact["evidence"][0]["layer"] == "L"
    assert impact["evidence"][0]["files"] == ["src/auth/login.py"]
    assert impact["evidence"][0]["locks"][0]["path"] == "src/auth/"


async def test_shared_intent_and_own_locks_do_not_fire_layer_l(coordinator):
    await register(coordinator, "alice", "bob")
    await coordinator.locks.acquire("alice", "a.py", "shared")
    await coordinator.locks.acquire("alice", "b.py", "intent")
    await coordinator.locks.acquire("bob", "c.py", "exclusive")
    result = await coordinator.intents.check_conflicts("bob", ["a.py", "b.py", "c.py"])
    assert all(e["layer"] != "L" for i in result["impacts"] for e in i["evidence"])


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"ttl_s": -5}, "ttl_s"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": 10**9}, "ttl_s"),
        ({"wait_s": -1}, "wait_s"),
        ({"wait_s": 3600}, "wait_s"),
        ({"mode": "banana"}, "mode"),
        ({"path": "../outside.py"}, "path"),
        ({"path": "/etc/passwd"}, "path"),
        ({"path": ""}, "path"),
        ({"path": "a\x00b.py"}, "path"),
        ({"path": "x" * 5000}, "path"),
        ({"path": "src/[z-a].py"}, "path"),
        ({"agent_id": "not an id"}, "agent_id"),
    ],
)
async def test_bad_lock_input_is_refused_naming_the_field_and_writes_nothing(coordinator, args, field):
    await register(coordinator, "alice")
    before = await event_count(coordinator)
    with pytest.raises(InvalidInput) as error:
        await coordinator.locks.acquire(**{"agent_id": "alice", "path": "a.py", **args})
    assert error.value.field == field
    assert await event_count(coordinator) == before
    assert (await coordinator.locks.list_locks())["locks"] == []


async def test_an_unregistered_agent_is_told_to_register(coordinator):
    with pytest.raises(NotFound, match="register_agent"):
        await coordinator.locks.acquire("ghost", "a.py")


# -- real server, official MCP client ------------------------------------------------------------

ROUNDS = 4
AGENTS = 50


async def test_fifty_agents_race_for_one_lock_and_exactly_one_wins_every_round(huddle_server):
    async with mcp_sessions(huddle_server.mcp_url, AGENTS) as clients:
        for i, client in enumerate(clients):
            await call(client, "register_agent", name=f"agent {i}", agent_id=f"agent-{i}")
        for round_no in range(ROUNDS):
            path = f"src/hot/{round_no}.py"
            results = [None] * AGENTS

            async def race(i, path=path, results=results):
                results[i] = await call(clients[i], "acquire_lock", agent_id=f"agent-{i}", path=path)

            async with anyio.create_task_group() as tg:
                for i in range(AGENTS):
                    tg.start_soon(race, i)
            winners = [r for r in results if r["granted"]]
            assert len(winners) == 1, f"round {round_no}: {len(winners)} winners"
            winner = next(f"agent-{i}" for i, r in enumerate(results) if r["granted"])
            for r in results:
                if not r["granted"]:
                    assert r["holders"] == [
                        {"agent_id": winner, "mode": "exclusive", "path": path, "expires_at": winners[0]["expires_at"]}
                    ]


async def test_a_fencing_token_after_a_restart_is_larger_than_every_token_before(huddle_server):
    tokens = []
    async with Client(huddle_server.mcp_url) as client:
        await call(client, "register_agent", name="alice")
        for i in range(3):
            tokens.append((await call(client, "acquire_lock", agent_id="alice", path=f"f{i}.py"))["fencing_token"])
        await call(client, "release_lock", agent_id="alice", path="f0.py")
    huddle_server.restart()
    async with Client(huddle_server.mcp_url) as client:
        await call(client, "register_agent", name="alice")
        after = await call(client, "acquire_lock", agent_id="alice", path="f0.py")
        held = await call(client, "list_locks", agent_id="alice")
    assert after["fencing_token"] > max(tokens)
    assert {lock["path"] for lock in held["locks"]} == {"f0.py", "f1.py", "f2.py"}  # leases survive too


async def test_a_queued_request_whose_caller_goes_away_mid_write_is_never_granted(coordinator):
    for name in ("alice", "bob", "carol"):
        await coordinator.agents.register(name)
    await coordinator.locks.acquire("alice", "a.py")
    # bob's queued request is cancelled while its first write is still on its way to the database.
    async with anyio.create_task_group() as tg:
        cancel = anyio.CancelScope()

        async def bob() -> None:
            with cancel:
                await coordinator.locks.acquire("bob", "a.py", wait_s=60)

        tg.start_soon(bob)
        await anyio.sleep(0)
        cancel.cancel()
    await coordinator.locks.release("alice", "a.py")
    # Whatever the interleaving, bob neither waits in the queue nor ends up holding the lease.
    with anyio.fail_after(5):
        while True:
            state = await coordinator.locks.list_locks()
            if not state["waiting"] and not state["locks"]:
                break
            await anyio.sleep(0.01)
    granted = await coordinator.locks.acquire("carol", "a.py")
    assert granted["granted"] is True
