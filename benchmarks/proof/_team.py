"""Team mode drivers: what several `huddle server start` processes on one PostgreSQL database are put
through, shared by the CI test (tests/e2e/test_team_mode.py) and the many-round proof (cluster_team.py).

One copy of each driver, so the test and the proof cannot drift apart. A driver only acts and records
what it observed, as a plain report; the caller judges it (the test asserts, the proof counts).
Every call is plain REST (`POST /api/v1/tools/<name>`) on the instance the driver was told to use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import psycopg

from huddle.domain.events import Event
from huddle.push.topics import route

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workload import Ledger, missing, start_load, union

ADMIN_URL = os.environ.get("HUDDLE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# How long a survivor may take to notice that the leader died and take over, before a driver gives up.
TAKEOVER_LIMIT_S = 30.0
# A race's calls all in flight at once: httpx keeps up to this many connections per instance.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


class Refused(RuntimeError):
    """A tool call answered with an error envelope (or not at all)."""


def clients(urls: Sequence[str], timeout: float = 60) -> list[httpx.AsyncClient]:
    """One HTTP client per instance; close them with `close(clients)`."""
    return [httpx.AsyncClient(base_url=url, timeout=timeout, limits=LIMITS) for url in urls]


async def close(http: Sequence[httpx.AsyncClient]) -> None:
    for client in http:
        await client.aclose()


async def tool(client: httpx.AsyncClient, name: str, /, **args: Any) -> dict[str, Any]:
    """One REST tool call; its result, or Refused with the server's error envelope."""
    try:
        response = await client.post(f"/api/v1/tools/{name}", json=args)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Refused(f"{name} on {client.base_url}: {exc!r}") from None
    if response.status_code != 200 or not body.get("ok"):
        raise Refused(f"{name} on {client.base_url}: HTTP {response.status_code} {body}")
    return dict(body["result"])


@contextlib.contextmanager
def scratch_database(prefix: str = "huddle_proof") -> Iterator[str]:
    """A new empty database on the admin server for one run; dropped afterwards (the proof's own;
    tests use tests/postgres_helpers.fresh_database, which also knows when to skip)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    try:
        yield (
            f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:"
            f"{info.get('port', '5432')}/{name}"
        )
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- agents and the S1 collision --------------------------------------------------------------------


async def register(http: Sequence[httpx.AsyncClient], names: Sequence[str]) -> None:
    """Registers `names`, agent i on instance i mod n, all at once."""
    await asyncio.gather(
        *(tool(http[i % len(http)], "register_agent", name=name, agent_id=name) for i, name in enumerate(names))
    )


async def open_thread(a: httpx.AsyncClient, b: httpx.AsyncClient, first: str, second: str, path: str) -> str:
    """S1's collision: `first` announces on `path` through `a`, `second` through `b`; the thread id."""
    await tool(a, "announce_work", agent_id=first, subject=f"{first} edits {path}", target_files=[path])
    result = await tool(b, "announce_work", agent_id=second, subject=f"{second} edits {path}", target_files=[path])
    if result["verdict"] != "consult" or not result.get("thread_id"):
        raise Refused(f"announcing {path} twice did not open a consultation: {result}")
    return str(result["thread_id"])


# -- races ---------------------------------------------------------------------------------------------


@dataclass
class Race:
    """One round: every agent tried to win the same thing at once, spread over the instances."""

    kind: str
    calls: int
    winners: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # calls that errored (neither won nor lost)
    named: set[str] = field(default_factory=set)  # the winner(s) the losers were told of
    holder: str | None = None  # who holds it when read back afterwards, from another instance

    @property
    def ok(self) -> bool:
        """Exactly one winner, every loser names it, and the read-back agrees."""
        return (
            len(self.winners) == 1
            and not self.refused
            and self.named <= set(self.winners)
            and self.holder == self.winners[0]
        )

    def report(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "calls": self.calls,
            "winners": len(self.winners),
            "refused": self.refused[:3],
            "holder": self.holder,
            "ok": self.ok,
        }


async def _race(
    http: Sequence[httpx.AsyncClient],
    kind: str,
    agents: Sequence[str],
    attempt: Callable[[httpx.AsyncClient, str], Any],
    judge: Callable[[str, dict[str, Any], Race], None],
) -> Race:
    race = Race(kind, len(agents))
    start = asyncio.Event()

    async def one(index: int, agent: str) -> None:
        client = http[index % len(http)]
        await start.wait()  # every request is built and waiting: they leave together
        try:
            judge(agent, await attempt(client, agent), race)
        except Refused as exc:
            race.refused.append(str(exc)[:300])

    tasks = [asyncio.create_task(one(i, agent)) for i, agent in enumerate(agents)]
    await asyncio.sleep(0)  # let each task reach start.wait()
    start.set()
    await asyncio.gather(*tasks)
    return race


async def race_lock(http: Sequence[httpx.AsyncClient], agents: Sequence[str], path: str) -> Race:
    """Every agent asks for an exclusive lease on `path` at once."""

    def judge(agent: str, result: dict[str, Any], race: Race) -> None:
        if result.get("granted"):
            race.winners.append(agent)
        else:
            race.named.update(h["agent_id"] for h in result.get("holders", []))

    race = await _race(
        http, "lock", agents, lambda c, a: tool(c, "acquire_lock", agent_id=a, path=path, ttl_s=600), judge
    )
    if race.winners:
        held = await tool(http[-1], "check_lock", path=path)
        holders = [h["agent_id"] for h in held.get("holders", [])]
        race.holder = holders[0] if len(holders) == 1 else ",".join(holders) or None
    return race


async def race_task(http: Sequence[httpx.AsyncClient], agents: Sequence[str], task_id: str) -> Race:
    """One task on the board; every agent claims it at once."""
    await tool(http[0], "add_task", task_id=task_id, description=f"the {task_id} job")

    def judge(agent: str, result: dict[str, Any], race: Race) -> None:
        if result.get("claimed"):
            race.winners.append(agent)
        elif result.get("claimed_by"):
            race.named.add(str(result["claimed_by"]))

    race = await _race(http, "task", agents, lambda c, a: tool(c, "claim_task", agent_id=a, task_id=task_id), judge)
    again = await tool(http[-1], "add_task", task_id=task_id, description=f"the {task_id} job")
    race.holder = again["task"].get("claimed_by")
    return race


async def race_thread(
    http: Sequence[httpx.AsyncClient], agents: Sequence[str], pair: tuple[str, str], path: str
) -> Race:
    """`pair` collide on `path` (a thread opens); every agent claims the thread at once."""
    thread_id = await open_thread(http[0], http[1 % len(http)], *pair, path)

    def judge(agent: str, result: dict[str, Any], race: Race) -> None:
        if result.get("claimed"):
            race.winners.append(agent)
        elif result.get("claimed_by"):
            race.named.add(str(result["claimed_by"]))

    race = await _race(
        http, "thread", agents, lambda c, a: tool(c, "claim_thread", thread_id=thread_id, agent_id=a), judge
    )
    race.holder = (await tool(http[-1], "get_thread", thread_id=thread_id)).get("claimed_by")
    return race


# -- leadership -----------------------------------------------------------------------------------------


async def leaders(http: Sequence[httpx.AsyncClient]) -> list[bool | None]:
    """Per instance: does its sweeper lead (from /readyz checks.sweeper.leader)? None: no answer."""

    async def ask(client: httpx.AsyncClient) -> bool | None:
        try:
            body = (await client.get("/readyz", timeout=5)).json()
            return bool(body["checks"]["sweeper"]["leader"])
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    return list(await asyncio.gather(*(ask(c) for c in http)))


async def wait_for_leader(http: Sequence[httpx.AsyncClient], limit_s: float = TAKEOVER_LIMIT_S) -> int:
    """The index of the one instance among `http` that leads, once exactly one does."""
    deadline = time.monotonic() + limit_s
    while True:
        flags = await leaders(http)
        if flags.count(True) == 1:
            return flags.index(True)
        if time.monotonic() > deadline:
            raise Refused(f"no single leader among {len(http)} instances after {limit_s:g} s: {flags}")
        await asyncio.sleep(0.05)  # polling /readyz: leadership is re-checked every sweep interval


async def wait_for_event(
    client: httpx.AsyncClient, after: int, match: Callable[[dict[str, Any]], bool], limit_s: float
) -> dict[str, Any]:
    """Reads the log after `after` until an event matches; the event (Refused past `limit_s`)."""
    deadline = time.monotonic() + limit_s
    cursor = after
    while True:
        page = await tool(client, "list_events", after=cursor, limit=500)
        for event in page["events"]:
            if match(event):
                return event
        cursor = page["events"][-1]["cursor"] if page["events"] else cursor
        if time.monotonic() > deadline:
            raise Refused(f"no matching event after cursor {after} within {limit_s:g} s")
        if not page["has_more"]:
            await asyncio.sleep(0.05)  # polling the log for what another instance's sweeper writes


async def latest_cursor(client: httpx.AsyncClient) -> int:
    return int((await tool(client, "list_events", limit=1))["latest_cursor"])


async def log_between(client: httpx.AsyncClient, start: int, end: int) -> list[dict[str, Any]]:
    """Every event with start < cursor <= end, oldest first (list_events page by page)."""
    events: list[dict[str, Any]] = []
    cursor = start
    while cursor < end:
        page = await tool(client, "list_events", after=cursor, limit=500)
        events += [e for e in page["events"] if e["cursor"] <= end]
        if not page["events"]:
            break
        cursor = page["next_after"]
    return events


# -- MQTT: each publication of each event exactly once ------------------------------------------------------


def event_of(wire: dict[str, Any]) -> Event:
    """An event back from its wire form (list_events), to ask the topic map where it is published."""
    core = {"event", "cursor", "ts", "agent_id", "thread_id", "audience"}
    return Event(
        cursor=wire["cursor"],
        ts=0.0,
        project="",
        kind=wire["event"],
        actor=wire["agent_id"],
        audience=tuple(wire["audience"]),
        thread_id=wire["thread_id"],
        data={k: v for k, v in wire.items() if k not in core},
    )


def expected_publications(events: Sequence[dict[str, Any]], root: str) -> Counter[tuple[str, int]]:
    """(topic, cursor) of every MQTT message the topic map makes of `events`, once each."""
    return Counter((p.topic, e["cursor"]) for e in events for p in route(event_of(e), root).publications)


@dataclass
class Tally:
    """What a real MQTT subscriber to `<root>/#` received: (topic, cursor) of each event message."""

    received: Counter[tuple[str, int]] = field(default_factory=Counter)

    def after(self, start: int, end: int | None = None) -> Counter[tuple[str, int]]:
        return Counter({k: n for k, n in self.received.items() if k[1] > start and (end is None or k[1] <= end)})


@contextlib.asynccontextmanager
async def mqtt_tally(port: int, root: str) -> AsyncIterator[Tally]:
    """Subscribes to everything under `root` on the broker at 127.0.0.1:`port` (QoS 1) and counts.

    Retained replays (sent on subscribing, flagged retain) are earlier publications, not this run's."""
    tally = Tally()
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(f"{root}/#", qos=1)

        async def read() -> None:
            async for message in client.messages:
                if message.retain or not isinstance(message.payload, bytes | bytearray):
                    continue
                with contextlib.suppress(ValueError):
                    payload = json.loads(message.payload)
                    if isinstance(payload, dict) and isinstance(payload.get("cursor"), int):
                        tally.received[(str(message.topic), payload["cursor"])] += 1

        reader = asyncio.create_task(read())
        try:
            yield tally
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


async def mqtt_publishers(http: Sequence[httpx.AsyncClient]) -> list[dict[str, Any]]:
    """Per instance: its MQTT bridge's status (publishing or following, events published)."""
    return [(await tool(c, "coordinator_status"))["mqtt"].get("published", {}) for c in http]


# -- a waiter queued on one instance, the holder releasing on another ----------------------------------------


async def queued_grant(
    holder_at: httpx.AsyncClient, waiter_at: httpx.AsyncClient, holder: str, waiter: str, path: str
) -> dict[str, Any]:
    """`holder` locks `path`; `waiter` queues for it (wait_s) elsewhere; the holder releases.

    Returns both tokens and what the waiter's blocking call answered."""
    first = await tool(holder_at, "acquire_lock", agent_id=holder, path=path, ttl_s=600)
    mark = await latest_cursor(holder_at)
    waiting = asyncio.create_task(tool(waiter_at, "acquire_lock", agent_id=waiter, path=path, ttl_s=600, wait_s=60))
    # Release only once the queue entry is committed (its lock.queued event is in the log).
    await wait_for_event(
        holder_at, mark, lambda e: e["event"] == "lock.queued" and e.get("holder") == waiter, limit_s=30
    )
    released = await tool(holder_at, "release_lock", agent_id=holder, path=path)
    granted = await asyncio.wait_for(waiting, 60)
    return {"holder_token": first.get("fencing_token"), "released": released, "waiter": granted}


# -- a reader tailing by cursor while every instance writes ---------------------------------------------------


@dataclass
class Tail:
    """What cursor readers saw while writers on every instance sent messages."""

    start: int
    end: int = 0
    acknowledged: list[str] = field(default_factory=list)  # message ids whose send was answered
    log: list[dict[str, Any]] = field(default_factory=list)  # list_events after=N, page by page
    updates: list[dict[str, Any]] = field(default_factory=list)  # the recipient's get_updates, page by page

    def report(self) -> dict[str, Any]:
        log_cursors = [e["cursor"] for e in self.log]
        update_cursors = [e["cursor"] for e in self.updates]
        acked = Counter(self.acknowledged)

        def seen(events: list[dict[str, Any]]) -> Counter[str]:
            return Counter(e["message_id"] for e in events if e["event"] == "message.sent")

        in_log, in_updates = seen(self.log), seen(self.updates)
        return {
            "events": len(log_cursors),
            "acknowledged_messages": len(acked),
            # Dense and in commit order: exactly the cursors start+1 … end, each once, ascending.
            "log_in_cursor_order_without_gaps": log_cursors == list(range(self.start + 1, self.end + 1)),
            "updates_ascending": update_cursors == sorted(set(update_cursors)),
            "log_missing_messages": sorted(set(acked) - set(in_log))[:5],
            "log_duplicated_messages": sorted(m for m, n in in_log.items() if n > 1)[:5],
            "updates_missing_messages": sorted(set(acked) - set(in_updates))[:5],
            "updates_duplicated_messages": sorted(m for m, n in in_updates.items() if n > 1)[:5],
        }

    @property
    def ok(self) -> bool:
        r = self.report()
        return bool(
            r["log_in_cursor_order_without_gaps"]
            and r["updates_ascending"]
            and not (
                r["log_missing_messages"]
                or r["log_duplicated_messages"]
                or r["updates_missing_messages"]
                or r["updates_duplicated_messages"]
            )
        )


async def tail_while_writing(
    http: Sequence[httpx.AsyncClient], tag: str, writers_per_instance: int, messages_each: int
) -> Tail:
    """Writers on every instance send messages to one recipient; meanwhile one reader tails the whole
    log (`list_events after=N`) on the first instance and one the recipient's `get_updates` on the
    second. Both read until they reach the log's end after the last write was answered."""
    recipient = f"{tag}-inbox"
    senders = [f"{tag}-w{i}" for i in range(writers_per_instance * len(http))]
    await register(http, [recipient, *senders])
    tail = Tail(start=await latest_cursor(http[0]))
    writing = True

    async def write(index: int, sender: str) -> None:
        client = http[index % len(http)]
        for n in range(messages_each):
            sent = await tool(client, "send_message", from_agent=sender, to_agent=recipient, content=f"{sender} {n}")
            tail.acknowledged.append(str(sent["message_id"]))

    async def read_log() -> None:
        cursor = tail.start
        while True:
            done = not writing  # read before the page: a page read after the writers stopped is final
            page = await tool(http[0], "list_events", after=cursor, limit=200)
            tail.log += page["events"]
            cursor = page["next_after"] if page["events"] else cursor
            if done and not page["has_more"] and cursor >= tail.end:
                return
            if not page["events"]:
                await asyncio.sleep(0.01)  # caught up with the writers: poll again

    async def read_updates() -> None:
        cursor = tail.start
        while True:
            done = not writing
            page = await tool(http[1 % len(http)], "get_updates", agent_id=recipient, cursor=cursor, limit=200)
            tail.updates += page["events"]
            cursor = page["next_cursor"]
            if done and not page["has_more"] and cursor >= tail.end:
                return
            if not page["events"]:
                await asyncio.sleep(0.01)

    readers = [asyncio.create_task(read_log()), asyncio.create_task(read_updates())]
    try:
        await asyncio.gather(*(write(i, s) for i, s in enumerate(senders)))
    finally:
        tail.end = await latest_cursor(http[0])
        writing = False
    await asyncio.wait_for(asyncio.gather(*readers), 60)
    return tail


# -- kill -9 under load ------------------------------------------------------------------------------------


@dataclass
class Crash:
    victim: int
    was_leader: bool
    acknowledged_writes: int = 0
    lost: list[str] = field(default_factory=list)
    new_leader: int | None = None
    takeover_s: float | None = None  # kill → a survivor reports leader on /readyz
    swept_s: float | None = None  # kill → a short intent announced after it ended as expired
    lease_swept: bool = False  # a lease that ran out after the kill was freed (lock.expired)
    ledger: Ledger = field(default_factory=Ledger)  # every acknowledged write of the round

    def report(self) -> dict[str, Any]:
        return {
            "victim": self.victim,
            "was_leader": self.was_leader,
            "acknowledged_writes": self.acknowledged_writes,
            "lost": len(self.lost),
            "lost_examples": self.lost[:5],
            "new_leader": self.new_leader,
            "takeover_s": None if self.takeover_s is None else round(self.takeover_s, 2),
            "swept_s": None if self.swept_s is None else round(self.swept_s, 2),
            "lease_swept": self.lease_swept,
        }


async def kill_under_load(
    urls: Sequence[str], kill: Callable[[int], None], tag: str, clients_per_instance: int, seed: int
) -> Crash:
    """Write load from clients on every instance; kill -9 the leader once writes are flowing; then
    check every acknowledged write on every survivor, that a survivor takes the lead, and that the
    background sweep runs there (a 1 s intent expires, a 1 s lease is freed)."""
    http = clients(urls, timeout=10)
    try:
        victim = await wait_for_leader(http)
        crash = Crash(victim=victim, was_leader=True)
        rng = random.Random(seed)
        loads = [await start_load(url, f"{tag}i{i}", clients_per_instance, rng.random()) for i, url in enumerate(urls)]
        ledgers = [ledger for ledger, _ in loads]
        # The crash comes with requests in flight on every instance: once a few dozen more writes landed.
        target = sum(ledger.count() for ledger in ledgers) + rng.randint(20, 80)
        while sum(ledger.count() for ledger in ledgers) < target:
            await asyncio.sleep(0.01)
        kill(victim)
        killed_at = time.monotonic()
        await loads[victim][1]()  # its clients stop once their requests have failed
        survivors = [i for i in range(len(urls)) if i != victim]
        alive = [http[i] for i in survivors]
        crash.new_leader = survivors[await wait_for_leader(alive)]
        crash.takeover_s = time.monotonic() - killed_at
        # The survivors' load stops before the lease test: an acquire also frees due leases itself.
        for i in survivors:
            await loads[i][1]()
        keeper = f"{tag}-sweep"
        await tool(alive[0], "register_agent", name=keeper, agent_id=keeper)
        mark = await latest_cursor(alive[0])
        intent = await tool(alive[0], "announce_work", agent_id=keeper, subject="brief", target_files=["x"], ttl_s=1)
        await tool(alive[-1], "acquire_lock", agent_id=keeper, path=f"{tag}/lease.py", ttl_s=1)
        await wait_for_event(
            alive[-1],
            mark,
            lambda e: (
                e["event"] == "intent.ended"
                and e.get("intent_id") == intent["intent_id"]
                and e.get("status") == "expired"
            ),
            limit_s=TAKEOVER_LIMIT_S,
        )
        crash.swept_s = time.monotonic() - killed_at
        freed = await wait_for_event(
            alive[0],
            mark,
            lambda e: e["event"] == "lock.expired" and e.get("holder") == keeper,
            limit_s=TAKEOVER_LIMIT_S,
        )
        crash.lease_swept = freed["path"] == f"{tag}/lease.py"
        crash.ledger = union(*ledgers)
        crash.acknowledged_writes = crash.ledger.count()
        for i in survivors:
            crash.lost += [f"instance {i + 1}: {what}" for what in await missing(urls[i], crash.ledger)]
        return crash
    finally:
        await close(http)
