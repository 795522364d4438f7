"""Code intelligence speed: symbol extraction, co-change index build, merge-tree checks, announce.

- symbols: tree-sitter definitions per 1,000 lines, per language (each fixture file repeated);
- cochange: `git log` read + P(B|A) index on a repository of 5,000 commits made with fast-import;
- merge_tree: one predicted-conflict check per pair (worktree snapshot + merge-tree), conflicting
  and clean;
- announce: the service's announce with the analysis on (co-change pairs, symbols and a cached
  merge conflict in the tables, loops running) against the analysis off, interleaved.

    python benchmarks/analysis.py           # 5,000 commits, 300 announces per side
    python benchmarks/analysis.py --quick   # CI: 500 commits, 40 announces per side
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import machine, summarise
from huddle.analysis import cochange, merges
from huddle.analysis.symbols import parse_definitions
from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings
from huddle.storage.sqlite import SqliteStore

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "symbols"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, input=stdin, capture_output=True, check=True
    ).stdout.decode()


def bench_symbols(rounds: int) -> dict[str, Any]:
    out = {}
    for fixture in sorted(p for p in FIXTURES.iterdir() if p.suffix != ".json"):
        text = fixture.read_bytes()
        lines = text.count(b"\n")
        copies = max(1, 1000 // max(lines, 1))
        source = text * copies
        total_lines = source.count(b"\n")
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            found = parse_definitions(fixture.name, source)
            times.append(time.perf_counter() - started)
            assert found
        out[fixture.name] = {
            "lines": total_lines,
            "ms_per_1000_lines": round(statistics.median(times) * 1000 * 1000 / total_lines, 3),
        }
    return out


def fast_import_repo(repo: Path, commits: int, files: int = 300, prefix: str = "f") -> None:
    """A linear history of `commits` commits touching 1–6 of `files` files each, in one fast-import."""
    rng = random.Random(7)
    git(repo, "init", "-q", "-b", "main")
    chunks: list[bytes] = []
    start = int(time.time()) - commits * 60
    for n in range(1, commits + 1):
        msg = f"commit {n}".encode()
        head = f"commit refs/heads/main\nmark :{n}\ncommitter bench <bench@localhost> {start + n * 60} +0000\n"
        body = [head.encode(), b"data %d\n" % len(msg), msg, b"\n"]
        if n > 1:
            body.append(f"from :{n - 1}\n".encode())
        anchor = rng.randrange(files)
        touched = {anchor, (anchor + 1) % files} if rng.random() < 0.6 else set()
        touched |= {rng.randrange(files) for _ in range(rng.randint(1, 4))}
        for f in sorted(touched):
            content = f"file {f} at {n}\n".encode()
            body += [f"M 100644 inline src/{prefix}{f}.py\n".encode(), b"data %d\n" % len(content), content, b"\n"]
        chunks.append(b"".join(body))
    git(repo, "fast-import", "--quiet", stdin=b"".join(chunks))
    git(repo, "reset", "-q", "--hard", "main")


def bench_cochange(commits: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="huddle-bench-") as tmp:
        repo = Path(tmp)
        started = time.perf_counter()
        fast_import_repo(repo, commits)
        made = time.perf_counter() - started
        started = time.perf_counter()
        history = cochange.read_history(str(repo), max_commits=commits, days=3650, max_files=50)
        read = time.perf_counter() - started
        started = time.perf_counter()
        pairs = cochange.build_index(history)
        built = time.perf_counter() - started
    return {
        "commits": len(history),
        "pairs_kept": len(pairs),
        "repo_build_s": round(made, 3),
        "git_log_s": round(read, 3),
        "index_build_s": round(built, 3),
    }


def bench_merge_tree(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="huddle-bench-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        for i in range(200):
            (repo / f"f{i}.txt").write_text("".join(f"line {n}\n" for n in range(100)))
        git(repo, "add", ".")
        git(repo, "commit", "-qm", "base")
        one, two = Path(tmp) / "one", Path(tmp) / "two"
        git(repo, "worktree", "add", "-q", "-b", "one", str(one))
        git(repo, "worktree", "add", "-q", "-b", "two", str(two))
        (one / "f1.txt").write_text("changed by one\n" + (one / "f1.txt").read_text())
        (two / "f1.txt").write_text("changed by two\n" + (two / "f1.txt").read_text())
        (two / "f2.txt").write_text((two / "f2.txt").read_text() + "tail\n")
        snap, conflict, clean = [], [], []
        for _ in range(rounds):
            started = time.perf_counter()
            a, b = merges.snapshot(str(one)), merges.snapshot(str(two))
            snap.append((time.perf_counter() - started) / 2)
            started = time.perf_counter()
            found = merges.predict(str(repo), a, b)
            conflict.append(time.perf_counter() - started)
            assert found is not None
            started = time.perf_counter()
            assert merges.predict(str(repo), "one", "main") is None
            clean.append(time.perf_counter() - started)
    return {
        "worktree_files": 200,
        "snapshot_ms": round(statistics.median(snap) * 1000, 2),
        "merge_tree_conflicting_pair_ms": round(statistics.median(conflict) * 1000, 2),
        "merge_tree_clean_pair_ms": round(statistics.median(clean) * 1000, 2),
    }


async def _announce_times(root: Path, analysis: str, count: int) -> list[float]:
    repo = root / "repo"
    settings = load_settings(
        {"data_dir": str(root / f"data-{analysis}"), "repo": str(repo), "analysis": analysis}, environ={}
    )
    coord = Coordinator(SqliteStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
    await coord.start()
    try:
        for n in range(20):
            await coord.agents.register(f"agent-{n}", branch="main")
            await coord.intents.announce(f"agent-{n}", "work", [f"src/f{n}.py"], target_symbols=["f"])
            await coord.files.log_edit(f"agent-{n}", f"src/f{n}.py", ranges=[[1, 1]])
        await coord.agents.register("me", branch="main")
        if analysis == "on":
            await coord.analysis.refresh_cochange()
            await coord.analysis.refresh_symbols()
        times = []
        for n in range(count):
            # f-files collide (layer 0a/1, softened by symbols) on both sides; g-files have co-change
            # partners nobody works on, so the analysis layers look up and find nothing: the same
            # verdicts and events either way, and the difference is the analysis's own cost.
            targets = [f"src/f{n % 20}.py", f"src/g{n % 20}.py"]
            started = time.perf_counter()
            await coord.intents.announce("me", "bench", targets, target_symbols=["g"], ttl_s=5)
            times.append(time.perf_counter() - started)
        return times
    finally:
        await coord.stop()


def bench_announce(count: int, commits: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="huddle-bench-") as tmp:
        root = Path(tmp)
        (root / "repo").mkdir()
        fast_import_repo(root / "repo", commits, files=40, prefix="g")
        history = cochange.read_history(str(root / "repo"), max_commits=commits, days=3650, max_files=50)
        pairs = len(cochange.build_index(history))
        on: list[float] = []
        off: list[float] = []
        for _ in range(4):  # interleaved quarters, so drift on a shared machine hits both sides
            off += asyncio.run(_announce_times(root, "off", count // 4))
            on += asyncio.run(_announce_times(root, "on", count // 4))
    median_on, median_off = statistics.median(on), statistics.median(off)
    return {
        "analysis_off": summarise(off),
        "analysis_on": summarise(on),
        "median_difference_pct": round((median_on - median_off) / median_off * 100, 1),
        "cochange_pairs": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    args = parser.parse_args()
    commits, announces, rounds = (500, 40, 2) if args.quick else (5000, 300, 10)
    report = {
        "benchmark": "analysis",
        "quick": args.quick,
        "machine": machine(),
        "symbols": bench_symbols(rounds),
        "cochange": bench_cochange(commits),
        "merge_tree": bench_merge_tree(rounds),
        "announce": bench_announce(announces, min(commits, 1000)),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
