"""One server per data dir: the lock it holds for its whole life, server.json, and the log file.

Files in the data dir (all written by `huddle server start`):
- `server.lock`: `fcntl.flock`-ed for the process's life. The kernel drops the lock when the
  process dies, however it dies, so "is a server running here?" never trusts a stale file. It holds
  the holder's pid, followed by ` import` when `huddle import` holds it instead of a server.
- `server.json`: the PID file — pid, URL and ports of the server holding the lock. A server only
  ever deletes the server.json that carries its own pid. Mode 0600: it records the settings the
  server was started with (for `restart`), URLs with their password replaced by `***`.
- `server.secrets.json` (0600): the same settings' values in clear where they may carry a password
  (db_url, mqtt_url), so `restart` can start the same server; removed with server.json.
- `server.log` (+ `.1` … `.3`): the rotated log, what `huddle server logs` reads.

Stdlib only: `huddle server status|stop|logs` import this without starting the server's stack.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import logging.handlers
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huddle.errors import HuddleError

LOCK_NAME = "server.lock"
RUNTIME_NAME = "server.json"
SECRETS_NAME = "server.secrets.json"
LOG_NAME = "server.log"
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3


def data_dir_of(args: Any) -> Path:
    """The data dir a CLI command acts on: --data-dir, else HUDDLE_DATA_DIR, else ~/.huddle."""
    raw = getattr(args, "data_dir", None) or os.environ.get("HUDDLE_DATA_DIR") or "~/.huddle"
    return Path(raw).expanduser()


def prepare_data_dir(path: Path) -> Path:
    """Creates the data dir or says, in one sentence, why it cannot be used (never a traceback)."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == path else f"is below {parent}, which is a file"
            raise HuddleError(f"--data-dir {path} {where}; pass --data-dir pointing at a directory (or a new path)")
        if parent.exists():
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HuddleError(
            f"cannot create --data-dir {path} ({exc.strerror}); pass a directory you can write to"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise HuddleError(f"--data-dir {path} is not writable by this user; pass a directory you can write to")
    return path


def check_repo(repo: Path, given: str) -> str | None:
    """Refuses a --repo that does not exist and a server rooted at `/`; returns a warning or None."""
    if given and not repo.exists():
        raise HuddleError(f"--repo {given} does not exist; pass the path of the repository to coordinate")
    if not repo.is_dir():
        raise HuddleError(f"--repo {repo} is not a directory; pass the repository's top directory")
    if repo == Path(repo.anchor):
        raise HuddleError(
            f"refusing to coordinate the filesystem root {repo}; run from your repository or pass --repo PATH"
        )
    if not any((p / ".git").exists() for p in [repo, *repo.parents]):
        return f"{repo} is not inside a git repository; Huddle works without git, but git-aware checks are off"
    return None


@dataclass
class RunningServer:
    """The server that holds a data dir's lock: its pid, and what its server.json says once written."""

    pid: int
    url: str
    info: dict[str, Any]

    @property
    def starting(self) -> bool:
        """True while the lock holder has not written its own server.json yet (no URL to ask)."""
        return not self.info


def read_runtime(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((data_dir / RUNTIME_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_is_held(data_dir: Path) -> bool:
    """True while some process holds the data dir's lock (probes with a non-blocking flock)."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock, if it got one
    return False


# What server.lock says after the pid when `huddle import` holds the data dir, not a server.
IMPORT_HOLDER = "import"


def _lock_words(data_dir: Path) -> list[str]:
    try:
        return (data_dir / LOCK_NAME).read_text().split()
    except OSError:
        return []


def lock_pid(data_dir: Path) -> int:
    """The pid written into server.lock by the process that took the lock (0 if unreadable)."""
    words = _lock_words(data_dir)
    try:
        return int(words[0]) if words else 0
    except ValueError:
        return 0


def importing(data_dir: Path) -> int:
    """The pid of a `huddle import` holding the data dir's lock, or 0."""
    held = lock_is_held(data_dir) and _lock_words(data_dir)[1:] == [IMPORT_HOLDER]
    return lock_pid(data_dir) if held else 0


def running_server(data_dir: Path) -> RunningServer | None:
    """The live server of a data dir, or None (a server.json without the lock held is stale).

    The lock holder's pid in server.lock is the truth. server.json is trusted only when it carries
    that same pid: while a restarted server starts up, server.json may still be the dead
    predecessor's, and its pid (dead, or by now another process) must never be reported or signalled.
    """
    if not lock_is_held(data_dir) or importing(data_dir):
        return None  # an import is no server: nothing to report as one, or to stop
    pid = lock_pid(data_dir)
    if pid <= 0 or not pid_alive(pid):
        pid = 0  # the holder has not written its pid yet (the file still names the previous one)
    info = read_runtime(data_dir) or {}
    if pid and info.get("pid") == pid:
        return RunningServer(pid, str(info.get("url", "(starting)")), info)
    return RunningServer(pid, "(starting)", {})


def stale_runtime(data_dir: Path) -> dict[str, Any] | None:
    """server.json left by a server that died without cleaning up (nobody holds the lock)."""
    info = read_runtime(data_dir)
    return info if info is not None and not lock_is_held(data_dir) else None


class DataDirLock:
    """The lock one server holds on its data dir; a second server is refused naming the first."""

    def __init__(self, data_dir: Path, holder: str = ""):
        self.data_dir = data_dir
        self.holder = holder  # "" for a server; IMPORT_HOLDER for `huddle import`
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            importer = importing(self.data_dir)
            if importer:
                raise HuddleError(
                    f"huddle import (pid {importer}) is writing data dir {self.data_dir}; wait for it to finish,"
                    " then try again"
                ) from None
            other = running_server(self.data_dir)
            who = f"pid {other.pid} at {other.url}" if other else "another process"
            raise HuddleError(
                f"a Huddle server is already running on data dir {self.data_dir} ({who}); stop it with "
                f"`huddle server stop --data-dir {self.data_dir}`, or pass another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {self.holder}".rstrip().encode() + b"\n")
        os.set_inheritable(fd, False)  # a child (mosquitto) must not keep the lock after we die
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_runtime(data_dir: Path, info: dict[str, Any]) -> Path:
    """Writes server.json atomically (a reader never sees half a file), readable by its owner only."""
    return _write_private(data_dir, RUNTIME_NAME, {"pid": os.getpid(), **info})


def write_secrets(data_dir: Path, secrets: Mapping[str, str]) -> None:
    """Records the password-bearing settings in clear for `restart`, in a file only its owner reads."""
    if secrets:
        _write_private(data_dir, SECRETS_NAME, {"pid": os.getpid(), "overrides": dict(secrets)})
    else:
        (data_dir / SECRETS_NAME).unlink(missing_ok=True)


def read_secrets(data_dir: Path, pid: object) -> dict[str, str]:
    """The settings server.secrets.json holds, if the server `pid` wrote it (never a predecessor's)."""
    try:
        data = json.loads((data_dir / SECRETS_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("pid") != pid or not isinstance(data.get("overrides"), dict):
        return {}
    return {str(k): str(v) for k, v in data["overrides"].items()}


def _write_private(data_dir: Path, name: str, data: dict[str, Any]) -> Path:
    path = data_dir / name
    tmp = data_dir / f".{name}.{os.getpid()}"
    # Created 0600 from the start (not chmod-ed after): no moment where another user could read it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an old tmp file left by a crash keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data))
    tmp.replace(path)
    return path


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by `***`, for files and messages others may see."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))


def remove_own_runtime(data_dir: Path) -> None:
    """Deletes server.json (and its secrets) only if this process wrote it: never another server's."""
    info = read_runtime(data_dir)
    if info is not None and info.get("pid") == os.getpid():
        (data_dir / RUNTIME_NAME).unlink(missing_ok=True)
        if read_secrets(data_dir, os.getpid()):
            (data_dir / SECRETS_NAME).unlink(missing_ok=True)


def add_log_file(data_dir: Path) -> logging.Handler:
    """Adds the rotated log file in the data dir to the root logger, formatted like stderr.

    The formatter is copied from the stderr handler `configure_logging` installed, so the log format
    is chosen in one place (huddle/logs.py) and the file always matches it.
    """
    handler = logging.handlers.RotatingFileHandler(
        data_dir / LOG_NAME, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    root = logging.getLogger()
    if root.handlers:
        handler.setFormatter(root.handlers[0].formatter)
    handler.setLevel(root.level)
    root.addHandler(handler)
    return handler
