"""kill -9 at a random moment under load, restart, and check that no acknowledged write was lost.

Each round: a real `huddle server start` process on the same data dir and a free port; eight
concurrent REST clients register, announce, lease, message, add and claim tasks and share context;
at a random moment (0.1–1.5 s after every client is writing) the server gets SIGKILL with requests
in flight. Then, with no server running, `PRAGMA integrity_check` must answer `ok`; the server is
started again and every write acknowledged in this round and the previous one must be readable
through the REST surface. At the end, every acknowledged lease, message, task, claim, context
entry and agent of all rounds is checked once more (intents only per round: `list_intents`
shows an agent's newest 500).

    python benchmarks/proof/kill9.py              # 100 rounds
    python benchmarks/proof/kill9.py --quick      # 5 rounds (CI)
    python benchmarks/proof/kill9.py --rounds 20

Prints JSON: rounds, acknowledged writes, lost (must be 0), integrity failures (must be 0).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from _workload import DURABILITY_ONLY, ServerProcess, crash_main, crash_rounds


async def kill9_rounds(rounds: int, clients: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="huddle-kill9-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        server = ServerProcess(Path(tmp) / "data", repo, *DURABILITY_ONLY)
        try:
            return await crash_rounds(server, rounds, clients, seed, server.kill9)
        finally:
            server.stop()


if __name__ == "__main__":
    crash_main("kill9", __doc__, 5, 7, kill9_rounds)
