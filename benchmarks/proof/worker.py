"""One client process of the proof runs: several official MCP clients, each recording its calls.

Run by `histories.py` and `fencing.py` (never by hand): `python worker.py CONFIG.json`. Clients
live in their own process so the driver can freeze them with SIGSTOP — a client paused past its
lease's TTL is the fault the fencing proof is about. Each call is written as one JSON line:
what was asked, when it was sent and answered (wall clock, shared with the server on one
machine), and the answer — or `info` when no answer came (timeout, dropped connection, server
killed), which the checker treats as "may or may not have happened".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

logging.disable(logging.WARNING)  # the SDK logs every dropped connection; the history says it all


class Connection:
    """An MCP session that is reopened after the server went away.

    The client lives in a task of its own: when its transport dies, anyio cancels the task that
    entered it, and that must not be the task recording calls (it would lose the record).
    """

    def __init__(self, url: str, deadline: float):
        self.url = url
        self.deadline = deadline
        self.client: Client | None = None
        self.task: asyncio.Task[None] | None = None
        self.closing: asyncio.Event | None = None

    async def get(self) -> Client | None:
        while self.client is None and time.time() < self.deadline:
            ready: asyncio.Future[Client | None] = asyncio.get_running_loop().create_future()
            self.closing = asyncio.Event()
            self.task = asyncio.create_task(self._hold(ready, self.closing))
            try:
                self.client = await asyncio.wait_for(ready, timeout=30)
            except TimeoutError:
                self.client = None
            if self.client is None:
                await self.drop()
                await asyncio.sleep(0.2)
        return self.client

    async def _hold(self, ready: asyncio.Future[Client | None], closing: asyncio.Event) -> None:
        try:
            async with Client(self.url) as client:
                ready.set_result(client)
                await closing.wait()
        except BaseException:  # the session broke: the next call will open a new one
            if not ready.done():
                ready.set_result(None)

    async def drop(self) -> None:
        task, closing, self.task, self.client = self.task, self.closing, None, None
        if closing is not None:
            closing.set()
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=2)
            except BaseException:
                task.cancel()


class Recorder:
    def __init__(self, path: Path):
        self.file = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


JOIN_TIMEOUT_S = 60.0

# Tool errors that are answers of an object's specification rather than "nothing happened":
# (words the error must contain, the answer it stands for).
SPEC_ERRORS = {"renew": ("you hold no lock", {"held": False}), "update": ("task ", {"refused": True})}


async def call(
    conn: Connection,
    rec: Recorder,
    timeout: float,
    process: str,
    key: str,
    f: str,
    args: dict[str, Any],
    tool: str,
    tool_args: dict[str, Any],
) -> dict[str, Any] | None:
    """One recorded call; returns the answer, or None when the outcome is unknown."""
    client = await conn.get()
    if client is None:
        return None
    invoke = time.time()
    record: dict[str, Any] = {"process": process, "key": key, "f": f, "args": args, "invoke": invoke}
    try:
        with anyio.fail_after(timeout):
            result = await client.call_tool(tool, tool_args)
    except Exception as exc:  # no answer: the call may or may not have taken effect
        rec.write({**record, "complete": None, "type": "info", "error": type(exc).__name__})
        await conn.drop()
        return None
    complete = time.time()
    if result.is_error:
        text = str(getattr(result.content[0], "text", ""))
        words, outcome = SPEC_ERRORS.get(f, ("", None))
        if outcome is not None and words in text:
            rec.write({**record, "complete": complete, "type": "ok", "result": {**outcome, "error": text}})
            return outcome
        rec.write({**record, "complete": complete, "type": "fail", "error": text})
        return {"error": text}
    answer = result.structured_content or {}
    rec.write({**record, "complete": complete, "type": "ok", "result": _slim(answer)})
    return answer


def _slim(answer: dict[str, Any]) -> dict[str, Any]:
    keep = ("granted", "renewed", "released", "fencing_token", "claimed", "already_yours", "claimed_by", "updated")
    return {k: answer[k] for k in keep if k in answer}


async def lin_client(cfg: dict[str, Any], n: int, rec: Recorder) -> None:
    """A random mix of lease, task and thread calls on the run's keys until the deadline."""
    rng = random.Random(cfg["seed"] * 1000 + n)
    agent = cfg["agents"][n]
    conn = Connection(cfg["url"], time.time() + JOIN_TIMEOUT_S)
    timeout = cfg["op_timeout_s"]
    mine: set[str] = set()
    await join(cfg, conn, agent)
    while time.time() < cfg["deadline"]:
        r = rng.random()
        if r < 0.6:
            path = rng.choice(cfg["lease_paths"])
            key = "lease:" + path
            what = rng.random()
            if what < 0.55:
                mode = rng.choice(["exclusive", "exclusive", "shared", "shared", "intent"])
                ttl = rng.choice(cfg["ttls"])
                args = {"agent": agent, "mode": mode, "ttl": ttl}
                tool_args = {"agent_id": agent, "path": path, "mode": mode, "ttl_s": ttl}
                await call(conn, rec, timeout, agent, key, "acquire", args, "acquire_lock", tool_args)
            elif what < 0.75:
                ttl = rng.choice([None, *cfg["ttls"]])
                tool_args = {"agent_id": agent, "path": path} | ({"ttl_s": ttl} if ttl else {})
                await call(
                    conn, rec, timeout, agent, key, "renew", {"agent": agent, "ttl": ttl}, "renew_lock", tool_args
                )
            else:
                args, tool_args = {"agent": agent}, {"agent_id": agent, "path": path}
                await call(conn, rec, timeout, agent, key, "release", args, "release_lock", tool_args)
        elif r < 0.85:
            task = rng.choice(sorted(mine)) if mine and rng.random() < 0.5 else rng.choice(cfg["tasks"])
            key = "task:" + task
            if task in mine or rng.random() < 0.2:
                status = rng.choice(["in_progress", "in_progress", "done", "failed"])
                tool_args = {"task_id": task, "agent_id": agent, "status": status}
                await call(
                    conn,
                    rec,
                    timeout,
                    agent,
                    key,
                    "update",
                    {"agent": agent, "status": status},
                    "update_task",
                    tool_args,
                )
                if status in ("done", "failed"):
                    mine.discard(task)
            else:
                answer = await call(
                    conn,
                    rec,
                    timeout,
                    agent,
                    key,
                    "claim",
                    {"agent": agent},
                    "claim_task",
                    {"task_id": task, "agent_id": agent},
                )
                if answer and answer.get("claimed"):
                    mine.add(task)
        else:
            thread = rng.choice(cfg["threads"])
            await call(
                conn,
                rec,
                timeout,
                agent,
                "thread:" + thread,
                "claim",
                {"agent": agent},
                "claim_thread",
                {"thread_id": thread, "agent_id": agent},
            )
        await asyncio.sleep(rng.random() * cfg["think_s"])
    await conn.drop()


async def fence_client(cfg: dict[str, Any], n: int, rec: Recorder) -> None:
    """Acquire the fenced path, write to the storage with the token, sometimes freeze, release.

    With `pause_holders`, a holder freezes itself (SIGSTOP) right after a grant and before its
    writes; the driver wakes it (SIGCONT) after the lease's TTL has passed — the classic case of
    a process paused by GC or a VM hiccup that then writes as if it still held the lock.
    """
    rng = random.Random(cfg["seed"] * 1000 + n)
    agent = cfg["agents"][n]
    conn = Connection(cfg["url"], time.time() + JOIN_TIMEOUT_S)
    timeout = cfg["op_timeout_s"]
    await join(cfg, conn, agent)
    grants = 0
    async with httpx.AsyncClient(base_url=cfg["storage_url"], timeout=30) as storage:
        while time.time() < cfg["deadline"]:
            path = rng.choice(cfg["lease_paths"])
            args = {"agent": agent, "mode": "exclusive", "ttl": cfg["ttls"][0]}
            tool_args = {"agent_id": agent, "path": path, "mode": "exclusive", "ttl_s": cfg["ttls"][0]}
            answer = await call(conn, rec, timeout, agent, "lease:" + path, "acquire", args, "acquire_lock", tool_args)
            if not answer or not answer.get("granted"):
                await asyncio.sleep(rng.random() * cfg["think_s"])
                continue
            token = answer["fencing_token"]
            # The first grant always freezes (so every run has the fault), later ones at random.
            paused = cfg["pauser"] and (grants == 0 or rng.random() < cfg["pause_probability"])
            grants += 1
            if paused:
                rec.write({"process": agent, "pause": True, "path": path, "token": token, "at": time.time()})
                os.kill(os.getpid(), signal.SIGSTOP)  # frozen here until the driver sends SIGCONT
            for i in range(cfg["writes_per_grant"]):
                with contextlib.suppress(httpx.HTTPError):
                    await storage.post(
                        "/write",
                        json={
                            "path": path,
                            "agent": agent,
                            "token": token,
                            "data": f"{agent}:{token}:{i}",
                            "after_pause": paused,
                        },
                    )
            args = {"agent": agent}
            await call(
                conn,
                rec,
                timeout,
                agent,
                "lease:" + path,
                "release",
                args,
                "release_lock",
                {"agent_id": agent, "path": path},
            )
            await asyncio.sleep(rng.random() * cfg["think_s"])
    await conn.drop()


async def join(cfg: dict[str, Any], conn: Connection, agent: str) -> None:
    """Connects and registers, then waits until every client of the process has: the run's
    clock starts when they all can call, not while a loaded machine is still importing."""
    client = await conn.get()
    if client is not None:
        with contextlib.suppress(Exception):
            await client.call_tool("register_agent", {"agent_id": agent, "name": agent})
    cfg["joined"] += 1
    if cfg["joined"] == len(cfg["agents"]):
        cfg["deadline"] = time.time() + cfg["seconds"]
        cfg["rec"].write({"ready": True, "at": time.time(), "deadline": cfg["deadline"]})
        cfg["all_in"].set()
    await cfg["all_in"].wait()
    conn.deadline = cfg["deadline"]


async def main(config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    rec = Recorder(Path(cfg["out"]))
    cfg.update(rec=rec, joined=0, all_in=asyncio.Event(), deadline=time.time() + JOIN_TIMEOUT_S)
    client = fence_client if cfg["mode"] == "fence" else lin_client
    await asyncio.gather(*(client(cfg, n, rec) for n in range(len(cfg["agents"]))))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
