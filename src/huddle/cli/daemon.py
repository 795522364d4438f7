"""`huddle server start --daemon | stop | restart | status | logs`: the server as a background service.

The daemon is the same `huddle server start` in a new session with its output in the data dir,
so there is one way to serve; the lock, server.json and the log file (cli/runtime.py) are what
the other actions read. `status` exits 0 when healthy, 1 when running but unhealthy or not
answering, 3 when not running (the LSB convention init scripts and monitors expect).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from huddle.cli.remote import UNREACHABLE
from huddle.cli.runtime import LOG_NAME, RUNTIME_NAME, lock_is_held, read_runtime, running_server, stale_runtime
from huddle.errors import HuddleError

OUT_NAME = "server.out"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
PID_WAIT_S = 5.0
POLL_S = 0.1
NOT_RUNNING = 3


def start_daemon(
    argv: list[str], data_dir: Path, *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Starts `huddle server start ARGV` detached (in `cwd`, default ours); returns once it serves (0) or failed (1).

    `env` is added to the child's environment: settings holding a password travel there, not in argv.
    """
    other = running_server(data_dir)
    if other is not None:
        raise HuddleError(
            f"a Huddle server is already running on data dir {data_dir} (pid {other.pid} at {other.url}); "
            f"`huddle server stop --data-dir {data_dir}` first, or pass another --data-dir"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    # -P: `python -m` would put the working directory first on sys.path, so a queue.py (or any
    # module named like one Huddle imports) in the directory the daemon is started from would be
    # imported instead. The cwd itself must stay: a relative --repo and the default repo depend on it.
    command = [sys.executable, "-P", "-m", "huddle.cli.main", "server", "start", "--daemon-child", *argv]
    # Each start writes to its own file first: two racing starts must not show each other's lines.
    own_out = data_dir / f".{OUT_NAME}.{os.getpid()}"
    with open(own_out, "wb") as out:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            print(f"huddle: the server exited at start (code {code}):\n{_tail(own_out, 5)}", file=sys.stderr)
            _keep_out(own_out, data_dir, serving=False)
            return 1
        info = read_runtime(data_dir)
        if info and info.get("pid") == child.pid and _healthy(str(info["url"])):
            _keep_out(own_out, data_dir, serving=True)
            print(
                f"Huddle started in the background: pid {child.pid}, {info['url']} (MCP at {info['mcp_url']}).\n"
                f"Logs: huddle server logs --data-dir {data_dir}   Stop: huddle server stop --data-dir {data_dir}"
            )
            return 0
        time.sleep(POLL_S)
    print(f"huddle: the server (pid {child.pid}) did not answer within {START_TIMEOUT_S:.0f}s", file=sys.stderr)
    _keep_out(own_out, data_dir, serving=True)  # it may still be running: its output is server.out's now
    return 1


def _keep_out(own_out: Path, data_dir: Path, *, serving: bool) -> None:
    """A serving daemon's file becomes server.out (it keeps writing to it); a failed start's is appended."""
    if serving:
        own_out.replace(data_dir / OUT_NAME)
        return
    with contextlib.suppress(OSError), open(data_dir / OUT_NAME, "ab") as out:
        out.write(own_out.read_bytes())
    own_out.unlink(missing_ok=True)


def stop(data_dir: Path) -> int:
    """SIGTERM to the data dir's server, then wait until its lock is free (SIGKILL as last resort)."""
    server = running_server(data_dir)
    if server is None:
        stale = stale_runtime(data_dir)
        if stale is not None:
            (data_dir / RUNTIME_NAME).unlink(missing_ok=True)
            print(f"no server was running on {data_dir}; removed a stale server.json (pid {stale.get('pid')})")
        else:
            print(f"no server is running on {data_dir}")
        return 0
    pid = server.pid or _wait_for_pid(data_dir)
    if pid <= 0:
        if not lock_is_held(data_dir):
            return stop(data_dir)  # it exited while we waited: report and tidy as for no server
        raise HuddleError(f"the server on {data_dir} is still starting (no pid yet); retry in a moment")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited on its own between our look and the signal: waiting for the lock says the rest
    except PermissionError:
        raise HuddleError(
            f"the server on {data_dir} (pid {pid}) belongs to another user; stop it as that user"
        ) from None
    if _wait_for_unlock(data_dir, STOP_TIMEOUT_S):
        _remove_stale_runtime(data_dir)
        print(f"stopped the server on {data_dir} (pid {pid})")
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_for_unlock(data_dir, 5.0)
    _remove_stale_runtime(data_dir)
    print(f"huddle: pid {pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s and was killed", file=sys.stderr)
    return 1


def _wait_for_pid(data_dir: Path) -> int:
    """The lock holder's pid, once it has written it (a server that just took the lock has not yet)."""
    deadline = time.monotonic() + PID_WAIT_S
    while time.monotonic() < deadline:
        server = running_server(data_dir)
        if server is None or server.pid > 0:
            return server.pid if server else 0
        time.sleep(POLL_S)
    return 0


def _remove_stale_runtime(data_dir: Path) -> None:
    """After a stop, a server.json nobody's lock backs is stale (e.g. left by a predecessor killed -9)."""
    if stale_runtime(data_dir) is not None:
        (data_dir / RUNTIME_NAME).unlink(missing_ok=True)


def status(data_dir: Path, as_json: bool) -> int:
    server = running_server(data_dir)
    report: dict[str, Any] = {"data_dir": str(data_dir), "running": server is not None}
    code = NOT_RUNNING
    if server is None:
        stale = stale_runtime(data_dir)
        if stale is not None:
            report["stale_server_json"] = stale
    elif server.starting:
        report.update(pid=server.pid or None, starting=True, healthy=False)
        code = 1
    else:
        report.update(pid=server.pid, url=server.url, mcp_url=server.info.get("mcp_url"))
        try:
            response = httpx.get(server.url + "/readyz", timeout=5)
            checks = response.json().get("checks", {})
            report.update(healthy=response.status_code == 200, checks=checks)
        except (*UNREACHABLE, ValueError) as exc:
            report.update(healthy=False, error=f"{server.url} does not answer ({type(exc).__name__})")
        code = 0 if report["healthy"] else 1
    if as_json:
        print(json.dumps(report, indent=2))
        return code
    if server is None:
        print(f"not running (data dir {data_dir})")
        if "stale_server_json" in report:
            print(
                f"stale server.json from pid {report['stale_server_json'].get('pid')} (that server died without"
                " cleaning up); `huddle server stop` removes it, `huddle server start` replaces it"
            )
        return code
    if server.starting:
        print(f"starting: pid {server.pid or '?'} holds data dir {data_dir} and has not written server.json yet")
        return code
    print(f"{'healthy' if report['healthy'] else 'UNHEALTHY'}: pid {server.pid}, {server.url}, data dir {data_dir}")
    for name, check in report.get("checks", {}).items():
        print(f"  {name:<10} {'ok' if check.get('ok') else 'FAIL'}  {_brief(check)}")
    if "error" in report:
        print(f"  {report['error']}")
    return code


def logs(data_dir: Path, lines: int, follow: bool) -> int:
    path = data_dir / LOG_NAME
    if not path.exists():
        raise HuddleError(f"no log file at {path}; has a server run with --data-dir {data_dir}?")
    print(_tail(path, lines), flush=True)
    if not follow:
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        _follow(path)
    return 0


def _follow(path: Path) -> None:
    """Prints what is appended, reopening the file when the log rotates (its inode changes)."""
    handle = path.open("r", encoding="utf-8", errors="replace")
    handle.seek(0, os.SEEK_END)
    inode = os.fstat(handle.fileno()).st_ino
    while True:
        line = handle.readline()
        if line:
            sys.stdout.write(line)
            sys.stdout.flush()
            continue
        try:
            rotated = path.stat().st_ino != inode
        except FileNotFoundError:
            rotated = False
        if rotated:
            handle.close()
            handle = path.open("r", encoding="utf-8", errors="replace")
            inode = os.fstat(handle.fileno()).st_ino
            continue
        time.sleep(0.2)  # a poll interval, not a wait for time to pass: `tail -f` does the same


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=max(0, lines))).rstrip("\n")
    except OSError:
        return ""


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except UNREACHABLE:
        return False


def _wait_for_unlock(data_dir: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not lock_is_held(data_dir):
            return True
        time.sleep(POLL_S)
    return not lock_is_held(data_dir)


def _brief(check: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in check.items() if k != "ok")
