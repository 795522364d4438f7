"""Reading repository files for analysis: regular files inside the repository, bounded, never blocking.

A repository may hold anything: a symlink to a FIFO (an open that waits for a writer forever), to
/dev/zero (a read that never ends), or to a file outside the repository. Every analysis read goes
through here: the path is resolved, must stay inside the repository, is opened with O_NOFOLLOW |
O_NONBLOCK (a FIFO opens at once, a symlink swapped in after the check is refused) and must be a
regular file by fstat; at most `max_bytes + 1` bytes are read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class SourceStat:
    """What a changed-file check compares: the resolved regular file's mtime and size."""

    mtime_ns: int
    size: int


def _resolve(root: str, rel: str) -> str | None:
    """The real path of `rel` under `root`, or None when it leaves the repository."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root, rel))
    try:
        inside = os.path.commonpath([real_root, real]) == real_root
    except ValueError:  # different drives
        return None
    return real if inside and real != real_root else None


def stat_source(root: str, rel: str) -> SourceStat | None:
    """mtime and size of `rel` when it is (or links, inside the repository, to) a regular file."""
    real = _resolve(root, rel)
    if real is None:
        return None
    try:
        info = os.lstat(real)
    except OSError:
        return None
    return SourceStat(info.st_mtime_ns, info.st_size) if stat.S_ISREG(info.st_mode) else None


def read_source(root: str, rel: str, max_bytes: int) -> bytes | None:
    """The contents of `rel`, or None when it is missing, no regular file inside the repository,
    unreadable or larger than `max_bytes`. Never blocks on a FIFO or device, never reads unbounded."""
    real = _resolve(root, rel)
    if real is None:
        return None
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError:  # missing, a symlink swapped in since _resolve (ELOOP), permissions
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        chunks: list[bytes] = []
        left = max_bytes + 1  # one byte more than allowed tells a file that grew since fstat
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return data if len(data) <= max_bytes else None
