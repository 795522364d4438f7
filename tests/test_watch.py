"""`huddle watch --agent ID`: prints or forwards an agent's events and resumes from its saved cursor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx

from push_helpers import s1, tool


def watch(server: Any, data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "huddle.cli.main", "watch", "--url", server.url, "--data-dir", str(data_dir), *args]


def run_once(server: Any, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(watch(server, data_dir, "--once", *args), capture_output=True, text=True, timeout=30)


class Follower:
    """A long-running `huddle watch` whose stdout lines the test waits for."""

    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._new = threading.Event()
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.errors), daemon=True).start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))
            self._new.set()

    async def wait_for(self, text: str, timeout: float = 15, *, stderr: bool = False) -> None:
        lines = self.errors if stderr else self.lines
        with anyio.fail_after(timeout):
            while not any(text in line for line in lines):
                self._new.clear()
                await anyio.to_thread.run_sync(self._new.wait, 0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def test_once_prints_the_pending_events_and_a_second_run_only_the_new_ones(huddle_server, tmp_path):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        thread_id = await s1(http)
        first = run_once(huddle_server, tmp_path, "--agent", "alice", "--json", "--since", "0")
        assert first.returncode == 0, first.stderr
        events = [json.loads(line) for line in first.stdout.splitlines()]
        assert any(e["event"] == "thread.opened" and e["thread_id"] == thread_id for e in events)
        assert all(e["agent_id"] != "alice" for e in events), "own actions are skipped by default"
        assert [e["cursor"] for e in events] == sorted(e["cursor"] for e in events)
        saved = int((tmp_path / "watch" / "alice.cursor").read_text())
        assert saved == events[-1]["cursor"]

        await tool(http, "post_to_thread", thread_id=thread_id, agent_id="bob", type="question", content="ready?")
        second = run_once(huddle_server, tmp_path, "--agent", "alice", "--json")
        again = [json.loads(line) for line in second.stdout.splitlines()]
        assert [e["content"] for e in again] == ["ready?"]

        readable = run_once(huddle_server, tmp_path, "--agent", "alice", "--since", "0", "--kinds", "thread.*")
        assert f"thread.opened {thread_id} by bob — fix app bug" in readable.stdout


async def test_a_follower_that_was_stopped_resumes_where_it_left_off(huddle_server, tmp_path):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        await tool(http, "register_agent", name="Alice", agent_id="alice")
        await tool(http, "register_agent", name="Bob", agent_id="bob")
        follower = Follower(watch(huddle_server, tmp_path, "--agent", "alice", "--json"))
        try:
            # No saved cursor: it starts at the present and says so.
            await follower.wait_for("following alice from cursor", stderr=True)
            await tool(http, "send_message", from_agent="bob", to_agent="alice", content="one")
            await follower.wait_for('"content":"one"')
        finally:
            follower.stop()
        await tool(http, "send_message", from_agent="bob", to_agent="alice", content="two")  # while stopped
        follower = Follower(watch(huddle_server, tmp_path, "--agent", "alice", "--json"))
        try:
            await tool(http, "send_message", from_agent="bob", to_agent="alice", content="three")
            await follower.wait_for('"content":"three"')
            contents = [json.loads(line).get("content") for line in follower.lines]
            # Delivery is at-least-once: nothing sent while it was stopped is missed, in order; a crash
            # (not this clean stop) could hand "one" over again, so only that may come before.
            assert contents[-2:] == ["two", "three"]
            assert set(contents[:-2]) <= {"one"}
        finally:
            follower.stop()


async def test_a_stop_while_an_event_is_handled_waits_until_its_cursor_is_saved(huddle_server, tmp_path):
    out = tmp_path / "handled.txt"
    # The command asks its watcher to stop while the event is being handled, then finishes the job.
    stop_midway = f"kill -TERM $PPID; cat >> {out}; echo >> {out}"
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        await tool(http, "register_agent", name="Alice", agent_id="alice")
        await tool(http, "register_agent", name="Bob", agent_id="bob")
        for content in ("one", "two"):
            await tool(http, "send_message", from_agent="bob", to_agent="alice", content=content)
        stopped = run_once(huddle_server, tmp_path, "--agent", "alice", "--since", "0", "--exec", stop_midway)
        assert stopped.returncode == 128 + 15, stopped.stderr
        resumed = run_once(huddle_server, tmp_path, "--agent", "alice", "--exec", f"cat >> {out}; echo >> {out}")
        assert resumed.returncode == 0, resumed.stderr
    handled = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    messages = [event["content"] for event in handled if event.get("event") == "message.sent"]
    assert messages == ["one", "two"], "each event handled once: the stop came after the cursor was saved"


async def test_exec_pipes_each_event_as_json_to_a_command(huddle_server, tmp_path):
    out = tmp_path / "events.jsonl"
    script = f"import os,sys; open({str(out)!r},'a').write(os.environ['HUDDLE_EVENT']+' '+sys.stdin.read())"
    command = f'{sys.executable} -c "{script}"'
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        await s1(http)
        done = run_once(huddle_server, tmp_path, "--agent", "alice", "--since", "0", "--exec", command)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    kinds = [line.split(" ", 1)[0] for line in lines]
    assert "thread.opened" in kinds
    assert all(json.loads(line.split(" ", 1)[1])["event"] == line.split(" ", 1)[0] for line in lines)


def test_a_server_that_is_not_running_is_a_clear_error(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "huddle.cli.main",
            "watch",
            "--agent",
            "alice",
            "--once",
            "--url",
            "http://127.0.0.1:9",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert done.returncode == 1
    assert "cannot reach the Huddle server at http://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr
