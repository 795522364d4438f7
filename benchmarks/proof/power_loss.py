"""Simulated power loss under load: 0 acknowledged writes lost, integrity ok.

The server's data dir is the mount point of `powerfs.py`, a FUSE filesystem that keeps every write
in a page cache until fsync (and every directory change until the directory is fsynced). Each
round: mount, start a real `huddle server start` on it, run eight REST clients writing (as in
`kill9.py`), and at a random moment cut the power: SIGSTOP the server (no more answers leave it),
SIGKILL the filesystem (its unsynced pages and directory entries are gone), SIGKILL the server,
unmount. Then mount the durable state again, run `PRAGMA integrity_check`, restart the server and
read back every write acknowledged in this round and the previous one; at the end, all of them.

A control runs first: 200 rows committed with `synchronous=FULL` then 200 with `synchronous=OFF`,
then a power cut. The filesystem must keep the first 200 and drop the rest — proof that it really
forgets what was not synced, so the main result is not vacuous.

Needs FUSE: /dev/fuse, `fusermount3` (Debian package fuse3) and `mfusepy` (PyPI). Run as root.

    python benchmarks/proof/power_loss.py            # 100 rounds
    python benchmarks/proof/power_loss.py --quick    # 3 rounds (CI)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _workload import DURABILITY_ONLY, ServerProcess, crash_main, crash_rounds

POWERFS = Path(__file__).with_name("powerfs.py")


class Mount:
    """`powerfs.py BACKING MOUNTPOINT` as a child process; `cut()` is the power cut."""

    def __init__(self, backing: Path, mountpoint: Path):
        self.backing, self.mountpoint = backing, mountpoint
        self.process: subprocess.Popen[bytes] | None = None

    def mount(self) -> None:
        self.backing.mkdir(exist_ok=True)
        self.mountpoint.mkdir(exist_ok=True)
        # A file, not a pipe: nobody reads a pipe while the filesystem serves, and a full one would
        # freeze the filesystem (and the server on it) mid-run.
        log = self.backing.parent / f"{self.backing.name}.powerfs.stderr"
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(POWERFS), str(self.backing), str(self.mountpoint)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None or time.monotonic() > deadline:
                said = log.read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError(f"powerfs did not mount (stderr in {log}): {said}")
            time.sleep(0.02)

    def cut(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.unmount()

    def unmount(self) -> None:
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True, check=False)
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def control(tmp: Path) -> dict[str, int]:
    """Synced rows survive a cut, unsynced ones do not: the filesystem really forgets."""
    fs = Mount(tmp / "control-backing", tmp / "control-mnt")
    fs.mount()
    try:
        conn = sqlite3.connect(fs.mountpoint / "c.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        for sync, first in (("FULL", 0), ("OFF", 200)):
            conn.execute(f"PRAGMA synchronous={sync}")
            for i in range(first, first + 200):
                conn.execute("INSERT INTO t VALUES (?)", (i,))
        fs.cut()
        conn.close()
        fs.mount()
        after = sqlite3.connect(fs.mountpoint / "c.db")
        kept = after.execute("SELECT count(*) FROM t").fetchone()[0]
        after.close()
    finally:
        fs.unmount()
    return {"synced_rows": 200, "unsynced_rows": 200, "rows_after_cut": kept}


async def power_rounds(rounds: int, clients: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="huddle-power-") as t:
        tmp = Path(t)
        repo = tmp / "repo"
        repo.mkdir()
        checks = control(tmp)
        fs = Mount(tmp / "backing", tmp / "mnt")
        server = ServerProcess(fs.mountpoint, repo, *DURABILITY_ONLY)

        def power_cut() -> None:
            # Freeze the server so no answer leaves it, lose the page cache, end the server, power on.
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            fs.cut()
            server.kill9()
            fs.mount()

        try:
            fs.mount()
            report = await crash_rounds(server, rounds, clients, seed, power_cut)
        finally:
            server.stop()
            with contextlib.suppress(Exception):
                fs.unmount()
    control_ok = checks["rows_after_cut"] == checks["synced_rows"]
    return {**report, "control": checks, "control_ok": control_ok}


if __name__ == "__main__":
    crash_main("power_loss", __doc__, 3, 11, power_rounds)
