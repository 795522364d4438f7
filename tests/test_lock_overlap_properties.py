"""The indexed overlap lookup finds exactly what brute force finds, for any names (issue 7, defect 2).

Names are drawn from a small alphabet that includes '/', the astral plane and U+10FFFF itself,
so prefixes, sentinels and UTF-8 byte order are all exercised. And the aliases the lookup must
see through: a symlinked directory, a name leased as a file that became a directory.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huddle.domain.locks import LockPattern, PatternError, compile_pattern, overlaps
from huddle.errors import InvalidInput
from huddle.service.coordinator import Coordinator
from huddle.service.lock_store import overlapping, prefix_upper_bound
from huddle.storage.base import Unit
from huddle.storage.sqlite import SqliteStore

MAX = "\U0010ffff"
ALPHABET = ["a", "b", "/", ".", "é", "\uffff", "\U00010000", "\U0001f600", MAX, "*", "?"]
segment = st.text(st.sampled_from([c for c in ALPHABET if c != "/"]), min_size=1, max_size=3)


@st.composite
def lock_paths(draw: st.DrawFn) -> str:
    segments = draw(st.lists(segment, min_size=1, max_size=3))
    return "/".join(segments) + ("/" if draw(st.booleans()) else "")


def compiled(path: str) -> LockPattern | None:
    try:
        return compile_pattern(path)
    except PatternError:
        return None


def insert(unit: Unit, agent: str, pattern: LockPattern) -> None:
    unit.tx.execute(
        "INSERT INTO locks (project, agent_id, path, literal, kind, anchor, mode, token, ttl_s, acquired_at,"
        " renewed_at, expires_at) VALUES (?, ?, ?, 0, ?, ?, 'exclusive', 1, 60, 0, 0, 1e12)",
        (unit.project, agent, pattern.path, pattern.kind, pattern.anchor),
    )


@pytest.fixture(scope="module")
def store_path() -> Path:
    return Path(tempfile.mkdtemp()) / "huddle.db"


projects = itertools.count()


@st.composite
def related_path(draw: st.DrawFn, held: list[str]) -> str:
    """A path near one already held: a directory above it, or it with a segment changed."""
    base = draw(st.sampled_from(held)).rstrip("/").split("/")
    if draw(st.integers(0, 3)) == 0:
        # A name below a held one, which may itself be a file lease on the bare name.
        return "/".join([*base, draw(segment)]) + draw(st.sampled_from(["", "/"]))
    cut = draw(st.integers(1, len(base)))
    head = base[:cut]
    if draw(st.booleans()):
        return "/".join(head) + "/"
    return "/".join([*head[:-1], draw(segment)]) + draw(st.sampled_from(["", "/"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=st.lists(lock_paths(), min_size=1, max_size=12, unique=True), data=st.data())
def test_the_indexed_lookup_agrees_with_brute_force_for_any_names(
    store_path: Path, held: list[str], data: st.DataObject
) -> None:
    requested = data.draw(st.one_of(lock_paths(), related_path(held)))
    request = compiled(requested)
    patterns = [p for p in map(compiled, held) if p is not None]
    if request is None or not patterns:
        return

    def check(unit: Unit) -> None:
        for index, pattern in enumerate(patterns):
            insert(unit, f"agent{index}", pattern)
        indexed = sorted(row["path"] for row in overlapping(unit, "locks", request))
        brute = sorted(p.path for p in patterns if overlaps(p, request))
        assert indexed == brute

    async def run() -> None:
        store = SqliteStore(store_path, f"p{next(projects)}")
        await store.open()
        try:
            await store.write(check)
        finally:
            await store.close()

    anyio.run(run)


@given(prefix=st.text(st.sampled_from(ALPHABET), min_size=1, max_size=4), rest=st.text(st.sampled_from(ALPHABET)))
def test_the_upper_bound_is_above_every_extension_of_a_prefix_in_utf8_order(prefix: str, rest: str) -> None:
    bound = prefix_upper_bound(prefix)
    name = (prefix + rest).encode()
    if bound is None:
        assert prefix.strip(MAX) == ""
    else:
        assert prefix.encode() <= name < bound.encode()


async def register(coordinator: Coordinator, *names: str) -> None:
    for name in names:
        await coordinator.agents.register(name)


async def test_a_name_past_the_old_sentinel_does_not_escape_its_directory(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", f"src/{MAX}a.py"))["granted"]
    refused = await coordinator.locks.acquire("bob", "src/")
    assert not refused["granted"] and refused["holders"][0]["agent_id"] == "alice"


async def test_a_symlinked_directory_is_the_same_files_as_its_target(coordinator: Coordinator, repo: Path) -> None:
    (repo / "lib").mkdir()
    (repo / "lib" / "x.py").write_text("x = 1\n")
    os.symlink("lib", repo / "liblink")
    await register(coordinator, "alice", "bob")
    held = await coordinator.locks.acquire("alice", "lib/x.py")
    assert held["granted"]
    through_link = await coordinator.locks.acquire("bob", "liblink/x.py")
    assert not through_link["granted"] and through_link["path"] == "lib/x.py"
    assert not (await coordinator.locks.acquire("bob", "liblink/"))["granted"]
    # A file that does not exist yet resolves through the link too.
    assert (await coordinator.locks.acquire("bob", "liblink/new.py"))["path"] == "lib/new.py"


async def test_a_name_leased_as_a_file_that_became_a_directory_still_excludes_others(
    coordinator: Coordinator, repo: Path
) -> None:
    (repo / "src").mkdir()
    (repo / "src" / "util").write_text("a file, for now\n")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "src/util"))["granted"]
    (repo / "src" / "util").unlink()
    (repo / "src" / "util").mkdir()
    (repo / "src" / "util" / "x.py").write_text("")
    for path in ("src/util/x.py", "src/util/", "src/*/x.py"):
        refused = await coordinator.locks.acquire("bob", path)
        assert not refused["granted"], path
        assert refused["holders"][0]["path"] == "src/util/"
    # The holder still releases it by the name it used.
    assert (await coordinator.locks.release("alice", "src/util"))["released"]
    assert (await coordinator.locks.acquire("bob", "src/util/x.py"))["granted"]


plain_segment = st.text(st.sampled_from(["a", "b", ".", "é", MAX]), min_size=1, max_size=3)


@given(
    name=st.lists(plain_segment, min_size=1, max_size=3),
    below=st.lists(plain_segment, min_size=1, max_size=2),
    tail=st.sampled_from(["", "/"]),
)
def test_a_file_name_overlaps_every_claim_below_it_whatever_is_on_disk(
    name: list[str], below: list[str], tail: str
) -> None:
    """A name cannot be a file and a parent at once, so `p` meets `p/`, `p/x` and `p/x/`."""
    held = compile_pattern("/".join(name))
    inner = compile_pattern("/".join(name) + "/" + "/".join(below) + tail)
    assert overlaps(held, inner) and overlaps(inner, held)
    assert overlaps(held, compile_pattern("/".join(name) + "/"))
    # A glob below the name meets it too, and a sibling whose name merely starts the same does not.
    assert overlaps(held, compile_pattern("/".join(name) + "/*"))
    assert not overlaps(held, compile_pattern("/".join(name) + "x/" + "/".join(below)))


async def test_a_lease_on_a_name_that_does_not_exist_yet_excludes_files_below_it(coordinator: Coordinator) -> None:
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "newdir"))["granted"]
    for path in ("newdir/x.py", "newdir/", "newdir/*.py"):
        refused = await coordinator.locks.acquire("bob", path)
        assert not refused["granted"] and refused["holders"][0]["agent_id"] == "alice", path


async def test_a_file_and_the_same_name_with_a_trailing_slash_are_one_claim(
    coordinator: Coordinator, repo: Path
) -> None:
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("a = 1\n")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "src/a.py"))["granted"]
    refused = await coordinator.locks.acquire("bob", "src/a.py/")
    assert not refused["granted"] and refused["holders"][0]["path"] == "src/a.py"


async def test_a_link_to_the_repository_root_is_refused_as_the_whole_repository(
    coordinator: Coordinator, repo: Path
) -> None:
    os.symlink(".", repo / "rootlink")
    os.symlink("..", repo / "uplink")
    await register(coordinator, "alice")
    for path in ("rootlink", "rootlink/", "uplink/"):
        with pytest.raises(InvalidInput, match="whole repository") as caught:
            await coordinator.locks.acquire("alice", path)
        assert caught.value.field == "path"
    # Below the root, the link resolves to the real name.
    (repo / "y.py").write_text("")
    assert (await coordinator.locks.acquire("alice", "rootlink/y.py"))["path"] == "y.py"


async def test_a_dot_dot_after_a_symlink_is_refused_not_collapsed_by_spelling(
    coordinator: Coordinator, repo: Path
) -> None:
    (repo / "deep" / "sub").mkdir(parents=True)
    (repo / "deep" / "z.py").write_text("")
    os.symlink("deep/sub", repo / "sublink")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "deep/z.py"))["granted"]
    for path in ("sublink/../z.py", f"{repo}/sublink/../z.py"):
        with pytest.raises(InvalidInput, match="symlink 'sublink'"):
            await coordinator.locks.acquire("bob", path)
    # A `..` after a real directory is still plain spelling.
    refused = await coordinator.locks.acquire("bob", "deep/sub/../z.py")
    assert not refused["granted"] and refused["path"] == "deep/z.py"


async def test_a_glob_that_could_match_through_a_symlinked_directory_is_refused(
    coordinator: Coordinator, repo: Path
) -> None:
    (repo / "lib").mkdir()
    (repo / "lib" / "x.py").write_text("")
    os.symlink("lib", repo / "liblink")
    await register(coordinator, "alice", "bob")
    assert (await coordinator.locks.acquire("alice", "lib/x.py"))["granted"]
    for path in ("*link/x.py", "lib*/x.py", "**/x.py", "*/"):
        with pytest.raises(InvalidInput, match="symlink 'liblink'"):
            await coordinator.locks.acquire("bob", path)
    # A glob that cannot reach the link is fine, and still meets the real file.
    refused = await coordinator.locks.acquire("bob", "lib/*.py")
    assert not refused["granted"] and refused["holders"][0]["agent_id"] == "alice"
