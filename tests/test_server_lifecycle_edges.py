"""Edges of running the server as an operator: restart, stale files, IPv6, damaged databases, bad numbers.

Each test drives the `huddle` command line as a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from test_daemon import huddle, runtime, start_flags


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def daemons() -> Iterator[list[Path]]:
    dirs: list[Path] = []
    yield dirs
    for data_dir in dirs:
        huddle("server", "stop", "--data-dir", str(data_dir))


def wait_for(condition: object, what: str, timeout_s: float = 20.0) -> None:
    """Polls a condition (a callable) until true; fails naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_restart_from_another_directory_keeps_the_flags_the_server_was_started_with(
    tmp_path: Path, repo: Path, daemons: list[Path]
):
    data = tmp_path / "data"
    daemons.append(data)
    port = free_port()
    flags = ["--data-dir", str(data), "--port", str(port), "--mqtt-port", "0", "--tools", "all", "--project", "proj"]
    started = huddle("server", "start", "--daemon", *flags, cwd=repo)  # repo = cwd, not a flag
    assert started.returncode == 0, started.stderr
    before = runtime(data)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    restarted = huddle("server", "restart", "--data-dir", str(data), cwd=elsewhere)
    assert restarted.returncode == 0, restarted.stderr
    after = runtime(data)
    assert after["pid"] != before["pid"]
    assert (after["port"], after["project"], after["repo"]) == (port, "proj", str(repo.resolve()))
    tools = httpx.get(f"{after['url']}/api/v1/tools").json()
    assert "introspection" in json.dumps(tools)
    assert dict(after["overrides"])["tools"] == "all"  # type: ignore[call-overload]

    # A flag given to restart overrides the recorded one; the rest stay. A relative --data-dir is
    # relative to where restart runs, not to the directory the server was first started from.
    renamed = huddle("server", "restart", "--data-dir", "data", "--project", "other", cwd=tmp_path)
    assert renamed.returncode == 0, renamed.stderr
    assert (runtime(data)["project"], runtime(data)["port"]) == ("other", port)


def test_uvicorn_warnings_of_a_daemon_land_in_server_log_not_server_out(
    tmp_path: Path, repo: Path, daemons: list[Path]
):
    data = tmp_path / "data"
    daemons.append(data)
    assert huddle("server", "start", "--daemon", *start_flags(data, repo)).returncode == 0
    port = int(str(runtime(data)["port"]))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GARBAGE \x00\x01 nonsense\r\n\r\n")
        sock.settimeout(5)
        sock.recv(100)
    wait_for(lambda: "invalid http" in (data / "server.log").read_text().lower(), "uvicorn's warning in server.log")
    out = data / "server.out"
    assert "invalid http" not in (out.read_text().lower() if out.exists() else "")


def test_restore_over_a_corrupted_database_keeps_it_aside_unchanged_and_restores(
    tmp_path: Path, repo: Path, daemons: list[Path]
):
    data = tmp_path / "data"
    daemons.append(data)
    assert huddle("server", "start", "--daemon", *start_flags(data, repo)).returncode == 0
    httpx.post(f"{runtime(data)['url']}/api/v1/tools/register_agent", json={"name": "alice", "agent_id": "alice"})
    backup = tmp_path / "good.db"
    assert huddle("backup", str(backup), "--data-dir", str(data)).returncode == 0
    assert huddle("server", "stop", "--data-dir", str(data)).returncode == 0
    db = data / "huddle.db"
    mangled = bytearray(db.read_bytes())
    mangled[0:100] = b"\xff" * 100
    db.write_bytes(bytes(mangled))

    restored = huddle("restore", str(backup), "--data-dir", str(data))
    assert restored.returncode == 0, restored.stderr
    assert "Traceback" not in restored.stderr and "damaged" in restored.stdout
    kept = [p for p in data.glob("huddle.db.before-restore-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(mangled)
    assert huddle("server", "start", "--daemon", *start_flags(data, repo)).returncode == 0
    agents = httpx.post(f"{runtime(data)['url']}/api/v1/tools/list_agents", json={}).json()
    assert "alice" in json.dumps(agents)


def test_an_ipv6_host_gets_a_bracketed_url_everywhere_and_a_malformed_url_is_one_line(
    tmp_path: Path, repo: Path, daemons: list[Path]
):
    data = tmp_path / "data"
    daemons.append(data)
    started = huddle("server", "start", "--daemon", "--host", "::1", *start_flags(data, repo))
    assert started.returncode == 0, started.stderr
    info = runtime(data)
    assert str(info["url"]) == f"http://[::1]:{info['port']}" and str(info["url"]) in started.stdout
    assert str(info["mqtt_url"]).startswith("mqtt://[::1]:")
    status = huddle("server", "status", "--data-dir", str(data))
    assert status.returncode == 0 and status.stdout.startswith("healthy"), status.stdout + status.stderr
    doctor = huddle("doctor", "--data-dir", str(data))
    assert "Traceback" not in doctor.stderr and f"http://[::1]:{info['port']}" in doctor.stdout
    assert huddle("tasks", "list", "--data-dir", str(data)).returncode == 0

    bad = huddle("tasks", "list", "--url", "http://[::1")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("huddle: bad server URL") and len(bad.stderr.strip().splitlines()) == 1


HOLDER = """
import sys
from pathlib import Path
from huddle.cli.runtime import DataDirLock
DataDirLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def test_stop_and_status_during_a_restart_trust_the_lock_holder_not_the_dead_servers_server_json(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # The predecessor was killed -9: its server.json stays. The new server holds the lock and has
    # not written its own server.json yet (a stand-in that takes the lock the same way).
    (data / "server.json").write_text(json.dumps({"pid": dead.pid, "url": "http://127.0.0.1:9", "mcp_url": "x"}))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        status = huddle("server", "status", "--json", "--data-dir", str(data))
        report = json.loads(status.stdout)
        assert status.returncode == 1 and report["starting"] and report["pid"] == holder.pid
        assert huddle("server", "status", "--data-dir", str(data)).stdout.startswith(f"starting: pid {holder.pid}")

        stopped = huddle("server", "stop", "--data-dir", str(data))
        assert stopped.returncode == 0, stopped.stderr
        assert f"pid {holder.pid}" in stopped.stdout and "--data-dir" not in stopped.stderr
        assert holder.wait(timeout=10) == -signal.SIGTERM
        assert not (data / "server.json").exists()  # the dead server's file went with it
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_signal_to_a_vanished_process_is_not_reported_as_a_bad_data_dir():
    from huddle.cli.main import _is_path_error

    assert not _is_path_error(ProcessLookupError(3, "No such process"))
    assert not _is_path_error(PermissionError(1, "Operation not permitted"))
    assert _is_path_error(PermissionError(13, "Permission denied", "/root/x"))


@pytest.mark.parametrize(
    "args",
    [
        ("locks", "acquire", "src/a.py", "--agent", "alice", "--ttl", "inf", "--url", "http://127.0.0.1:9"),
        ("locks", "acquire", "src/a.py", "--agent", "alice", "--ttl", "1e309", "--url", "http://127.0.0.1:9"),
        ("locks", "acquire", "src/a.py", "--agent", "alice", "--wait", "nan", "--url", "http://127.0.0.1:9"),
        ("locks", "acquire", "src/a.py", "--agent", "alice", "--ttl", "0", "--url", "http://127.0.0.1:9"),
        ("server", "start", "--agent-ttl-s", "inf"),
        ("server", "restart", "--lock-ttl-s", "nan"),
    ],
)
def test_non_finite_or_non_positive_seconds_are_refused_at_the_flag_without_a_traceback(
    args: tuple[str, ...], tmp_path: Path, daemons: list[Path]
):
    if args[0] == "server":  # should the flag ever be accepted, the server stays off the defaults
        daemons.append(tmp_path / "data")
        args = (*args, "--data-dir", str(tmp_path / "data"), "--port", "0", "--mqtt-port", "0")
    result = huddle(*args, timeout=20)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    flag = next(a for a in args if a.startswith("--") and a != "--url" and a != "--agent")
    assert flag in result.stderr


def test_a_non_finite_setting_from_the_environment_is_refused_naming_it(tmp_path: Path):
    env = {**os.environ, "HUDDLE_AGENT_TTL_S": "inf", "HUDDLE_DATA_DIR": str(tmp_path / "d")}
    result = subprocess.run(
        [sys.executable, "-m", "huddle.cli.main", "server", "start", "--port", "0", "--mqtt-port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )
    assert result.returncode == 1 and "agent_ttl_s" in result.stderr and "Traceback" not in result.stderr


def test_a_server_pointed_at_an_unreachable_postgresql_exits_1_with_a_one_line_hint(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = huddle(
        "server", "start", "--port", "0", "--mqtt-broker", "off", "--data-dir", str(tmp_path / "data"),
        "--repo", str(repo), "--db-url", f"postgresql://huddle@127.0.0.1:{port}/huddle",
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot connect to PostgreSQL at postgresql://huddle@127.0.0.1:{port}/huddle" in result.stderr
    assert "--db-url (HUDDLE_DB_URL)" in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_a_db_url_that_is_not_postgresql_is_refused_before_anything_starts(tmp_path: Path):
    result = huddle("server", "start", "--port", "0", "--data-dir", str(tmp_path / "data"), "--db-url", "mysql://x/y")
    assert result.returncode != 0
    assert "db_url must be empty (SQLite in the data dir) or a PostgreSQL URL" in result.stderr
