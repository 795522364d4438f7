"""A planted bug the checker must catch: an in-process lease table with a check-then-act race.

`InProcessLeases(racy=True)` decides on a read taken before it yields to the event loop, so two
concurrent exclusive acquires can both be granted — the double grant that the real server's
single-transaction acquire rules out. With `racy=False` the same table is correct, which is the
control: the checker must accept its histories and reject the racy ones.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

from linearizability import Op
from models import EXCLUSIVE, RANK, SHARED, compatible


@dataclass
class _Held:
    mode: str
    token: int
    expires: float
    ttl: float


class InProcessLeases:
    def __init__(self, *, racy: bool):
        self.racy = racy
        self.table: dict[str, dict[str, _Held]] = {}
        self.token = 0

    def _live(self, path: str) -> dict[str, _Held]:
        now = time.time()
        return {a: h for a, h in self.table.get(path, {}).items() if h.expires > now}

    async def acquire(self, agent: str, path: str, mode: str, ttl: float) -> dict[str, Any]:
        live = self._live(path)
        if self.racy:
            await asyncio.sleep(0)  # the bug: what follows acts on a read another acquire may have overtaken
        else:
            live = self._live(path)
        own = live.get(agent)
        if own is not None and own.mode == mode:
            own.expires = time.time() + ttl
            return {"granted": True, "fencing_token": own.token, "renewed": True}
        downgrade = own is not None and RANK[mode] < RANK[own.mode]
        rivals = [a for a, h in live.items() if a != agent and not compatible(h.mode, mode)]
        if rivals and not downgrade:
            return {"granted": False, "holders": rivals}
        self.token += 1
        self.table.setdefault(path, {})[agent] = _Held(mode, self.token, time.time() + ttl, ttl)
        return {"granted": True, "fencing_token": self.token}

    async def release(self, agent: str, path: str) -> dict[str, Any]:
        held = self._live(path).get(agent)
        self.table.get(path, {}).pop(agent, None)
        if held is None:
            return {"released": False}
        return {"released": True, "fencing_token": held.token}


async def record_history(*, racy: bool, clients: int = 6, ops_per_client: int = 20, seed: int = 1) -> list[Op]:
    """Concurrent clients acquire and release two paths on an in-process table; returns the history."""
    table = InProcessLeases(racy=racy)
    rng = random.Random(seed)
    history: list[Op] = []

    async def client(n: int) -> None:
        agent = f"a{n}"
        for _ in range(ops_per_client):
            path = rng.choice(["lease:p/x", "lease:p/y"])
            if rng.random() < 0.6:
                mode, ttl = rng.choice([EXCLUSIVE, EXCLUSIVE, SHARED]), 30.0
                invoke = time.time()
                result = await table.acquire(agent, path, mode, ttl)
                f, args = "acquire", {"agent": agent, "mode": mode, "ttl": ttl}
            else:
                invoke = time.time()
                result = await table.release(agent, path)
                f, args = "release", {"agent": agent}
            history.append(Op(len(history), agent, path, f, args, invoke, time.time(), "ok", result))
            await asyncio.sleep(rng.random() / 1000)

    await asyncio.gather(*(client(n) for n in range(clients)))
    return history
