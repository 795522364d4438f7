"""One name per file through symlinks (service/repo_aliases.py), on real symlinks under tmp_path:
links out of the repository, symlink loops, and directory leases holding links that lead out of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from huddle.errors import InvalidInput
from huddle.service import repo_aliases
from huddle.service.coordinator import Coordinator
from huddle.service.guard import GuardService
from huddle.service.hooks import ClaudeHookService
from huddle.service.repo_aliases import RepoAliases


async def register(coordinator: Coordinator, *names: str) -> None:
    for name in names:
        await coordinator.agents.register(name)


@pytest.fixture
def outside(repo: Path) -> Path:
    """A directory beside the repository, with a file, and a subdirectory with a file."""
    path = repo.parent / "outside"
    (path / "sub").mkdir(parents=True)
    (path / "f.py").write_text("f = 1\n")
    (path / "sub" / "g.py").write_text("g = 1\n")
    return path


# -- links out of the repository -----------------------------------------------------------------


async def test_two_links_to_one_directory_outside_the_repository_give_its_files_one_name(
    coordinator: Coordinator, repo: Path, outside: Path
) -> None:
    os.symlink(outside, repo / "a")
    os.symlink(outside, repo / "b")
    await register(coordinator, "alice", "bob")
    held = await coordinator.locks.acquire("alice", "a/")
    assert held["granted"] and held["path"] == "../outside/"
    for path in ("b/f.py", "b/", "b", "a/f.py", "b/sub/g.py", "b/new.py"):
        refused = await coordinator.locks.acquire("bob", path)
        assert not refused["granted"], path
        assert refused["holders"][0]["agent_id"] == "alice" and refused["holders"][0]["path"] == "../outside/"


async def test_a_link_to_a_directory_inside_another_links_outside_target_meets_its_leases(
    coordinator: Coordinator, repo: Path, outside: Path
) -> None:
    os.symlink(outside, repo / "a")
    os.symlink(outside / "sub", repo / "c")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "c/g.py"))["path"] == "../outside/sub/g.py"
    for path in ("a/sub/g.py", "a/sub/", "a/"):
        refused = await coordinator.locks.acquire("bob", path)
        assert not refused["granted"] and refused["holders"][0]["agent_id"] == "alice", path
    # A file beside it is another file.
    assert (await coordinator.locks.acquire("bob", "a/f.py"))["granted"]


async def test_a_name_outside_the_repository_is_accepted_back_only_where_a_link_leads(
    coordinator: Coordinator, repo: Path, outside: Path
) -> None:
    os.symlink(outside / "sub", repo / "c")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "c/g.py"))["path"] == "../outside/sub/g.py"
    # The answer, and the absolute real path, name the same file while the link is there.
    for name in ("../outside/sub/g.py", str(outside / "sub" / "g.py"), "../outside/sub/"):
        refused = await coordinator.locks.acquire("bob", name)
        assert not refused["granted"] and refused["holders"][0]["agent_id"] == "alice", name
    # Beside the link's target, nothing in the repository leads: refused as before.
    for name in ("../outside/f.py", str(outside / "f.py"), "../outside/"):
        with pytest.raises(InvalidInput, match="repository") as caught:
            await coordinator.locks.acquire("bob", name)
        assert caught.value.field == "path"
    assert (await coordinator.locks.release("alice", "../outside/sub/g.py"))["released"]


async def test_intents_through_two_links_to_one_outside_file_collide(
    coordinator: Coordinator, repo: Path, outside: Path
) -> None:
    os.symlink(outside, repo / "a")
    os.symlink(outside, repo / "b")
    await register(coordinator, "alice", "bob")
    await coordinator.intents.announce("alice", "edit f", ["a/f.py"])
    check = await coordinator.intents.check_conflicts("bob", ["b/f.py"])
    assert [i["agent_id"] for i in check["impacts"]] == ["alice"]


# -- symlink loops ------------------------------------------------------------------------------


def two_link_loop(repo: Path) -> None:
    os.symlink("b", repo / "a")
    os.symlink("a", repo / "b")


def self_loop(repo: Path) -> None:
    os.symlink("a", repo / "a")


def parent_loop(repo: Path) -> None:
    os.symlink("a/..", repo / "a")


def long_chain(repo: Path) -> None:
    """More links in a row than the kernel follows (40 on Linux): no loop, still unreachable."""
    (repo / "real").mkdir()
    os.symlink("real", repo / "l0")
    for i in range(1, 60):
        os.symlink(f"l{i - 1}", repo / f"l{i}")
    os.symlink("l59", repo / "a")


LOOPS = {"a-b-a": two_link_loop, "a-a": self_loop, "a-a/..": parent_loop, "60-link-chain": long_chain}


@pytest.mark.parametrize("make", LOOPS.values(), ids=list(LOOPS))
async def test_a_name_through_a_symlink_loop_is_refused_naming_the_field_and_the_link(
    coordinator: Coordinator, repo: Path, make: object
) -> None:
    assert callable(make)
    make(repo)
    await register(coordinator, "alice")
    for path in ("a/f.py", "a", "a/", "a/*.py", "a/deeper/x.py"):
        with pytest.raises(InvalidInput, match="symlink loop at 'a'") as caught:
            await coordinator.locks.acquire("alice", path)
        assert caught.value.field == "path" and "fix or remove the link 'a'" in caught.value.message
    with pytest.raises(InvalidInput, match="symlink loop") as caught:
        await coordinator.intents.announce("alice", "x", ["ok.py", "a/f.py"])
    assert caught.value.field == "target_files[1]"
    assert (await coordinator.locks.list_locks())["locks"] == []


async def test_a_malformed_entry_of_a_list_is_refused_before_any_entry_is_resolved(
    coordinator: Coordinator, repo: Path
) -> None:
    """Each entry is normalised (and a malformed one refused) before any is looked up on disk, so
    the refusal names the malformed entry even when an earlier one runs into a symlink loop."""
    self_loop(repo)
    await register(coordinator, "alice")
    with pytest.raises(InvalidInput, match="leaves the repository") as caught:
        await coordinator.intents.announce("alice", "x", ["a/f.py", "ok.py", "../x.py"])
    assert caught.value.field == "target_files[2]"


async def test_the_commit_guard_passes_over_a_staged_symlink_that_loops_and_checks_the_rest(
    coordinator: Coordinator, repo: Path
) -> None:
    self_loop(repo)
    (repo / "x.py").write_text("")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "x.py"))["granted"]
    guard = GuardService(coordinator, ClaudeHookService(coordinator))
    verdict = await guard.pre_commit(["a", "x.py"], agent_id="bob")
    assert not verdict["ok"] and [b["path"] for b in verdict["blocked"]] == ["x.py"]


async def test_a_loop_below_a_directory_neither_hangs_its_walk_nor_stops_its_lease(
    coordinator: Coordinator, repo: Path
) -> None:
    (repo / "src" / "deep").mkdir(parents=True)
    os.symlink("b", repo / "src" / "a")
    os.symlink("a", repo / "src" / "b")
    os.symlink("..", repo / "src" / "deep" / "up")  # src/deep/up/deep/up/… is src/ again, inside src/
    await register(coordinator, "alice")
    assert (await coordinator.locks.acquire("alice", "src/"))["granted"]


# -- a directory lease and the links below it --------------------------------------------------


@pytest.fixture
def src_linking_to_lib(repo: Path) -> Path:
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("")
    (repo / "lib").mkdir()
    (repo / "lib" / "x.py").write_text("")
    os.symlink("../lib", repo / "src" / "link")
    return repo


async def test_a_directory_holding_a_link_out_of_it_is_refused_so_its_target_cannot_be_leased_twice(
    coordinator: Coordinator, src_linking_to_lib: Path
) -> None:
    await register(coordinator, "alice", "bob")
    for path in ("src/", "src"):
        with pytest.raises(InvalidInput) as caught:
            await coordinator.locks.acquire("alice", path)
        message = caught.value.message
        assert caught.value.field == "path"
        assert "symlink 'src/link'" in message and "leads to 'lib'" in message and "remove the link" in message
    assert (await coordinator.locks.acquire("bob", "lib/x.py"))["granted"]
    # What alice can lease instead: the real names beside the link, and the target by its own name.
    assert (await coordinator.locks.acquire("alice", "src/app.py"))["granted"]
    refused = await coordinator.locks.acquire("alice", "src/link/x.py")
    assert not refused["granted"] and refused["path"] == "lib/x.py" and refused["holders"][0]["agent_id"] == "bob"


@pytest.mark.parametrize(
    ("link", "target", "shown"),
    [
        ("README.md", "../README.md", "'README.md'"),  # a file beside the directory
        ("ext", "OUTSIDE", "'../outside'"),  # out of the repository
        ("up", "..", "the repository root"),  # the root, which holds the directory itself
    ],
)
async def test_every_kind_of_link_out_of_a_leased_directory_is_named_in_the_refusal(
    coordinator: Coordinator, repo: Path, outside: Path, link: str, target: str, shown: str
) -> None:
    (repo / "docs").mkdir()
    (repo / "README.md").write_text("")
    os.symlink(str(outside) if target == "OUTSIDE" else target, repo / "docs" / link)
    await register(coordinator, "alice")
    with pytest.raises(InvalidInput, match=f"symlink 'docs/{link}' below docs/ leads to {shown}"):
        await coordinator.locks.acquire("alice", "docs/")


async def test_links_that_stay_inside_the_directory_do_not_stop_its_lease(coordinator: Coordinator, repo: Path) -> None:
    (repo / "src" / "a").mkdir(parents=True)
    (repo / "src" / "b").mkdir()
    (repo / "src" / "b" / "x.py").write_text("")
    os.symlink("../b", repo / "src" / "a" / "blink")
    os.symlink("b/x.py", repo / "src" / "xlink.py")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "src/"))["granted"]
    refused = await coordinator.locks.acquire("bob", "src/a/blink/x.py")
    assert not refused["granted"] and refused["path"] == "src/b/x.py"


async def test_a_directory_leased_before_a_link_appeared_in_it_can_still_be_checked_and_released(
    coordinator: Coordinator, repo: Path
) -> None:
    (repo / "src").mkdir()
    (repo / "lib").mkdir()
    await register(coordinator, "alice")
    assert (await coordinator.locks.acquire("alice", "src/"))["granted"]
    os.symlink("../lib", repo / "src" / "link")
    assert (await coordinator.locks.check_lock("src/"))["exclusive_holder"] == "alice"
    assert (await coordinator.locks.renew("alice", "src/"))["renewed"]
    assert (await coordinator.locks.release("alice", "src/"))["released"]


async def test_a_directory_too_large_to_check_for_links_is_refused_with_what_to_do(
    coordinator: Coordinator, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo_aliases, "MAX_LINK_SCAN", 3)
    (repo / "big" / "auth").mkdir(parents=True)
    for i in range(5):
        (repo / "big" / f"f{i}.py").write_text("")
    await register(coordinator, "alice")
    with pytest.raises(InvalidInput, match="more than 3 entries") as caught:
        await coordinator.locks.acquire("alice", "big/")
    assert "deeper directory" in caught.value.message
    assert (await coordinator.locks.acquire("alice", "big/auth/"))["granted"]


def test_links_leaving_lists_each_link_out_with_its_real_target(repo: Path, outside: Path) -> None:
    (repo / "src" / "in").mkdir(parents=True)
    (repo / "lib").mkdir()
    os.symlink("../lib", repo / "src" / "lib")
    os.symlink(outside / "sub", repo / "src" / "in" / "ext")
    os.symlink("../lib", repo / "src" / "in" / "stays-out")
    os.symlink("..", repo / "src" / "in" / "parent")  # src/: inside
    os.symlink("missing", repo / "src" / "dangling")  # src/missing: inside, though absent
    os.symlink("loop", repo / "src" / "loop")
    leaving = RepoAliases(str(repo)).links_leaving("src/")
    assert leaving is not None
    assert sorted(leaving) == [
        ("src/in/ext", "../outside/sub"),
        ("src/in/stays-out", "lib"),
        ("src/lib", "lib"),
    ]


# A name never asked before is resolved afresh, even below a directory resolved a moment ago: caching
# per directory once let a directory replaced by a link (or a link appearing) alias a file for seconds.


def test_a_new_name_below_a_directory_that_just_became_a_link_gets_its_real_name(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "other").mkdir()
    aliases = RepoAliases(str(tmp_path))
    assert aliases.canonical("lib/a.py") == "lib/a.py"
    (tmp_path / "lib").rmdir()
    os.symlink("other", tmp_path / "lib")
    assert aliases.canonical("lib/b.py") == "other/b.py"


def test_a_new_name_below_a_link_that_just_appeared_gets_its_real_name(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "other").mkdir()
    aliases = RepoAliases(str(tmp_path))
    assert aliases.canonical("lib/gen/a.py") == "lib/gen/a.py"  # lib/gen does not exist yet
    os.symlink("../other", tmp_path / "lib" / "gen")
    assert aliases.canonical("lib/gen/b.py") == "other/b.py"


def test_a_path_of_five_hundred_segments_within_the_length_limit_resolves(tmp_path: Path) -> None:
    name = "a/" * 511 + "x"  # 1,023 characters: the longest path accepted
    assert RepoAliases(str(tmp_path)).canonical(name) == name
