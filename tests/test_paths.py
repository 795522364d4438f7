"""Path normalisation: every shape an agent sends becomes one repo-relative POSIX path."""

from __future__ import annotations

import pytest

from huddle.domain.paths import module_prefixes, modules_related, normalize_path, normalize_paths
from huddle.errors import InvalidInput

ROOT = "/home/dev/repo"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("src/a.py", "src/a.py"),
        ("./src/a.py", "src/a.py"),
        ("src//b/../a.py", "src/a.py"),
        ("/home/dev/repo/src/a.py", "src/a.py"),
        ("src\\win\\a.py", "src/win/a.py"),
        ("src/auth/", "src/auth/"),
        ("  src/a.py ", "src/a.py"),
    ],
)
def test_paths_in_any_shape_normalise_to_repo_relative_posix(raw: str, expected: str) -> None:
    assert normalize_path(raw, ROOT) == expected


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ("../etc/passwd", "leaves the repository"),
        ("src/../../x", "leaves the repository"),
        ("/etc/passwd", "outside the repository"),
        ("/home/dev/repository-other/a.py", "outside the repository"),
        ("src/a\x00.py", "NUL byte"),
        ("", "empty"),
        (".", "repository root"),
        ("x" * 2000, "longer than"),
    ],
)
def test_paths_outside_the_repo_or_malformed_are_refused_with_a_hint(raw: str, hint: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalize_path(raw, ROOT, field="target_files[0]")
    assert hint in caught.value.message
    assert caught.value.field == "target_files[0]"


def test_a_path_list_is_deduplicated_in_order_and_bounded() -> None:
    assert normalize_paths(["b.py", "./a.py", "b.py"], ROOT, field="f") == ("b.py", "a.py")
    with pytest.raises(InvalidInput, match="at most"):
        normalize_paths([f"f{i}.py" for i in range(501)], ROOT, field="f")
    with pytest.raises(InvalidInput, match="list of paths"):
        normalize_paths("a.py", ROOT, field="f")  # type: ignore[arg-type]


def test_modules_relate_only_at_segment_boundaries() -> None:
    assert modules_related("src/auth", "src/auth")
    assert modules_related("src", "src/auth")
    assert modules_related("api.users", "api")
    assert not modules_related("src/auth", "src/authz")
    assert module_prefixes("a/b.c") == ["a", "a/b", "a/b.c"]
