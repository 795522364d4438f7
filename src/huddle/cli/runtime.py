"""One server per data dir: the lock it holds for its whole life, server.json, and the log file.

Files in the data dir (all written by `huddle server start`):
- `server.lock`: `fcntl.flock`-ed for the process's life. The kernel drops the lock when the
  process dies, however it dies, so "is a server running here?" never trusts a stale file.
- `server.json`: the PID file — pid, URL and ports of the server holding the lock. A server only
  ever deletes the server.json that carries its own pid.
- `server.log` (+ `.1` … `.3`): the rotated log, what `huddle server logs` reads.

Stdlib only: `huddle server status|stop|logs` import this without starting the server's stack.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import logging.handlers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huddle.errors import HuddleError

LOCK_NAME = "server.lock"
RUNTIME_NAME = "server.json"
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
    """What server.json says about the server that holds a data dir's lock."""

    pid: int
    url: str
    info: dict[str, Any]


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


def running_server(data_dir: Path) -> RunningServer | None:
    """The live server of a data dir, or None (a server.json without the lock held is stale)."""
    if not lock_is_held(data_dir):
        return None
    info = read_runtime(data_dir) or {}
    pid = info.get("pid")
    if not isinstance(pid, int):
        with contextlib.suppress(OSError, ValueError):
            pid = int((data_dir / LOCK_NAME).read_text().strip() or 0)
    return RunningServer(int(pid or 0), str(info.get("url", "(starting)")), info)


def stale_runtime(data_dir: Path) -> dict[str, Any] | None:
    """server.json left by a server that died without cleaning up (nobody holds the lock)."""
    info = read_runtime(data_dir)
    return info if info is not None and not lock_is_held(data_dir) else None


class DataDirLock:
    """The lock one server holds on its data dir; a second server is refused naming the first."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            other = running_server(self.data_dir)
            who = f"pid {other.pid} at {other.url}" if other else "another process"
            raise HuddleError(
                f"a Huddle server is already running on data dir {self.data_dir} ({who}); stop it with "
                f"`huddle server stop --data-dir {self.data_dir}`, or pass another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.set_inheritable(fd, False)  # a child (mosquitto) must not keep the lock after we die
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_runtime(data_dir: Path, info: dict[str, Any]) -> Path:
    """Writes server.json atomically (a reader never sees half a file)."""
    path = data_dir / RUNTIME_NAME
    tmp = data_dir / f".{RUNTIME_NAME}.{os.getpid()}"
    tmp.write_text(json.dumps({"pid": os.getpid(), **info}))
    tmp.replace(path)
    return path


def remove_own_runtime(data_dir: Path) -> None:
    """Deletes server.json only if this process wrote it: never another server's."""
    info = read_runtime(data_dir)
    if info is not None and info.get("pid") == os.getpid():
        (data_dir / RUNTIME_NAME).unlink(missing_ok=True)


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
