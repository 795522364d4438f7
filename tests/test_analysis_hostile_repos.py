"""Analysis on repositories that fight back: FIFOs, devices, odd file names, huge or generated files.

Every scenario comes from a review that hung, flooded or broke the analysis loops; each test runs
the real job on a real repository and bounds it with `anyio.fail_after`, so a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from pathlib import Path

import anyio
import pytest

from git_helpers import add_worktree, commit, driven_coordinator, git, init_repo
from huddle.analysis import cochange, deps, merges
from huddle.analysis.files import read_source, stat_source
from huddle.analysis.runner import MAX_DEFINITIONS, STUCK_AFTER_S, WRITE_BATCH, JobState, ParsedFile, symbol_writes
from huddle.analysis.symbols import Definition
from huddle.analysis.worker import in_daemon_thread
from huddle.cli.main import main
from huddle.errors import InvalidInput

TEN_LINES = "".join(f"line {n}\n" for n in range(1, 11))
ODD_NAMES = ["dir one/naïve file.txt", 'we"ird\tname.txt', "new\nline.txt"]


def hostile_links(repo: Path, outside: Path) -> None:
    """evil.py → a FIFO, zero.py → /dev/zero, far.py → a file outside, near.py → a file inside."""
    outside.mkdir(exist_ok=True)
    os.mkfifo(outside / "pipe")
    (outside / "secret.py").write_text("def secret():\n    return 1\n")
    os.symlink(outside / "pipe", repo / "evil.py")
    os.symlink("/dev/zero", repo / "zero.py")
    os.symlink(outside / "secret.py", repo / "far.py")
    os.symlink("a.py", repo / "near.py")


def test_safe_read_refuses_fifos_devices_escapes_and_oversized_files_without_blocking(
    tmp_path: Path, repo: Path
) -> None:
    init_repo(repo)
    (repo / "a.py").write_text("def a():\n    return 1\n")
    (repo / "big.py").write_bytes(b"x = 1\n" * 100)
    hostile_links(repo, tmp_path / "outside")
    assert read_source(str(repo), "evil.py", 1000) is None
    assert read_source(str(repo), "zero.py", 1000) is None
    assert read_source(str(repo), "far.py", 1000) is None
    assert read_source(str(repo), "../outside/secret.py", 1000) is None
    assert read_source(str(repo), "big.py", 100) is None
    assert read_source(str(repo), "near.py", 1000) == (repo / "a.py").read_bytes()
    assert stat_source(str(repo), "evil.py") is None
    assert stat_source(str(repo), "zero.py") is None
    assert stat_source(str(repo), "near.py") is not None


async def test_symbol_pass_completes_over_symlinks_to_a_fifo_and_dev_zero_and_indexes_the_rest(
    tmp_path: Path, repo: Path
) -> None:
    init_repo(repo)
    commit(repo, {"a.py": "def a():\n    return 1\n"})
    hostile_links(repo, tmp_path / "outside")
    async with driven_coordinator(tmp_path, repo) as c:
        await c.agents.register("alice")
        for path in ("evil.py", "zero.py", "far.py", "near.py", "a.py"):
            await c.files.log_edit("alice", path, ranges=[[1, 1]])
        with anyio.fail_after(30):
            await c.analysis.refresh_symbols()
        names = await c.store.read(
            lambda u: {(r["path"], r["name"]) for r in u.tx.all("SELECT path, name FROM symbol_defs")}
        )
    assert ("a.py", "a") in names
    assert not {p for p, _ in names} & {"evil.py", "zero.py", "far.py"}  # the link out is not read either


def test_deps_scan_completes_over_a_tracked_symlink_to_a_fifo(tmp_path: Path, repo: Path) -> None:
    init_repo(repo)
    (repo / "lib").mkdir()
    (repo / "lib" / "util.py").write_text("def f():\n    pass\n")
    (repo / "app.py").write_text("from lib import util\n")
    hostile_links(repo, tmp_path / "outside")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    result = deps.scan(str(repo))  # before: blocked forever opening evil.py
    assert result["(root)"]["depends_on"] == ["lib"]


async def test_a_job_stuck_in_its_thread_does_not_keep_its_task_from_being_cancelled() -> None:
    started, release = threading.Event(), threading.Event()

    def stuck() -> bool:
        started.set()
        return release.wait()

    task = asyncio.create_task(in_daemon_thread("huddle-test-stuck", stuck))
    with anyio.fail_after(10):
        await asyncio.to_thread(started.wait)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
    thread = next(t for t in threading.enumerate() if t.name == "huddle-test-stuck")
    assert thread.daemon  # the interpreter exits without joining it
    release.set()


def test_readiness_reports_a_job_running_far_longer_than_expected() -> None:
    job = JobState(running_since=1000.0)
    fresh = job.to_dict(now=1001.0)
    assert (fresh["stuck"], fresh["running_s"], fresh["error"]) == (False, 1.0, None)
    late = job.to_dict(now=1000.0 + STUCK_AFTER_S + 5)
    assert late["stuck"] is True
    assert "far longer than expected" in late["error"]
    assert JobState().to_dict(now=5.0)["running_s"] is None


def test_symbol_writes_are_batched_and_each_big_file_is_recorded_after_its_definitions() -> None:
    huge = ParsedFile("gen.py", 1, 1, "python", [Definition(f"f{i}", "function", i, i) for i in range(4500)])
    small = [ParsedFile(f"s{i}.py", 1, 1, "python", [Definition("g", "function", 1, 2)]) for i in range(800)]
    steps = symbol_writes([*small, huge], [f"old{i}.py" for i in range(3000)])
    assert all(0 < step.rows <= WRITE_BATCH for step in steps)
    assert sum(len(s.definitions) for s in steps) == 4500 + 800
    huge_steps = [i for i, s in enumerate(steps) if any(d[0] == "gen.py" for d in s.definitions)]
    recorded = next(i for i, s in enumerate(steps) if huge in s.indexed)
    forgotten = next(i for i, s in enumerate(steps) if "gen.py" in s.forget)
    assert len(huge_steps) == 3 and forgotten < min(huge_steps) and recorded > max(huge_steps)


async def test_generated_files_are_capped_skipped_when_minified_and_not_parsed_when_too_big(
    tmp_path: Path, repo: Path
) -> None:
    init_repo(repo)
    many = "".join(f"def f{i}():\n    pass\n" for i in range(MAX_DEFINITIONS + 500))
    minified = "function a(){return 1}" + ";function b(){return 2}" * 200 + "\n"
    huge = "def big():\n    pass\n" + ("# " + "filler " * 250 + "\n") * 300  # over 512 KB, short lines
    commit(repo, {"many.py": many, "min.js": minified, "huge.py": huge, "ok.py": "def ok():\n    pass\n"})
    async with driven_coordinator(tmp_path, repo) as c:
        await c.agents.register("alice")
        await c.intents.announce("alice", "generated", ["many.py", "min.js", "huge.py", "ok.py"])
        with anyio.fail_after(60):
            await c.analysis.refresh_symbols()
        counts = await c.store.read(
            lambda u: {
                r["path"]: r["n"]
                for r in u.tx.all(
                    "SELECT f.path, count(d.name) AS n FROM symbol_files f LEFT JOIN symbol_defs d"
                    " ON d.project = f.project AND d.path = f.path GROUP BY f.path"
                )
            }
        )
    assert counts == {"many.py": MAX_DEFINITIONS, "min.js": 0, "huge.py": 0, "ok.py": 1}


def write_bytes_name(repo: Path, name: bytes, content: bytes) -> None:
    with open(os.path.join(bytes(repo), name), "wb") as handle:
        handle.write(content)


async def test_a_file_name_that_is_not_utf8_is_skipped_by_deps_scan_the_derived_map_and_cochange(
    tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init_repo(repo)
    commit(repo, {"a/m.py": "from b import x\n", "b/x.py": "x = 1\n"})
    for n in range(3):
        write_bytes_name(repo, b"a/caf\xe9.py", f"y = {n}\n".encode())
        (repo / "b" / "x.py").write_text(f"x = {n}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"round {n}")
    assert main(["deps", "scan", "--repo", str(repo), "--json"]) == 0
    modules = json.loads(capsys.readouterr().out)["modules"]
    assert modules["a"]["depends_on"] == ["b"]
    assert modules["a"]["paths"] == ["a/", "a/m.py"]
    history = cochange.read_history(str(repo), max_commits=100, days=30, max_files=50)
    assert history[:3] == [["b/x.py"], ["b/x.py"], ["b/x.py"]]
    async with driven_coordinator(tmp_path, repo) as c:
        result = await c.analysis.refresh_dependency_map()
        assert result["source"] == "scan"
        assert (await c.analysis.refresh_cochange())["commits_indexed"] == 4


async def test_every_file_of_a_module_with_more_than_200_files_belongs_to_it(tmp_path: Path, repo: Path) -> None:
    init_repo(repo)
    files = {f"app/m{i:03}.py": f"x = {i}\n" for i in range(250)}
    commit(repo, files | {"app/z_last.py": "from lib import util\n", "lib/util.py": "def f():\n    pass\n"})
    async with driven_coordinator(tmp_path, repo) as c:
        await c.depmap.set_map(deps.scan(str(repo)))  # what `huddle deps scan --write` sends
        radius = await c.depmap.blast_radius(path="lib/util.py")
        last = await c.depmap.blast_radius(path="app/z_last.py")
    assert [a["module"] for a in radius["affected"]] == ["app"]
    assert last["modules"] == ["app"]  # before: the 251st file belonged to no module


async def test_a_git_operation_with_no_branch_and_no_files_is_refused_naming_branch(tmp_path: Path, repo: Path) -> None:
    init_repo(repo)
    commit(repo, {"a.py": "x = 1\n"})
    async with driven_coordinator(tmp_path, repo) as c:
        await c.agents.register("alice", branch="feat")
        await c.agents.register("bob")
        await c.files.log_edit("alice", "a.py")
        with pytest.raises(InvalidInput, match="needs a branch") as caught:
            await c.intents.announce("bob", "rebase", [], kind="git_rebase")
        assert caught.value.field == "branch"
        with pytest.raises(InvalidInput, match="needs a branch") as caught:
            await c.intents.check_conflicts("bob", [], kind="git_rebase")
        assert caught.value.field == "branch"
        assert await c.store.read(lambda u: u.tx.all("SELECT id FROM intents")) == []
        accepted = await c.intents.announce("bob", "rebase", [], kind="git_rebase", branch="feat")
        assert [i["agent_id"] for i in accepted["impacts"]] == ["alice"]


@pytest.mark.skipif(not merges.merge_tree_supported(), reason="needs git >= 2.38 for merge-tree --write-tree")
async def test_conflicts_in_files_with_tabs_quotes_and_newlines_in_their_names_are_predicted(
    tmp_path: Path, repo: Path
) -> None:
    init_repo(repo)
    commit(repo, {n: TEN_LINES for n in ODD_NAMES} | {"sub/x.txt": "x\n"}, "initial")
    wa = add_worktree(repo, tmp_path / "wa", "a")
    wb = add_worktree(repo, tmp_path / "wb", "b")
    for worktree, who in ((wa, "ALICE"), (wb, "BOB")):
        for n in ODD_NAMES:
            (worktree / n).write_text(TEN_LINES.replace("line 2\n", f"{who} 2\n"))
    async with driven_coordinator(tmp_path, repo) as c:
        await c.agents.register("alice", worktree=str(wa))
        await c.agents.register("bob", worktree=str(wb / "sub"))  # a session started in a subdirectory
        with anyio.fail_after(60):
            result = await c.analysis.check_merges()
        rows = await c.store.read(lambda u: u.tx.all("SELECT files, hunks FROM merge_conflicts"))
    assert result["conflicts"] == 1
    assert json.loads(rows[0]["files"]) == sorted(ODD_NAMES)
    assert sorted({h["file"] for h in json.loads(rows[0]["hunks"])}) == sorted(ODD_NAMES)


def test_co_change_pairs_files_with_tabs_and_quotes_in_their_names(repo: Path) -> None:
    init_repo(repo)
    for n in range(3):
        commit(repo, {name: f"{n}\n" for name in ODD_NAMES}, f"round {n}")
    history = cochange.read_history(str(repo), max_commits=100, days=30, max_files=50)
    assert history == [sorted(ODD_NAMES)] * 3


@pytest.mark.skipif(not merges.merge_tree_supported(), reason="needs git >= 2.38 for merge-tree --write-tree")
def test_worktree_snapshot_leaves_out_untracked_files_over_the_size_limit(tmp_path: Path, repo: Path) -> None:
    init_repo(repo)
    commit(repo, {"notes.txt": TEN_LINES, ".gitignore": "*.log\n"})
    (repo / "notes.txt").write_text("changed\n")
    (repo / "small.txt").write_text("small\n")
    (repo / "ignored.log").write_text("log\n")
    (repo / "dump.bin").write_bytes(b"\0" * (merges.MAX_UNTRACKED_BYTES + 1))
    snap = merges.snapshot(str(repo))
    listed = set(git(repo, "ls-tree", "-r", "--name-only", snap).splitlines())
    assert listed == {".gitignore", "notes.txt", "small.txt"}
    assert git(repo, "show", f"{snap}:notes.txt") == "changed"
    assert git(repo, "status", "--porcelain") != ""  # the user's index was not touched
    assert "small.txt" not in git(repo, "diff", "--cached", "--name-only")
