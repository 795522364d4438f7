"""The moving parts of a proof run: a real `huddle server start` process that faults are done to,
and worker processes full of MCP clients (worker.py) that record what they saw."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from huddle.testing import server_command, start_server, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
from linearizability import INF, Op

HERE = Path(__file__).resolve().parent
# Generous: a restart after kill -9 on a loaded two-core machine has taken over 10 s.
STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server on a fixed port, so clients find it again after a kill -9 and restart."""

    def __init__(self, data_dir: Path, repo: Path, *extra: str):
        self.data_dir, self.repo, self.extra = data_dir, repo, list(extra)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = server_command(self.data_dir, self.repo, *self.extra, port=self.port)
        try:
            self.process, _ = start_server(command, self.data_dir, self.log, timeout_s=STARTUP_TIMEOUT_S)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        stop_server(self.process)
        self.process = None

    def tool(self, tool_name: str, /, **args: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/api/v1/tools/{tool_name}", json=args, timeout=30)
        body = response.json()
        if not body.get("ok"):
            raise RuntimeError(f"{tool_name} failed: {body}")
        result: dict[str, Any] = body["result"]
        return result


class Broker:
    """An external Mosquitto on a free port, for `--mqtt-url`: restarting it is a broker fault that
    leaves the server running (the embedded broker can only restart with its server)."""

    def __init__(self, workdir: Path):
        self.binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.binary is not None
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise SystemExit("mosquitto did not start within 10 s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def spawn_worker(config: dict[str, Any], path: Path) -> subprocess.Popen[bytes]:
    """worker.py on the config written to `path`; its stderr goes to `path` with `.stderr` added —
    a file, since a pipe nobody reads until the end freezes a chatty worker mid-run."""
    path.write_text(json.dumps(config))
    with _stderr_log(str(path)).open("wb") as err:
        return subprocess.Popen([sys.executable, str(HERE / "worker.py"), str(path)], stderr=err)


def _stderr_log(config_path: str) -> Path:
    return Path(config_path + ".stderr")


def _worker_stderr(worker: subprocess.Popen[bytes], limit: int) -> str:
    log = _stderr_log(str(worker.args[-1]))  # type: ignore[index]
    text = log.read_bytes()[-limit:].decode(errors="replace") if log.exists() else ""
    return f"{text} (all of it in {log})"


def finish_workers(workers: list[subprocess.Popen[bytes]], timeout: float) -> list[str]:
    """Waits for the workers (waking any still frozen); returns the stderr of those that failed."""
    errors = []
    deadline = time.monotonic() + timeout
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGCONT)
        try:
            worker.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            errors.append("worker did not finish: " + _worker_stderr(worker, 1000))
            continue
        if worker.returncode != 0:
            errors.append(_worker_stderr(worker, 2000))
    return errors


def wait_ready(outputs: list[Path], workers: list[subprocess.Popen[bytes]], timeout: float = 120) -> float:
    """Waits until every worker's clients are connected and registered; returns the last deadline."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        notes = [_ready_note(path) for path in outputs]
        if all(notes):
            return max(float(n["deadline"]) for n in notes if n)
        if any(w.poll() is not None for w in workers):
            raise SystemExit("a worker exited before it was ready: " + "; ".join(finish_workers(workers, 5)))
        time.sleep(0.05)  # polling files: the workers are other processes
    raise SystemExit(f"workers were not ready within {timeout:g} s")


def _ready_note(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("ready"):
                return dict(record)
    return None


def is_stopped(pid: int) -> bool:
    """True when the process froze itself (state T in /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def load_history(paths: list[Path]) -> tuple[list[Op], list[dict[str, Any]]]:
    """The recorded calls as `Op`s (in invoke order), and the other notes (pauses)."""
    records: list[dict[str, Any]] = []
    for path in paths:
        if path.exists():
            records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    notes = [r for r in records if "f" not in r]
    calls = sorted((r for r in records if "f" in r), key=lambda r: r["invoke"])
    ops = [
        Op(
            i,
            r["process"],
            r["key"],
            r["f"],
            r["args"],
            r["invoke"],
            INF if r["complete"] is None else r["complete"],
            r["type"],
            r.get("result", {}),
        )
        for i, r in enumerate(calls)
    ]
    return ops, notes
