"""A FUSE filesystem that forgets, on power loss, everything that was not made durable by fsync.

Used by `power_loss.py` to simulate a power cut under a running Huddle server, in the spirit of
LazyFS (dsrhaslab/lazyfs): writes land in a page cache held in this process's memory; only
`fsync`/`fdatasync` on a file copies its pages to the backing store (with a real fsync), and only
`fsync` on a directory makes that directory's current entries durable. New files, renames, unlinks
and truncations therefore vanish on a power cut unless the directory (and the file) was synced,
which is stricter than LazyFS's default (it persists metadata at once). A power cut is this
process being killed with SIGKILL: the page cache and the volatile directory tree die with it, and
the next mount sees only the durable state.

Durable state in BACKING: `tree.json` (each directory's durable entries: name -> [inode, kind,
mode]), replaced atomically on every directory fsync, and `o/<inode>` (a file's durable bytes).

    python benchmarks/proof/powerfs.py BACKING MOUNTPOINT    # foreground; kill -9 = power cut
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mfusepy as fuse

PAGE = 4096
ROOT = 1


@dataclass
class Node:
    ino: int
    kind: str  # "d" or "f"
    mode: int
    entries: dict[str, int] = field(default_factory=dict)  # directories: name -> inode
    size: int = 0
    floor: int = 0  # bytes at or past this offset that are not dirty read as zeros (truncated since sync)
    dirty: dict[int, bytearray] = field(default_factory=dict)  # page number -> page, not yet durable
    mtime: float = field(default_factory=time.time)


class PowerLossFS(fuse.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, backing: Path):
        self.backing = backing
        (backing / "o").mkdir(parents=True, exist_ok=True)
        tree_file = backing / "tree.json"
        self.durable: dict[int, dict[str, list[Any]]] = (
            {int(k): v for k, v in json.loads(tree_file.read_text()).items()} if tree_file.exists() else {}
        )
        self.nodes: dict[int, Node] = {ROOT: Node(ROOT, "d", stat.S_IFDIR | 0o755)}
        self._load(ROOT)
        live = set(self.nodes)
        # Backing objects no durable entry names any more are garbage from before the cut.
        for obj in (backing / "o").iterdir():
            if int(obj.name) not in live:
                obj.unlink()
        self.next_ino = max(live) + 1
        self.fds: dict[int, int] = {}
        self.syncs = 0

    def _load(self, ino: int) -> None:
        for name, (child, kind, mode) in self.durable.get(ino, {}).items():
            node = Node(child, kind, mode)
            if kind == "f":
                obj = self.backing / "o" / str(child)
                node.size = node.floor = obj.stat().st_size if obj.exists() else 0
            self.nodes[child] = node
            self.nodes[ino].entries[name] = child
            if kind == "d":
                self._load(child)

    # --- lookup -------------------------------------------------------------------------------

    def _resolve(self, path: str) -> Node:
        node = self.nodes[ROOT]
        for part in (p for p in path.split("/") if p):
            if node.kind != "d" or part not in node.entries:
                raise fuse.FuseOSError(errno.ENOENT)
            node = self.nodes[node.entries[part]]
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self._resolve(head or "/")
        if parent.kind != "d":
            raise fuse.FuseOSError(errno.ENOTDIR)
        return parent, name

    def _node(self, path: str | None, fh: int | None) -> Node:
        if fh:
            return self.nodes[fh]
        assert path is not None
        return self._resolve(path)

    def _fd(self, ino: int) -> int:
        if ino not in self.fds:
            self.fds[ino] = os.open(self.backing / "o" / str(ino), os.O_RDWR | os.O_CREAT, 0o600)
        return self.fds[ino]

    # --- pages --------------------------------------------------------------------------------

    def _page(self, node: Node, n: int) -> bytes:
        if n in node.dirty:
            return bytes(node.dirty[n])
        start = n * PAGE
        if start >= node.floor:
            return bytes(PAGE)
        data = os.pread(self._fd(node.ino), PAGE, start)[: node.floor - start]
        return data + bytes(PAGE - len(data))

    # --- attributes and directories -----------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        node = self._node(path, fh)
        ns = int(node.mtime * 1e9)
        size = node.size if node.kind == "f" else 0
        return {
            "st_mode": node.mode,
            "st_ino": node.ino,
            "st_nlink": 2 if node.kind == "d" else 1,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_atime": ns,
            "st_mtime": ns,
            "st_ctime": ns,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *self._resolve(path).entries]

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": PAGE, "f_frsize": PAGE, "f_blocks": 1 << 22, "f_bfree": 1 << 21, "f_bavail": 1 << 21}

    def access(self, path: str, amode: int) -> int:
        self._resolve(path)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        node = self._resolve(path)
        node.mode = (node.mode & ~0o7777) | (mode & 0o7777)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._resolve(path).mtime = times[1] / 1e9 if times else time.time()
        return 0

    def _new(self, path: str, kind: str, mode: int) -> Node:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise fuse.FuseOSError(errno.EEXIST)
        node = Node(self.next_ino, kind, mode)
        self.next_ino += 1
        self.nodes[node.ino] = node
        parent.entries[name] = node.ino
        parent.mtime = time.time()
        return node

    def mkdir(self, path: str, mode: int) -> int:
        self._new(path, "d", stat.S_IFDIR | (mode & 0o7777))
        return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return self._new(path, "f", stat.S_IFREG | (mode & 0o7777)).ino

    def open(self, path: str, flags: int) -> int:
        return self._resolve(path).ino

    def opendir(self, path: str) -> int:
        return self._resolve(path).ino

    def unlink(self, path: str) -> int:
        parent, name = self._parent(path)
        if name not in parent.entries:
            raise fuse.FuseOSError(errno.ENOENT)
        del parent.entries[name]
        return 0

    def rmdir(self, path: str) -> int:
        parent, name = self._parent(path)
        if self._resolve(path).entries:
            raise fuse.FuseOSError(errno.ENOTEMPTY)
        del parent.entries[name]
        return 0

    def rename(self, old: str, new: str) -> int:
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        if old_name not in old_parent.entries:
            raise fuse.FuseOSError(errno.ENOENT)
        new_parent.entries[new_name] = old_parent.entries.pop(old_name)
        return 0

    # --- data ---------------------------------------------------------------------------------

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        node = self._node(path, fh)
        end = min(node.size, offset + size)
        if offset >= end:
            return b""
        first, last = offset // PAGE, (end - 1) // PAGE
        data = b"".join(self._page(node, n) for n in range(first, last + 1))
        return data[offset - first * PAGE : end - first * PAGE]

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        node = self._node(path, fh)
        pos = offset
        view = memoryview(data)
        while view:
            n, at = divmod(pos, PAGE)
            page = node.dirty.get(n)
            if page is None:
                page = node.dirty[n] = bytearray(self._page(node, n))
            take = min(PAGE - at, len(view))
            page[at : at + take] = view[:take]
            view, pos = view[take:], pos + take
        node.size = max(node.size, offset + len(data))
        node.mtime = time.time()
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        node = self._node(path, fh)
        if length < node.size:
            for n in [n for n in node.dirty if n * PAGE >= length]:
                del node.dirty[n]
            n, at = divmod(length, PAGE)
            if at and n in node.dirty:
                node.dirty[n][at:] = bytes(PAGE - at)
            node.floor = min(node.floor, length)
        node.size = length
        node.mtime = time.time()
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        return 0

    def releasedir(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """The file's current bytes become durable (its name only when its directory is synced)."""
        node = self._node(path, fh)
        fd = self._fd(node.ino)
        os.ftruncate(fd, node.floor)
        for n, page in node.dirty.items():
            os.pwrite(fd, bytes(page[: max(0, min(PAGE, node.size - n * PAGE))]), n * PAGE)
        os.ftruncate(fd, node.size)
        os.fsync(fd)
        node.dirty.clear()
        node.floor = node.size
        self.syncs += 1
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        """The directory's current entries become durable, as a whole, atomically."""
        node = self._node(path, fh)
        self.durable[node.ino] = {
            name: [child, self.nodes[child].kind, self.nodes[child].mode] for name, child in node.entries.items()
        }
        tmp = self.backing / "tree.json.tmp"
        with open(tmp, "w") as f:
            json.dump(self.durable, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.backing / "tree.json")
        dir_fd = os.open(self.backing, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return 0


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    backing, mountpoint = Path(sys.argv[1]), sys.argv[2]
    fuse.FUSE(PowerLossFS(backing), mountpoint, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()
