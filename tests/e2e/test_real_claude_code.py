"""The real Claude Code CLI (npm @anthropic-ai/claude-code) against `huddle init` and a real server.

No model and no login: `claude mcp get` connects to the configured server by itself, and a `claude -p`
session with a dummy API key (pointed at a closed port, so no request leaves the machine, and with
retries off, so it gives up at once) runs its SessionStart hook, fails to reach a model and ends on its
own, which runs its SessionEnd hook. The session ends as a user's would: no signal, whose handling
varies between Claude Code releases.
The CLI is installed on demand into a cache directory (`HUDDLE_TEST_CACHE`, default
~/.cache/huddle-tests); without npm the test skips locally and fails in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import ServerProcess

PACKAGE = "@anthropic-ai/claude-code"


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    cache = Path(os.environ.get("HUDDLE_TEST_CACHE", "~/.cache/huddle-tests")).expanduser() / "claude-code"
    binary = cache / "node_modules" / ".bin" / "claude"
    if binary.exists():
        return binary
    problem = None
    if shutil.which("npm") is None:
        problem = "npm is not installed"
    else:
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(cache), PACKAGE],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not binary.exists():
            problem = f"npm install {PACKAGE} failed: {done.stderr[-500:]}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(f"{problem}; the real Claude Code test runs in CI")
    return binary


def huddle(*args: str, repo: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HUDDLE_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "huddle.cli.main", *args], cwd=repo, env=env, capture_output=True, text=True
    )


def agents(server: ServerProcess) -> set[str]:
    result = httpx.post(f"{server.url}/api/v1/tools/list_agents", json={}).json()["result"]
    return {a["agent_id"] for a in result["agents"]}


def agent_events(server: ServerProcess, agent_id: str) -> list[str]:
    """The kinds of agent.* events `agent_id` caused, oldest first."""
    body = {"after": 0, "kinds": "agent.*", "limit": 500}
    result = httpx.post(f"{server.url}/api/v1/tools/list_events", json=body).json()["result"]
    return [e["event"] for e in result["events"] if e["agent_id"] == agent_id]


def test_claude_code_connects_after_init_and_its_hooks_register_and_deregister_the_agent(
    claude_cli: Path, huddle_server: ServerProcess, repo: Path, tmp_path: Path
) -> None:
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)  # Claude Code reads settings.local.json in a repo
    init = huddle("init", "--client", "claude", "--hooks", repo=repo, data_dir=huddle_server.data_dir)
    assert init.returncode == 0, init.stderr
    home = tmp_path / "home"  # a fresh user profile: nothing of the machine's own Claude Code config
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "HUDDLE_DATA_DIR": str(huddle_server.data_dir),
        "HUDDLE_AGENT": "cc-agent",
        "ANTHROPIC_API_KEY": "sk-test-no-model",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",  # nothing listens: no request leaves the machine
        "CLAUDE_CODE_MAX_RETRIES": "0",  # so the session gives up on the model at once and ends
    }
    status = subprocess.run(
        [str(claude_cli), "mcp", "get", "huddle"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert "Connected" in status.stdout, status.stdout + status.stderr
    assert huddle_server.mcp_url in status.stdout

    session = subprocess.run(
        [str(claude_cli), "-p", "hello", "--max-turns", "1"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert session.returncode != 0, "the session cannot have reached a model"
    # SessionStart (command form) registered the agent; SessionEnd (http form) deregistered it.
    assert agent_events(huddle_server, "cc-agent") == ["agent.online", "agent.deregistered"], session.stderr
    assert "cc-agent" not in agents(huddle_server)
    assert huddle("uninstall", repo=repo, data_dir=huddle_server.data_dir).returncode == 0
    assert sorted(p.name for p in repo.iterdir()) == [".git"]


def test_in_token_mode_claude_code_connects_only_with_its_token_and_its_hooks_act_as_that_agent(
    claude_cli: Path, server_factory: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "claude-code-" + "k" * 32
    # The operator's shell: `huddle token issue` signs with the key the server was started with.
    monkeypatch.setenv("HUDDLE_AUTH", "token")
    monkeypatch.setenv("HUDDLE_AUTH_SECRET", secret)
    server: ServerProcess = server_factory(env={"HUDDLE_AUTH": "token", "HUDDLE_AUTH_SECRET": secret})
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    init = huddle("init", "--client", "claude", "--hooks", repo=repo, data_dir=server.data_dir)
    assert init.returncode == 0 and "token mode" in init.stdout, init.stdout + init.stderr
    assert "${HUDDLE_TOKEN}" in (repo / ".mcp.json").read_text()  # the token itself never lands in a file
    token = huddle(
        "token", "issue", "--agent", "cc-agent", "--data-dir", str(server.data_dir), repo=repo, data_dir=server.data_dir
    ).stdout.strip()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "HUDDLE_DATA_DIR": str(server.data_dir),
        "ANTHROPIC_API_KEY": "sk-test-no-model",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    env.pop("HUDDLE_TOKEN", None)
    without = subprocess.run(
        [str(claude_cli), "mcp", "get", "huddle"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert "Connected" not in without.stdout, without.stdout
    env["HUDDLE_TOKEN"] = token
    status = subprocess.run(
        [str(claude_cli), "mcp", "get", "huddle"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert "Connected" in status.stdout, status.stdout + status.stderr
    subprocess.run(
        [str(claude_cli), "-p", "hello", "--max-turns", "1"], cwd=repo, env=env, capture_output=True, timeout=300
    )
    # The hooks sent the token: the session registered and left as the token's agent.
    admin = huddle(
        "token", "issue", "--agent", "ops", "--scope", "admin", "--no-refresh", repo=repo, data_dir=server.data_dir
    ).stdout.strip()
    body = {"after": 0, "kinds": "agent.*", "limit": 500}
    events = httpx.post(
        f"{server.url}/api/v1/tools/list_events", json=body, headers={"Authorization": f"Bearer {admin}"}
    ).json()["result"]["events"]
    assert [e["event"] for e in events if e["agent_id"] == "cc-agent"] == ["agent.online", "agent.deregistered"]
