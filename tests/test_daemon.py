"""The server as an operator runs it: `huddle server start --daemon|stop|status|logs`, one server per data dir.

Every test runs the `huddle` command line as a subprocess, exactly as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from helpers import ServerProcess
from postgres_helpers import fresh_database, migrated_database


def huddle(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HUDDLE_LOG_LEVEL": "INFO"}
    env.pop("HUDDLE_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "huddle.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def start_flags(data_dir: Path, repo: Path) -> list[str]:
    return ["--data-dir", str(data_dir), "--port", "0", "--mqtt-port", "0", "--repo", str(repo)]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Path]]:
    """Data dirs whose daemons are stopped at teardown, whatever the test did."""
    dirs: list[Path] = []
    yield dirs
    for data_dir in dirs:
        huddle("server", "stop", "--data-dir", str(data_dir))


def runtime(data_dir: Path) -> dict[str, object]:
    return dict(json.loads((data_dir / "server.json").read_text()))


def test_the_daemon_starts_reports_status_serves_logs_and_stops(tmp_path: Path, repo: Path, daemons: list[Path]):
    data = tmp_path / "data"
    daemons.append(data)
    started = huddle("server", "start", "--daemon", *start_flags(data, repo))
    assert started.returncode == 0, started.stderr
    info = runtime(data)
    assert f"pid {info['pid']}" in started.stdout and str(info["url"]) in started.stdout

    status = huddle("server", "status", "--data-dir", str(data))
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("healthy") and str(info["url"]) in status.stdout
    report = json.loads(huddle("server", "status", "--json", "--data-dir", str(data)).stdout)
    assert report["running"] and report["healthy"] and report["pid"] == info["pid"]

    assert httpx.post(f"{info['url']}/api/v1/tools/register_agent", json={"name": "Ann"}).json()["ok"] is True
    logs = huddle("server", "logs", "-n", "20", "--data-dir", str(data))
    assert logs.returncode == 0 and "Huddle serving" in logs.stdout

    restarted = huddle("server", "restart", *start_flags(data, repo))
    assert restarted.returncode == 0, restarted.stderr
    assert f"pid {info['pid']}" in restarted.stdout  # "stopped the server … (pid N)"
    info = runtime(data)
    assert f"pid {info['pid']}" in restarted.stdout and httpx.get(f"{info['url']}/health").status_code == 200

    stopped = huddle("server", "stop", "--data-dir", str(data))
    assert stopped.returncode == 0 and f"pid {info['pid']}" in stopped.stdout
    assert not (data / "server.json").exists()
    after = huddle("server", "status", "--data-dir", str(data))
    assert after.returncode == 3 and after.stdout.startswith("not running")


def test_a_second_instance_on_another_data_dir_runs_beside_and_one_on_the_same_dir_is_refused_naming_it(
    tmp_path: Path, repo: Path, daemons: list[Path]
):
    first, second = tmp_path / "one", tmp_path / "two"
    daemons += [first, second]
    assert huddle("server", "start", "--daemon", *start_flags(first, repo)).returncode == 0
    assert huddle("server", "start", "--daemon", *start_flags(second, repo)).returncode == 0
    one, two = runtime(first), runtime(second)
    assert one["port"] != two["port"]
    for info in (one, two):
        assert httpx.get(f"{info['url']}/health").status_code == 200

    for args in (["server", "start"], ["server", "start", "--daemon"]):
        refused = huddle(*args, *start_flags(first, repo))
        assert refused.returncode == 1
        assert f"pid {one['pid']}" in refused.stderr and str(one["url"]) in refused.stderr
        assert "Traceback" not in refused.stderr
    assert runtime(first) == one, "the refused server must not touch the running one's server.json"
    assert httpx.get(f"{one['url']}/health").status_code == 200


def test_sigterm_stops_the_server_cleanly_and_leaves_no_server_json(tmp_path: Path, repo: Path):
    server = ServerProcess(tmp_path / "data", repo).start()
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0, server.log()
    assert not (server.data_dir / "server.json").exists()
    assert "Traceback" not in server.log()


def test_a_clean_stop_never_deletes_a_server_json_another_process_wrote(tmp_path: Path, repo: Path):
    server = ServerProcess(tmp_path / "data", repo).start()
    foreign = {"pid": os.getpid(), "url": "http://127.0.0.1:1", "port": 1}
    (server.data_dir / "server.json").write_text(json.dumps(foreign))
    server.stop()
    assert runtime(server.data_dir) == foreign


def test_a_stale_server_json_after_a_crash_is_reported_and_replaced_by_the_next_start(tmp_path: Path, repo: Path):
    server = ServerProcess(tmp_path / "data", repo).start()
    server.kill()
    assert (server.data_dir / "server.json").exists()
    status = huddle("server", "status", "--data-dir", str(server.data_dir))
    assert status.returncode == 3 and "stale server.json" in status.stdout
    restarted = server.start()
    try:
        assert httpx.get(restarted.url + "/health").status_code == 200
    finally:
        restarted.stop()


@pytest.mark.parametrize(
    "mistake",
    ["data dir is a file", "data dir below a file", "data dir unwritable", "repo missing", "started from /"],
)
def test_newcomer_mistakes_get_one_clear_line_and_no_traceback(tmp_path: Path, repo: Path, mistake: str):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    data, cwd, repo_arg = tmp_path / "data", None, str(repo)
    expected = {
        "data dir is a file": "is a file",
        "data dir below a file": f"is below {afile}, which is a file",
        "data dir unwritable": "pass a directory you can write to",
        "repo missing": "does not exist",
        "started from /": "refusing to coordinate the filesystem root",
    }[mistake]
    if mistake == "data dir is a file":
        data = afile
    elif mistake == "data dir below a file":
        data = afile / "sub" / "data"
    elif mistake == "data dir unwritable":
        data = Path("/sys/huddle-data")  # not creatable, even by root (CI runs as root)
    elif mistake == "repo missing":
        repo_arg = str(tmp_path / "no-such-repo")
    else:
        cwd, repo_arg = Path("/"), ""
    flags = ["--data-dir", str(data), "--port", "0", "--mqtt-port", "0"] + (["--repo", repo_arg] if repo_arg else [])
    result = huddle("server", "start", *flags, cwd=cwd)
    assert result.returncode == 1
    assert result.stderr.startswith("huddle: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_watch_piped_into_head_ends_quietly_when_head_exits(huddle_server: ServerProcess):
    url = huddle_server.url
    for name in ("ann", "bob"):
        httpx.post(f"{url}/api/v1/tools/register_agent", json={"name": name}).raise_for_status()
    for i in range(40):  # about 40 KB of output: more than the pipe and stdout buffers hold
        body = {"from_agent": "ann", "to_agent": "bob", "content": f"message {i} " + "x" * 1000}
        httpx.post(f"{url}/api/v1/tools/send_message", json=body).raise_for_status()
    watch = f"{sys.executable} -m huddle.cli.main watch --agent bob --once --json --since 0 --url {url}"
    command = f"{watch} --data-dir {huddle_server.data_dir} | head -n 1"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "broken" not in result.stderr.lower(), result.stderr


def test_a_database_written_by_a_newer_huddle_is_refused_at_start_in_one_line(tmp_path: Path, repo: Path):
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "huddle.db")
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    db.execute("INSERT INTO schema_migrations VALUES (999, '999_future.sql')")
    db.commit()
    db.close()
    result = huddle("server", "start", *start_flags(data, repo))
    assert result.returncode == 1
    assert "schema version(s) [999] that this Huddle does not know; upgrade Huddle" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "Huddle serving" not in result.stdout


def test_a_postgresql_database_written_by_a_newer_huddle_is_refused_at_start_in_one_line(
    tmp_path: Path, repo: Path
) -> None:
    with migrated_database() as url:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("INSERT INTO schema_migrations VALUES (999, '999_future.sql')")
        result = huddle("server", "start", *start_flags(tmp_path / "data", repo), "--db-url", url)
    assert result.returncode == 1
    assert "schema version(s) [999] that this Huddle does not know; upgrade Huddle" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "Huddle serving" not in result.stdout


def test_any_command_given_a_data_dir_that_is_a_file_says_so_in_one_line(huddle_server: ServerProcess, tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for data_dir in (afile, afile / "below"):
        result = huddle("watch", "--agent", "bob", "--once", "--url", huddle_server.url, "--data-dir", str(data_dir))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"huddle: cannot use {data_dir}") and "check --data-dir" in result.stderr


def test_a_db_url_password_reaches_the_daemon_by_its_environment_never_its_argv_or_a_readable_file(
    tmp_path: Path, repo: Path, daemons: list[Path]
):
    data = tmp_path / "data"
    daemons.append(data)
    with fresh_database() as url:
        secret_url = url.replace("@", ":S3cretPW@", 1)  # trust auth: any password is accepted
        started = huddle("server", "start", "--daemon", *start_flags(data, repo), "--db-url", secret_url)
        assert started.returncode == 0, started.stderr
        info = runtime(data)
        assert "S3cretPW" not in Path(f"/proc/{info['pid']}/cmdline").read_text()
        assert "S3cretPW" not in (data / "server.json").read_text()
        assert info["overrides"]["db_url"] == secret_url.replace("S3cretPW", "***")  # type: ignore[index]
        for name in ("server.json", "server.secrets.json"):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name

        # restart brings the same database back from the 0600 file, again not through argv
        restarted = huddle("server", "restart", "--data-dir", str(data), cwd=tmp_path)
        assert restarted.returncode == 0, restarted.stderr
        again = runtime(data)
        assert again["pid"] != info["pid"] and again["overrides"] == info["overrides"]
        assert "S3cretPW" not in Path(f"/proc/{again['pid']}/cmdline").read_text()
        assert "S3cretPW" in (data / "server.secrets.json").read_text()
        assert huddle("server", "stop", "--data-dir", str(data)).returncode == 0
        assert not (data / "server.secrets.json").exists()


def test_a_daemon_started_from_a_directory_with_a_module_named_like_a_stdlib_one_does_not_import_it(
    tmp_path: Path, repo: Path, daemons: list[Path]
):
    data = tmp_path / "data"
    daemons.append(data)
    trap = tmp_path / "trap"
    trap.mkdir()
    (trap / "queue.py").write_text('raise SystemExit("the daemon imported ./queue.py")\n')
    # The `huddle` console script (what users run) does not put its cwd on sys.path; `-P` does the same here.
    command = [sys.executable, "-P", "-m", "huddle.cli.main", "server", "start", "--daemon", *start_flags(data, repo)]
    started = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=trap)
    assert started.returncode == 0, started.stderr
    assert httpx.get(f"{runtime(data)['url']}/health").status_code == 200


def test_an_import_holding_the_data_dir_is_neither_reported_nor_stopped_as_a_server(tmp_path: Path) -> None:
    """`huddle import` holds the data dir's lock for its whole run: `server stop` must not signal it as
    a server, and `server start` is told an import is writing, not that a server runs."""
    from huddle.cli.runtime import IMPORT_HOLDER, DataDirLock, importing, running_server
    from huddle.errors import HuddleError

    data = tmp_path / "data"
    data.mkdir()
    held = DataDirLock(data, IMPORT_HOLDER)
    held.acquire()
    try:
        assert importing(data) == os.getpid() and running_server(data) is None
        stopped = huddle("server", "stop", "--data-dir", str(data))
        assert stopped.returncode == 0 and "no server is running" in stopped.stdout, stopped
        with pytest.raises(HuddleError, match=rf"huddle import \(pid {os.getpid()}\) is writing data dir"):
            DataDirLock(data).acquire()
    finally:
        held.release()
    assert importing(data) == 0
