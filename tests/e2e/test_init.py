"""`huddle init` / `huddle uninstall` / `huddle guard` on a real git repository with a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from helpers import ServerProcess

USER_FILES = {
    "CLAUDE.md": "# Project rules\n\nUse tabs.",  # no trailing newline on purpose
    "AGENTS.md": "# Agents\n\n- be nice\n",
    ".mcp.json": '{\n    "mcpServers": {"other": {"command": "npx", "args": ["x"]}}\n}\n',
    ".cursor/mcp.json": '{"mcpServers": {}}',
    ".codex/config.toml": 'model = "o3"\n\n[mcp_servers.other]\ncommand = "x"\n',
    ".claude/settings.json": '{\n  "permissions": {"allow": ["Bash(ls)"]},\n  "hooks": {"PreToolUse": '
    '[{"matcher": "Bash", "hooks": [{"type": "command", "command": "echo mine"}]}]}\n}\n',
}
OWN_HOOK = "#!/bin/sh\necho 'my own pre-commit'\nexit 0\n"


def huddle(
    *args: str, cwd: Path, data_dir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_")}
    return subprocess.run(
        [sys.executable, "-m", "huddle.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**clean, "HUDDLE_DATA_DIR": str(data_dir), **(env or {})},
        timeout=60,
    )


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **(env or {})})


def snapshot(repo: Path) -> dict[str, tuple[bytes, int]]:
    """Every file outside .git's object store, with its bytes and mode."""
    out = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo).as_posix()
        if path.is_file() and not rel.startswith((".git/objects", ".git/logs", ".git/index")):
            out[rel] = (path.read_bytes(), path.stat().st_mode)
    return out


@pytest.fixture
def git_repo(repo: Path) -> Path:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "dev")
    for name, text in USER_FILES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(OWN_HOOK)
    hook.chmod(0o755)
    return repo


def test_init_merges_every_client_then_uninstall_restores_every_file_byte_for_byte(
    huddle_server: ServerProcess, git_repo: Path
) -> None:
    before = snapshot(git_repo)
    args = ("init", "--client", "all", "--hooks", "--git-hook", "--write-agents-md", "docs/AGENTS.md")
    args += ("--write-mcp-config", "tools/mcp.json")
    first = huddle(*args, cwd=git_repo, data_dir=huddle_server.data_dir)
    assert first.returncode == 0, first.stderr
    mcp = huddle_server.mcp_url
    claude = json.loads((git_repo / ".mcp.json").read_text())
    assert claude["mcpServers"] == {"other": {"command": "npx", "args": ["x"]}, "huddle": {"type": "http", "url": mcp}}
    assert json.loads((git_repo / ".cursor/mcp.json").read_text())["mcpServers"]["huddle"] == {"url": mcp}
    assert json.loads((git_repo / ".vscode/mcp.json").read_text())["servers"]["huddle"]["url"] == mcp
    assert json.loads((git_repo / "tools/mcp.json").read_text())["mcpServers"]["huddle"]["url"] == mcp
    assert json.loads((git_repo / ".claude/settings.local.json").read_text()) == {"enabledMcpjsonServers": ["huddle"]}
    codex = tomllib.loads((git_repo / ".codex/config.toml").read_text())
    assert codex["mcp_servers"] == {"other": {"command": "x"}, "huddle": {"url": mcp}} and codex["model"] == "o3"
    settings = json.loads((git_repo / ".claude/settings.json").read_text())
    assert settings["permissions"] == {"allow": ["Bash(ls)"]}
    pre = settings["hooks"]["PreToolUse"]
    assert pre[0]["hooks"][0]["command"] == "echo mine"
    assert pre[1]["matcher"] == "Edit|Write|MultiEdit|NotebookEdit"
    assert (
        pre[1]["hooks"][0]["type"] == "http"
        and pre[1]["hooks"][0]["url"] == huddle_server.url + "/hooks/claude/PreToolUse"
    )
    assert set(settings["hooks"]) == {
        "SessionStart",
        "UserPromptSubmit",
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "SessionEnd",
    }
    # Claude Code runs no http SessionStart hook: that one is the command form.
    assert settings["hooks"]["SessionStart"][0]["hooks"][0]["command"].endswith("-m huddle.hook claude SessionStart")
    for md in ("CLAUDE.md", "AGENTS.md", "docs/AGENTS.md"):
        text = (git_repo / md).read_text()
        assert text.count("<!-- >>> huddle") == 1 and "announce_work" in text, md
    assert (git_repo / "CLAUDE.md").read_text().startswith(USER_FILES["CLAUDE.md"])
    assert "huddle.cli.guard pre-commit" in (git_repo / ".git/hooks/pre-commit").read_text()

    after_first = snapshot(git_repo)
    second = huddle(*args, cwd=git_repo, data_dir=huddle_server.data_dir)
    assert second.returncode == 0, second.stderr
    assert snapshot(git_repo) == after_first  # init twice changes nothing
    assert all(line.startswith("unchanged") for line in second.stdout.splitlines()[:-1])

    gone = huddle("uninstall", cwd=git_repo, data_dir=huddle_server.data_dir)
    assert gone.returncode == 0, gone.stderr
    assert snapshot(git_repo) == before


def test_uninstall_keeps_edits_the_user_made_after_init(huddle_server: ServerProcess, git_repo: Path) -> None:
    assert huddle("init", cwd=git_repo, data_dir=huddle_server.data_dir).returncode == 0
    config = json.loads((git_repo / ".mcp.json").read_text())
    config["mcpServers"]["later"] = {"command": "y"}
    (git_repo / ".mcp.json").write_text(json.dumps(config))
    with (git_repo / "CLAUDE.md").open("a") as f:
        f.write("\nA rule added later.\n")
    assert huddle("uninstall", cwd=git_repo, data_dir=huddle_server.data_dir).returncode == 0
    assert json.loads((git_repo / ".mcp.json").read_text())["mcpServers"] == {
        "other": {"command": "npx", "args": ["x"]},
        "later": {"command": "y"},
    }
    claude_md = (git_repo / "CLAUDE.md").read_text()
    assert "huddle" not in claude_md and "A rule added later." in claude_md and "Use tabs." in claude_md


def test_init_writes_the_running_servers_url_and_refuses_without_one(
    huddle_server: ServerProcess, git_repo: Path, tmp_path: Path
) -> None:
    nowhere = huddle("init", cwd=git_repo, data_dir=tmp_path / "empty")
    assert nowhere.returncode == 1 and "huddle server start" in nowhere.stderr and "--url" in nowhere.stderr
    assert not (git_repo / ".huddle").exists()
    assert huddle("init", "--hooks", "command", cwd=git_repo, data_dir=huddle_server.data_dir).returncode == 0
    assert json.loads((git_repo / ".mcp.json").read_text())["mcpServers"]["huddle"]["url"] == huddle_server.mcp_url
    command = json.loads((git_repo / ".claude/settings.json").read_text())["hooks"]["SessionStart"][0]["hooks"][0]
    assert command["command"].startswith(sys.executable + " -m huddle.hook claude SessionStart")


def test_git_guard_blocks_a_commit_into_another_agents_lease_and_the_override_passes(
    huddle_server: ServerProcess, git_repo: Path
) -> None:
    assert huddle("guard", "install", cwd=git_repo, data_dir=huddle_server.data_dir).returncode == 0
    api = huddle_server.url + "/api/v1/tools/"
    httpx.post(api + "register_agent", json={"name": "bob"})
    httpx.post(api + "acquire_lock", json={"agent_id": "bob", "path": "src/", "mode": "exclusive"})
    (git_repo / "src").mkdir()
    (git_repo / "src" / "app.py").write_text("print('hi')\n")
    git(git_repo, "add", "src/app.py")
    env = {"HUDDLE_DATA_DIR": str(huddle_server.data_dir), "HUDDLE_AGENT": "alice"}
    refused = git(git_repo, "commit", "-m", "app", env=env)
    assert refused.returncode == 1
    assert "src/app.py is leased exclusively by bob until" in refused.stderr and "HUDDLE_GUARD=off" in refused.stderr
    assert "my own pre-commit" not in refused.stdout + refused.stderr  # the guard runs first and stops the commit
    as_bob = git(git_repo, "commit", "-m", "app", env={**env, "HUDDLE_AGENT": "bob"})
    assert as_bob.returncode == 0, as_bob.stderr  # the holder may commit its own work
    assert "my own pre-commit" in as_bob.stdout + as_bob.stderr  # and the user's hook still runs
    (git_repo / "src" / "app.py").write_text("print('bye')\n")
    git(git_repo, "add", "src/app.py")
    overridden = git(git_repo, "commit", "-m", "again", env={**env, "HUDDLE_GUARD": "off"})
    assert overridden.returncode == 0, overridden.stderr

    assert huddle("guard", "uninstall", cwd=git_repo, data_dir=huddle_server.data_dir).returncode == 0
    assert (git_repo / ".git/hooks/pre-commit").read_text() == OWN_HOOK
    assert not (git_repo / ".git/hooks/pre-push").exists()


def test_pre_push_refuses_while_another_agent_announced_a_git_operation_on_the_branch(
    huddle_server: ServerProcess, git_repo: Path
) -> None:
    api = huddle_server.url + "/api/v1/tools/"
    httpx.post(api + "register_agent", json={"name": "carol", "branch": "main"})
    httpx.post(
        api + "announce_work",
        json={"agent_id": "carol", "subject": "rebase main", "kind": "git_rebase", "target_files": ["README.md"]},
    )
    env = {"HUDDLE_DATA_DIR": str(huddle_server.data_dir), "HUDDLE_AGENT": "dave"}
    check = huddle("guard", "pre-push", cwd=git_repo, data_dir=huddle_server.data_dir, env=env)
    assert check.returncode == 1 and "carol announced git_rebase on main" in check.stderr
    assert (
        huddle(
            "guard", "pre-push", cwd=git_repo, data_dir=huddle_server.data_dir, env={**env, "HUDDLE_GUARD": "off"}
        ).returncode
        == 0
    )


def test_purge_asks_unless_forced_and_refuses_while_the_server_runs(
    huddle_server: ServerProcess, git_repo, tmp_path
) -> None:
    running = huddle("uninstall", "--purge", "--force", cwd=git_repo, data_dir=huddle_server.data_dir)
    assert running.returncode == 1 and "stop it first" in running.stderr and huddle_server.data_dir.exists()
    idle = tmp_path / "idle-data"
    idle.mkdir()
    (idle / "huddle.db").write_bytes(b"x")
    unasked = huddle("uninstall", "--purge", cwd=git_repo, data_dir=idle)
    assert unasked.returncode == 1 and "--force" in unasked.stderr and idle.exists()
    forced = huddle("uninstall", "--purge", "--force", cwd=git_repo, data_dir=idle)
    assert forced.returncode == 0 and not idle.exists()


NOWHERE = "http://127.0.0.1:9"  # init with --url never contacts the server


def test_init_again_after_the_user_edited_a_file_keeps_that_edit_at_uninstall(git_repo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert huddle("init", "--url", NOWHERE, cwd=git_repo, data_dir=data).returncode == 0
    config = json.loads((git_repo / ".mcp.json").read_text())
    config["mcpServers"]["added-later"] = {"command": "b"}  # e.g. `claude mcp add -s project`
    (git_repo / ".mcp.json").write_text(json.dumps(config, indent=2) + "\n")
    again = huddle("init", "--url", "http://127.0.0.1:10", cwd=git_repo, data_dir=data)  # the server moved
    assert again.returncode == 0 and "updated   .mcp.json" in again.stdout
    assert huddle("uninstall", cwd=git_repo, data_dir=data).returncode == 0
    assert json.loads((git_repo / ".mcp.json").read_text())["mcpServers"] == {
        "other": {"command": "npx", "args": ["x"]},
        "added-later": {"command": "b"},
    }


def test_init_from_a_subdirectory_wires_the_repository_root_and_uninstall_finds_it(
    git_repo: Path, tmp_path: Path
) -> None:
    before = snapshot(git_repo)
    sub = git_repo / "src" / "deep"
    sub.mkdir(parents=True)
    data = tmp_path / "data"
    assert huddle("init", "--url", NOWHERE, "--git-hook", cwd=sub, data_dir=data).returncode == 0
    assert "huddle" in json.loads((git_repo / ".mcp.json").read_text())["mcpServers"]
    assert (git_repo / ".huddle" / "init-manifest.json").exists() and not (sub / ".mcp.json").exists()
    assert huddle("uninstall", cwd=sub, data_dir=data).returncode == 0
    sub.rmdir()
    (git_repo / "src").rmdir()
    assert snapshot(git_repo) == before


def test_command_hooks_carry_the_url_init_was_given(git_repo: Path, tmp_path: Path) -> None:
    assert huddle("init", "--url", NOWHERE, "--hooks", cwd=git_repo, data_dir=tmp_path / "d").returncode == 0
    hooks = json.loads((git_repo / ".claude/settings.json").read_text())["hooks"]
    assert hooks["SessionStart"][0]["hooks"][0]["command"].endswith(f"claude SessionStart --url {NOWHERE}")
    assert hooks["PreToolUse"][1]["hooks"][0]["url"] == f"{NOWHERE}/hooks/claude/PreToolUse"
    assert hooks["PreToolUse"][1]["hooks"][0]["timeout"] == 1  # seconds: the hook budget, not 5


def test_init_refuses_a_commented_vscode_config_or_a_non_utf8_file_before_writing_anything(
    git_repo: Path, tmp_path: Path
) -> None:
    (git_repo / ".vscode").mkdir()
    (git_repo / ".vscode/mcp.json").write_text('{\n  // my servers\n  "servers": {},\n}\n')
    before = snapshot(git_repo)
    jsonc = huddle("init", "--url", NOWHERE, "--client", "all", cwd=git_repo, data_dir=tmp_path / "d")
    assert jsonc.returncode == 1 and "Traceback" not in jsonc.stderr
    assert ".vscode/mcp.json has comments (JSONC)" in jsonc.stderr and "nothing was changed" in jsonc.stderr
    assert snapshot(git_repo) == before  # no client half wired
    (git_repo / ".vscode/mcp.json").unlink()
    (git_repo / "CLAUDE.md").write_bytes("# Règles\n".encode("latin-1"))
    before = snapshot(git_repo)
    latin = huddle("init", "--url", NOWHERE, cwd=git_repo, data_dir=tmp_path / "d")
    assert latin.returncode == 1 and "Traceback" not in latin.stderr
    assert "CLAUDE.md is not UTF-8 text" in latin.stderr and snapshot(git_repo) == before


def test_guard_install_refuses_a_hook_written_in_another_language_and_changes_nothing(
    git_repo: Path, tmp_path: Path
) -> None:
    hook = git_repo / ".git/hooks/pre-commit"
    hook.write_text("#!/usr/bin/env python3\nimport sys\nsys.exit(0)\n")
    before = snapshot(git_repo)
    refused = huddle("guard", "install", cwd=git_repo, data_dir=tmp_path / "d")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "pre-commit is a python3 script, not a shell one" in refused.stderr and "huddle.cli.guard" in refused.stderr
    assert snapshot(git_repo) == before
    committed = git(git_repo, "commit", "--allow-empty", "-m", "still works")
    assert committed.returncode == 0, committed.stderr


def test_guard_sees_renames_deletions_pushed_branches_and_every_staged_path(
    huddle_server: ServerProcess, git_repo: Path
) -> None:
    assert huddle("guard", "install", cwd=git_repo, data_dir=huddle_server.data_dir).returncode == 0
    (git_repo / "leased.py").write_text("x = 1\n")
    git(git_repo, "add", "-A")
    assert git(git_repo, "commit", "-qm", "base", env={"HUDDLE_GUARD": "off"}).returncode == 0
    api = huddle_server.url + "/api/v1/tools/"
    httpx.post(api + "register_agent", json={"name": "bob", "branch": "feature-x"})
    httpx.post(api + "acquire_lock", json={"agent_id": "bob", "path": "leased.py", "mode": "exclusive"})
    env = {"HUDDLE_DATA_DIR": str(huddle_server.data_dir), "HUDDLE_AGENT": "alice"}

    git(git_repo, "mv", "leased.py", "moved.py")
    renamed = git(git_repo, "commit", "-m", "rename", env=env)
    assert renamed.returncode == 1 and "leased.py is leased exclusively by bob" in renamed.stderr
    git(git_repo, "reset", "-q", "--hard")
    git(git_repo, "rm", "-q", "leased.py")
    deleted = git(git_repo, "commit", "-m", "delete", env=env)
    assert deleted.returncode == 1 and "leased.py is leased exclusively by bob" in deleted.stderr
    git(git_repo, "reset", "-q", "--hard")

    # More staged paths than one check takes: the guard asks in chunks and still finds the lease.
    many = git_repo / "many"
    many.mkdir()
    for i in range(2100):
        (many / f"f{i}.txt").write_text("")
    (git_repo / "leased.py").write_text("x = 2\n")
    git(git_repo, "add", "-A")
    big = git(git_repo, "commit", "-m", "big", env=env)
    assert big.returncode == 1 and "leased.py is leased exclusively by bob" in big.stderr
    assert git(git_repo, "commit", "-qm", "big", env={**env, "HUDDLE_GUARD": "off"}).returncode == 0

    remote = git_repo.parent / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(git_repo, "remote", "add", "origin", str(remote))
    git(git_repo, "branch", "feature-x")
    httpx.post(
        api + "announce_work",
        json={"agent_id": "bob", "subject": "push it", "kind": "git_push", "target_files": ["README.md"]},
    )
    pushed = git(git_repo, "push", "-q", "origin", "feature-x", env=env)  # main is checked out
    assert pushed.returncode == 1 and "bob announced git_push on feature-x" in pushed.stderr
    other = git(git_repo, "push", "-q", "origin", "main", env=env)
    assert other.returncode == 0, other.stderr


def test_guard_warns_and_lets_git_go_on_when_something_else_answers(git_repo: Path, tmp_path: Path) -> None:
    import http.server
    import threading

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"<html>502 Bad Gateway</html>" if "commit" in self.path else b"[1, 2]"
            self.send_response(502 if "commit" in self.path else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"HUDDLE_URL": f"http://127.0.0.1:{server.server_port}"}
        assert huddle("guard", "install", cwd=git_repo, data_dir=tmp_path / "d").returncode == 0
        (git_repo / "a.py").write_text("a\n")
        git(git_repo, "add", "a.py")
        committed = git(git_repo, "commit", "-m", "a", env=env)
        assert committed.returncode == 0 and "Traceback" not in committed.stderr
        assert "gave no Huddle answer (HTTP 502); not checked" in committed.stderr
        pushed = huddle("guard", "pre-push", cwd=git_repo, data_dir=tmp_path / "d", env=env)
        assert pushed.returncode == 0 and "gave no Huddle answer (HTTP 200)" in pushed.stderr
    finally:
        server.shutdown()


def test_guard_lets_either_of_two_sessions_in_one_checkout_commit_its_own_lease(
    huddle_server: ServerProcess, git_repo: Path
) -> None:
    assert huddle("guard", "install", cwd=git_repo, data_dir=huddle_server.data_dir).returncode == 0
    for session in ("a11ce000-0000-4000-8000-000000000001", "b0b00000-0000-4000-8000-000000000002"):
        start = {"session_id": session, "cwd": str(git_repo), "hook_event_name": "SessionStart", "source": "startup"}
        assert httpx.post(huddle_server.url + "/hooks/claude/SessionStart", json=start).status_code == 200
    api = huddle_server.url + "/api/v1/tools/"
    httpx.post(api + "acquire_lock", json={"agent_id": "claude-a11ce000", "path": "mine.py", "mode": "exclusive"})
    httpx.post(api + "register_agent", json={"name": "carol"})
    httpx.post(api + "acquire_lock", json={"agent_id": "carol", "path": "hers.py", "mode": "exclusive"})
    env = {"HUDDLE_DATA_DIR": str(huddle_server.data_dir)}  # no HUDDLE_AGENT in either session
    (git_repo / "mine.py").write_text("x\n")
    git(git_repo, "add", "mine.py")
    own = git(git_repo, "commit", "-m", "mine", env=env)
    assert own.returncode == 0, own.stderr
    assert "several agents work in this checkout (claude-a11ce000, claude-b0b00000)" in own.stderr
    (git_repo / "hers.py").write_text("y\n")
    git(git_repo, "add", "hers.py")
    theirs = git(git_repo, "commit", "-m", "hers", env=env)
    assert theirs.returncode == 1 and "hers.py is leased exclusively by carol" in theirs.stderr
