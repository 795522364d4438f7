"""Claude Code hooks against a real server, in both forms: the http hook (POST /hooks/claude/EVENT)
and the command hook (`python -m huddle.hook claude EVENT`, the payload on stdin).

Payloads follow Claude Code's documented hook input: session_id, transcript_path, cwd,
hook_event_name, and tool_name / tool_input / tool_response / prompt / source per event.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import ServerProcess
from huddle.domain.claude_hooks import derived_agent_id

Hook = Callable[[str, dict[str, Any]], dict[str, Any]]
ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"


def payload(event: str, session: str, repo: Path, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": session,
        "transcript_path": f"/tmp/{session}.jsonl",
        "cwd": str(repo),
        "permission_mode": "default",
        "hook_event_name": event,
        **fields,
    }


def edit(session: str, repo: Path, file: str, old: str, new: str) -> dict[str, Any]:
    return payload(
        "PreToolUse",
        session,
        repo,
        tool_name="Edit",
        tool_use_id="toolu_01",
        tool_input={"file_path": str(repo / file), "old_string": old, "new_string": new, "replace_all": False},
    )


def http_hook(server: ServerProcess) -> Hook:
    def call(event: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{server.url}/hooks/claude/{event}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    return call


def command_hook(server: ServerProcess, env: dict[str, str] | None = None) -> Hook:
    def call(event: str, body: dict[str, Any]) -> dict[str, Any]:
        result = run_command_hook(event, body, {"HUDDLE_DATA_DIR": str(server.data_dir), **(env or {})})
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else {}

    return call


def run_command_hook(event: str, body: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_")}
    return subprocess.run(
        [sys.executable, "-m", "huddle.hook", "claude", event],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=30,
    )


def rest(server: ServerProcess, tool: str, **args: Any) -> dict[str, Any]:
    envelope = httpx.post(f"{server.url}/api/v1/tools/{tool}", json=args, timeout=10).json()
    assert envelope["ok"], envelope
    return envelope["result"]  # type: ignore[no-any-return]


def decision(output: dict[str, Any]) -> str:
    return str(output.get("hookSpecificOutput", {}).get("permissionDecision", "allow"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """One real server for this module (starting one per test costs seconds); tests use their own
    sessions, agents and files, so they do not see each other."""
    root = tmp_path_factory.mktemp("hooks")
    repo = root / "repo"
    repo.mkdir()
    server = ServerProcess(root / "data", repo).start()
    try:
        yield server, repo
    finally:
        server.stop()


@pytest.fixture
def huddle_server(shared: tuple[ServerProcess, Path]) -> ServerProcess:
    return shared[0]


@pytest.fixture
def repo(shared: tuple[ServerProcess, Path]) -> Path:
    return shared[1]


@pytest.fixture
def sessions() -> tuple[str, str, str, str]:
    """Fresh Claude Code session ids for alice and bob, and the agent ids derived from them."""
    alice, bob = (str(uuid.uuid4()) for _ in range(2))
    return alice, bob, derived_agent_id(alice), derived_agent_id(bob)


@pytest.fixture
def area(repo: Path) -> str:
    """A directory of the shared repo that only this test touches."""
    name = f"src{uuid.uuid4().hex[:8]}"
    (repo / name).mkdir()
    (repo / name / "models.py").write_text("class User:\n    name: str\n    email: str\n")
    return name


@pytest.fixture(params=["http", "command"])
def hook(request: pytest.FixtureRequest, huddle_server: ServerProcess) -> Iterator[Hook]:
    yield http_hook(huddle_server) if request.param == "http" else command_hook(huddle_server)


def start_sessions(hook: Hook, repo: Path, *sessions: str) -> None:
    for session in sessions:
        hook("SessionStart", payload("SessionStart", session, repo, source="startup"))


def online(server: ServerProcess) -> dict[str, dict[str, Any]]:
    return {a["agent_id"]: a for a in rest(server, "list_agents")["agents"]}


def test_session_start_registers_the_agent_and_tells_it_its_id(hook: Hook, huddle_server, repo, sessions, area):
    alice_session, bob_session, alice, _ = sessions
    workdir = repo / area
    out = hook("SessionStart", payload("SessionStart", alice_session, workdir, source="startup"))
    context = out["hookSpecificOutput"]["additionalContext"]
    assert out["hookSpecificOutput"]["hookEventName"] == "SessionStart"
    assert f"your agent_id is '{alice}'" in context
    assert online(huddle_server)[alice]["client"] == "claude-code"
    # huddle channel and the git guard find the agent of the session working in a directory.
    found = httpx.get(f"{huddle_server.url}/hooks/claude/agent", params={"cwd": str(workdir)}).json()
    assert found == {"ok": True, "agent_id": alice}
    rest(huddle_server, "acquire_lock", agent_id=alice, path=f"{area}/", mode="exclusive", ttl_s=300)
    rest(huddle_server, "announce_work", agent_id=alice, subject="rework models", target_files=[f"{area}/models.py"])
    told = hook("SessionStart", payload("SessionStart", bob_session, workdir / "sub", source="startup"))
    briefing = told["hookSpecificOutput"]["additionalContext"]
    assert f"- {alice}: rework models ({area}/models.py)" in briefing
    assert f"- {area}/: exclusive by {alice} until" in briefing
    ambiguous = httpx.get(f"{huddle_server.url}/hooks/claude/agent", params={"cwd": str(workdir)}).json()
    assert ambiguous["agent_id"] is None  # two sessions there: nobody is guessed


def test_second_agent_editing_a_file_in_flight_is_asked_and_a_leased_file_is_denied(
    hook: Hook, huddle_server, repo, sessions, area
) -> None:
    alice_session, bob_session, alice, bob = sessions
    file = f"{area}/models.py"
    start_sessions(hook, repo, alice_session, bob_session)
    first = hook("PreToolUse", edit(alice_session, repo, file, "    email: str\n", "    email: EmailStr\n"))
    assert decision(first) == "allow"
    flying = rest(huddle_server, "check_file_conflict", path=file, agent_id=bob)
    assert flying["agents"][0]["agent_id"] == alice and flying["agents"][0]["editing_now"]

    second = hook("PreToolUse", edit(bob_session, repo, file, "    name: str\n", "    name: Text\n"))
    assert decision(second) == "ask"
    reason = second["hookSpecificOutput"]["permissionDecisionReason"]
    assert alice in reason and file in reason

    rest(huddle_server, "acquire_lock", agent_id=alice, path=f"{area}/", mode="exclusive", ttl_s=300)
    denied = hook("PreToolUse", edit(bob_session, repo, file, "    name: str\n", "    name: Text\n"))
    assert decision(denied) == "deny"
    reason = denied["hookSpecificOutput"]["permissionDecisionReason"]
    assert f"leased exclusively by {alice}" in reason and "until 20" in reason and "release" in reason
    # The holder itself is not denied under its own lease, and bob's edit that was only asked about
    # (never allowed) does not hold it up.
    assert decision(hook("PreToolUse", edit(alice_session, repo, file, "User", "Account"))) == "allow"


def test_post_tool_use_logs_the_edit_with_its_lines_and_ends_the_in_flight_mark(
    hook: Hook, huddle_server, repo, sessions, area
) -> None:
    alice_session, _, alice, _ = sessions
    file = repo / area / "models.py"
    hook("SessionStart", payload("SessionStart", alice_session, repo, source="startup"))
    hook("PreToolUse", edit(alice_session, repo, f"{area}/models.py", "    email: str\n", "    email: EmailStr\n"))
    post = payload(
        "PostToolUse",
        alice_session,
        repo,
        tool_name="Edit",
        tool_use_id="toolu_01",
        tool_input={"file_path": str(file), "old_string": "    email: str\n", "new_string": "    email: EmailStr\n"},
        tool_response={
            "filePath": str(file),
            "structuredPatch": [{"oldStart": 2, "oldLines": 2, "newStart": 2, "newLines": 2, "lines": []}],
        },
    )
    hook("PostToolUse", post)
    updates = rest(huddle_server, "get_updates", agent_id=alice, cursor=0)["events"]
    editing = [e for e in updates if e["event"] == "file.editing" and e["agent_id"] == alice]
    assert editing[0]["editing"] is True and editing[0]["ranges"] == [[3, 3]]  # old_string found on line 3
    assert editing[-1]["editing"] is False
    [edited] = [e for e in updates if e["event"] == "file.edited" and e["agent_id"] == alice]
    assert edited["path"] == f"{area}/models.py" and edited["ranges"] == [[2, 3]]


def test_a_thread_reply_reaches_the_other_agents_next_prompt_exactly_once(
    hook: Hook, huddle_server, repo, sessions, area
) -> None:
    alice_session, bob_session, alice, bob = sessions
    file = f"{area}/models.py"
    start_sessions(hook, repo, alice_session, bob_session)
    rest(huddle_server, "announce_work", agent_id=alice, subject="add email", target_files=[file])
    thread = rest(huddle_server, "announce_work", agent_id=bob, subject="rename", target_files=[file])["thread_id"]
    assert thread
    prompt = payload("UserPromptSubmit", alice_session, repo, prompt="go on")
    opened = hook("UserPromptSubmit", prompt)["hookSpecificOutput"]["additionalContext"]
    assert f"opened consultation {thread}" in opened

    rest(huddle_server, "post_to_thread", thread_id=thread, agent_id=bob, type="question", content="wait for me?")
    news = hook("UserPromptSubmit", prompt)
    assert news["hookSpecificOutput"]["hookEventName"] == "UserPromptSubmit"
    text = news["hookSpecificOutput"]["additionalContext"]
    assert text.count("wait for me?") == 1 and f"{bob} posted a question in {thread}" in text
    assert hook("UserPromptSubmit", prompt) == {}  # delivered once: nothing new the next turn
    bob_prompt = hook("UserPromptSubmit", payload("UserPromptSubmit", bob_session, repo, prompt="hi"))
    assert "wait for me?" not in json.dumps(bob_prompt)  # nobody is told about their own post
    for agent in (alice, bob):  # leave the shared server as we found it
        rest(huddle_server, "deregister_agent", agent_id=agent)


def test_session_end_deregisters_and_releases_the_agents_leases(hook: Hook, huddle_server, repo, sessions, area):
    alice_session, _, alice, _ = sessions
    hook("SessionStart", payload("SessionStart", alice_session, repo, source="startup"))
    rest(huddle_server, "acquire_lock", agent_id=alice, path=f"{area}/", mode="exclusive")
    assert hook("SessionEnd", payload("SessionEnd", alice_session, repo, reason="prompt_input_exit")) == {}
    assert rest(huddle_server, "list_locks", agent_id=alice)["locks"] == []
    assert alice not in online(huddle_server)


def test_huddle_agent_names_the_agent_in_both_forms(huddle_server, repo, sessions) -> None:
    alice_session, bob_session, _, _ = sessions
    alice, bob = f"alice-{alice_session[:4]}", f"bob-{bob_session[:4]}"
    command = command_hook(huddle_server, {"HUDDLE_AGENT": alice})
    out = command("SessionStart", payload("SessionStart", alice_session, repo, source="startup"))
    assert f"your agent_id is '{alice}'" in out["hookSpecificOutput"]["additionalContext"]
    response = httpx.post(
        f"{huddle_server.url}/hooks/claude/SessionStart",
        json=payload("SessionStart", bob_session, repo, source="startup"),
        headers={"X-Huddle-Agent": bob},
    )
    assert f"your agent_id is '{bob}'" in response.json()["hookSpecificOutput"]["additionalContext"]
    # Later hooks of the same session act for the same agent even without the variable.
    http_hook(huddle_server)("SessionEnd", payload("SessionEnd", alice_session, repo, reason="other"))
    agents = online(huddle_server)
    assert alice not in agents and bob in agents and derived_agent_id(alice_session) not in agents


def test_command_hook_fails_open_with_a_warning_when_the_server_is_down(repo) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    body = edit(ALICE, repo, "a.py", "x", "y")
    result = run_command_hook("PreToolUse", body, {"HUDDLE_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert "hookSpecificOutput" not in out  # no decision: the edit goes ahead
    assert out["systemMessage"].startswith("huddle: cannot reach") and "\n" not in out["systemMessage"]


def test_command_hook_gives_up_within_its_budget_when_the_server_hangs(repo) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = run_command_hook("PreToolUse", edit(ALICE, repo, "a.py", "x", "y"), {"HUDDLE_URL": url})
    assert result.returncode == 0
    assert "no answer from" in json.loads(result.stdout)["systemMessage"]


def test_bad_hook_payloads_get_a_clear_4xx_and_change_nothing(huddle_server, repo, sessions) -> None:
    alice_session, _, alice, _ = sessions
    for body, field in ((b"[1]", "body"), (b"{not json", "body"), (b'{"cwd": "/"}', "session_id")):
        response = httpx.post(
            f"{huddle_server.url}/hooks/claude/PreToolUse", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422 and response.json()["field"] == field
    # A body not declared JSON (what a cross-site form or text/plain post sends) is refused whole.
    good = json.dumps(payload("SessionStart", alice_session, repo)).encode()
    for media in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {} if media is None else {"content-type": media}
        for route in ("/hooks/claude/SessionStart", "/hooks/git/pre-commit", "/hooks/git/pre-push"):
            refused = httpx.post(f"{huddle_server.url}{route}", content=good, headers=headers)
            assert refused.status_code == 415 and "application/json" in refused.json()["error"], (route, media)
    unknown = httpx.post(f"{huddle_server.url}/hooks/claude/Bogus", json=payload("Bogus", alice_session, repo))
    assert unknown.status_code == 422 and "SessionStart" in unknown.json()["error"]
    bad_agent = httpx.post(
        f"{huddle_server.url}/hooks/claude/SessionStart",
        json=payload("SessionStart", alice_session, repo),
        headers={"X-Huddle-Agent": "no spaces allowed"},
    )
    assert bad_agent.status_code == 422 and bad_agent.json()["field"] == "X-Huddle-Agent"
    assert alice not in online(huddle_server)


def test_edits_outside_the_repository_and_other_tools_are_left_alone(hook: Hook, huddle_server, repo, sessions):
    alice_session, _, _, _ = sessions
    hook("SessionStart", payload("SessionStart", alice_session, repo, source="startup"))
    outside = edit(alice_session, repo, "../elsewhere.py", "a", "b")
    assert decision(hook("PreToolUse", outside)) == "allow"
    bash = payload("PreToolUse", alice_session, repo, tool_name="Bash", tool_input={"command": "ls"})
    assert hook("PreToolUse", bash) == {}


def test_a_resumed_session_gets_the_news_that_waited_for_it(hook: Hook, huddle_server, repo, sessions, area):
    alice_session, _, alice, bob = sessions
    start_sessions(hook, repo, alice_session)
    rest(huddle_server, "register_agent", name=bob)
    rest(huddle_server, "send_message", from_agent=bob, to_agent=alice, content="ping before compact")
    for source in ("compact", "resume"):
        resumed = hook("SessionStart", payload("SessionStart", alice_session, repo, source=source))
        context = resumed["hookSpecificOutput"]["additionalContext"]
        assert context.count("ping before compact") == (1 if source == "compact" else 0), context  # once
    assert hook("UserPromptSubmit", payload("UserPromptSubmit", alice_session, repo, prompt="hi")) == {}
    for agent in (alice, bob):
        rest(huddle_server, "deregister_agent", agent_id=agent)


def test_an_edit_only_asked_about_or_failed_makes_nobody_wait(hook: Hook, huddle_server, repo, sessions, area):
    alice_session, bob_session, alice, bob = sessions
    file = f"{area}/models.py"
    start_sessions(hook, repo, alice_session, bob_session)
    rest(huddle_server, "announce_work", agent_id=alice, subject="rework models", target_files=[file])
    asked = hook("PreToolUse", edit(bob_session, repo, file, "    name: str\n", "    name: Text\n"))
    assert decision(asked) == "ask"  # and the user declines: nothing of bob's is in flight
    assert decision(hook("PreToolUse", edit(alice_session, repo, file, "User", "Account"))) == "allow"
    failed = edit(alice_session, repo, file, "User", "Account")
    failed.update(hook_event_name="PostToolUseFailure", error="old_string not found")
    assert hook("PostToolUseFailure", failed) == {}
    flying = rest(huddle_server, "check_file_conflict", path=file, agent_id=bob)
    assert not any(a.get("editing_now") for a in flying["agents"])
    events = rest(huddle_server, "get_updates", agent_id=alice, cursor=0)["events"]
    assert not [e for e in events if e["event"] == "file.edited" and e.get("path") == file]
    for agent in (alice, bob):
        rest(huddle_server, "deregister_agent", agent_id=agent)


def test_malformed_hook_payloads_get_a_422_naming_the_field(huddle_server, repo, sessions) -> None:
    alice_session = sessions[0]
    url = f"{huddle_server.url}/hooks/claude/PreToolUse"
    multi = edit(alice_session, repo, "a.py", "x", "y")
    multi.update(tool_name="MultiEdit", tool_input={"file_path": str(repo / "a.py"), "edits": {"old_string": "x"}})
    wrong = httpx.post(url, json=multi)
    assert wrong.status_code == 422 and wrong.json()["field"] == "tool_input.edits"
    content = edit(alice_session, repo, "a.py", "x", "y")
    content.update(tool_name="Write", tool_input={"file_path": str(repo / "a.py"), "content": 5})
    assert httpx.post(url, json=content).json()["field"] == "tool_input.content"
    deep = httpx.post(url, content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"})
    assert deep.status_code == 422 and "nested more than" in deep.json()["error"]


def test_a_write_bigger_than_the_rest_body_cap_into_a_leased_file_is_denied(
    hook: Hook, huddle_server, repo, sessions, area
) -> None:
    alice_session, bob_session, alice, _ = sessions
    start_sessions(hook, repo, alice_session, bob_session)
    rest(huddle_server, "acquire_lock", agent_id=alice, path=f"{area}/", mode="exclusive", ttl_s=300)
    big = edit(bob_session, repo, f"{area}/models.py", "x", "y")
    big.update(
        tool_name="Write", tool_input={"file_path": str(repo / area / "models.py"), "content": "x = 1\n" * 300_000}
    )
    assert decision(hook("PreToolUse", big)) == "deny"
