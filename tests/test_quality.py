"""Lint, types, benchmarks and docs are part of the suite, so one command checks everything."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from huddle.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_ruff_finds_no_lint_errors() -> None:
    result = run(sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_unchanged() -> None:
    result = run(sys.executable, "-m", "ruff", "format", "--check", "src", "tests", "benchmarks", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_on_the_package() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
@pytest.mark.timeout(400)  # a quick run still starts real servers (scale.py: six configurations)
def test_each_benchmark_runs_in_quick_mode_and_prints_json(script: Path) -> None:
    result = run(sys.executable, str(script), "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["quick"] is True
    assert report["benchmark"] == script.stem


def test_every_setting_is_documented_in_the_readme_with_its_flag_and_env_var() -> None:
    readme = (ROOT / "README.md").read_text()
    for f in fields(Settings):
        row = f"| `{f.name}` | `--{f.name.replace('_', '-')}` | `{env_name(f.name)}` |"
        assert row in readme, f"README settings table lacks {f.name}"


def test_every_cli_command_is_documented_in_the_readme() -> None:
    import argparse

    from huddle.cli.main import build_parser

    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        actions = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        names = [f"huddle {name} {child}" for a in actions for child in a.choices] or [f"huddle {name}"]
        assert any(n in readme for n in names), f"README does not mention any of {names}"
