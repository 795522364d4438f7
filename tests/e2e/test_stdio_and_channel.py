"""`huddle stdio` and `huddle channel` as real subprocesses, driven over stdio."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client, StdioServerParameters

from helpers import ServerProcess, call


def stdio_params(*args: str, cwd: Path | None = None) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "huddle.cli.main", *args], cwd=cwd)


async def test_stdio_carries_scenario_s1_between_a_stdio_client_and_an_http_client(
    huddle_server: ServerProcess,
) -> None:
    params = stdio_params("stdio", "--data-dir", str(huddle_server.data_dir), "--no-start")
    async with Client(params) as alice, Client(huddle_server.mcp_url) as bob:
        assert alice.server_info is not None and alice.server_info.name == "huddle"
        await call(alice, "register_agent", name="alice")
        await call(bob, "register_agent", name="bob")
        first = await call(alice, "announce_work", agent_id="alice", subject="add field", target_files=["src/user.py"])
        assert first["verdict"] == "proceed"
        second = await call(bob, "announce_work", agent_id="bob", subject="rename", target_files=["src/user.py"])
        assert second["verdict"] == "consult"
        thread = second["thread_id"]
        await call(alice, "post_to_thread", thread_id=thread, agent_id="alice", type="context", content="mine first")
        await call(bob, "propose_resolution", thread_id=thread, agent_id="bob", summary="alice lands first")
        approved = await call(alice, "approve_resolution", thread_id=thread, agent_id="alice")
        assert approved["status"] == "resolved"
        replay = await call(alice, "get_updates", agent_id="alice", cursor=0)
        kinds = [e["event"] for e in replay["events"] if e["thread_id"] == thread]
        assert kinds[0] == "thread.opened" and kinds[-1] == "thread.status" and "thread.approval" in kinds
        # Errors come through the proxy exactly as the server words them.
        failed = await alice.call_tool("get_thread", {"thread_id": "T-999"})
        assert failed.is_error and "T-999" in failed.content[0].text  # type: ignore[union-attr]


async def test_stdio_starts_a_shared_server_when_none_runs(tmp_path: Path, repo: Path) -> None:
    data_dir = tmp_path / "fresh"
    data_dir.mkdir()
    # The server the proxy starts takes free ports (never 3100 or 1883, which may be in use).
    (data_dir / "config.toml").write_text("port = 0\nmqtt_port = 0\n")
    params = stdio_params("stdio", "--data-dir", str(data_dir), cwd=repo)
    try:
        async with Client(params) as client:
            registered = await call(client, "register_agent", name="solo")
            assert registered["agent_id"] == "solo"
        runtime = json.loads((data_dir / "server.json").read_text())
        assert httpx.get(runtime["url"] + "/health").json()["project"] == "repo"  # it outlives the proxy
    finally:
        runtime_file = data_dir / "server.json"
        if runtime_file.exists():
            os.kill(json.loads(runtime_file.read_text())["pid"], signal.SIGINT)
            with anyio.fail_after(20):
                while runtime_file.exists():  # the server removes it as its last act
                    await anyio.sleep(0.05)


async def _rpc(process: anyio.abc.Process, message: dict[str, Any]) -> None:
    assert process.stdin is not None
    await process.stdin.send((json.dumps(message) + "\n").encode())


async def test_channel_declares_claude_channel_and_pushes_the_agents_events(
    huddle_server: ServerProcess, repo: Path
) -> None:
    api = huddle_server.url + "/api/v1/tools/"
    for name in ("alice", "bob"):
        httpx.post(api + "register_agent", json={"name": name})
    args = [sys.executable, "-m", "huddle.cli.main", "channel", "--agent", "bob", "--url", huddle_server.url]
    async with await anyio.open_process(args, cwd=repo) as process:
        assert process.stdout is not None and process.stdin is not None
        buffer = b""

        async def read_message() -> dict[str, Any]:
            nonlocal buffer
            while b"\n" not in buffer:
                chunk = await process.stdout.receive()  # type: ignore[union-attr]
                buffer += chunk
            line, _, buffer = buffer.partition(b"\n")
            return json.loads(line)  # type: ignore[no-any-return]

        with anyio.fail_after(30):
            await _rpc(
                process,
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "claude-code", "version": "2.1.80"},
                    },
                },
            )
            init = await read_message()
            assert init["result"]["capabilities"]["experimental"] == {"claude/channel": {}}
            assert "reply" in init["result"]["instructions"]
            await _rpc(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            await _rpc(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
            tools = await read_message()
            assert [t["name"] for t in tools["result"]["tools"]] == ["reply"]

            first = httpx.post(
                api + "announce_work", json={"agent_id": "bob", "subject": "rename", "target_files": ["a.py"]}
            ).json()
            assert first["ok"]
            # The channel subscribes after initialization; announce until its stream is open and alice's
            # announce (which opens a thread with bob) arrives as a channel notification.
            opened = httpx.post(
                api + "announce_work", json={"agent_id": "alice", "subject": "fix", "target_files": ["a.py"]}
            ).json()["result"]
            message = await read_message()
            while message.get("method") != "notifications/claude/channel":
                message = await read_message()
            assert message["params"]["meta"]["thread_id"] == opened["thread_id"]
            assert message["params"]["meta"]["from_agent"] == "alice"
            assert "opened consultation" in message["params"]["content"]

            await _rpc(
                process,
                {
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "tools/call",
                    "params": {"name": "reply", "arguments": {"text": "go ahead", "thread_id": opened["thread_id"]}},
                },
            )
            reply = await read_message()
            while reply.get("id") != 3:
                reply = await read_message()
            assert not reply["result"].get("isError"), reply
        thread = httpx.post(api + "get_thread", json={"thread_id": opened["thread_id"]}).json()["result"]
        assert [(m["agent_id"], m["content"]) for m in thread["messages"]] == [("bob", "go ahead")]
        process.terminate()


class RawStdio:
    """`huddle stdio` driven with raw JSON-RPC lines, as a stdio-only client would."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str]):
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, "-m", "huddle.cli.main", "stdio", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, **env},
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def ask(self, message: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        self.send(json.dumps(message))
        return self.read(timeout)

    def read(self, timeout: float = 60) -> dict[str, Any]:
        import select

        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)  # bounds a hang, never waits it out
        assert ready, f"no answer within {timeout} s"
        return json.loads(self.process.stdout.readline())  # type: ignore[no-any-return]

    def initialize(self) -> dict[str, Any]:
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        answer = self.ask({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
        self.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        return answer

    def close(self) -> tuple[int, str]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = self.process.wait(30)
        assert self.process.stderr is not None
        return code, self.process.stderr.read().decode()


def parse_error(code: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": "not JSON (Expecting value: line 1 column 1 (char 0)); send one JSON-RPC message a line",
    }


def test_stdio_answers_every_line_and_survives_the_shared_server_dying(tmp_path: Path, repo: Path) -> None:
    data_dir = tmp_path / "shared"
    env = {"HUDDLE_PORT": "0", "HUDDLE_MQTT_PORT": "0", "HUDDLE_MQTT_BROKER": "off"}
    restarting = RawStdio("--data-dir", str(data_dir), cwd=repo, env=env)
    try:
        assert restarting.initialize()["result"]["serverInfo"]["name"] == "huddle"
        url = json.loads((data_dir / "server.json").read_text())["url"]
        pinned = RawStdio("--url", url, cwd=repo, env=env)
        pinned.initialize()
        restarting.send("this is not json")
        assert restarting.read() == {"jsonrpc": "2.0", "id": None, "error": parse_error(-32700)}

        os.kill(json.loads((data_dir / "server.json").read_text())["pid"], signal.SIGKILL)
        lost = pinned.ask({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        assert lost["id"] == 3 and lost["error"]["code"] == -32000
        assert f"the Huddle server at {url} is unreachable" in lost["error"]["message"]
        assert "huddle server start" in lost["error"]["message"]
        code, err = pinned.close()
        assert code == 0 and "Traceback" not in err

        carried_on = restarting.ask({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
        assert carried_on["id"] == 5 and any(t["name"] == "announce_work" for t in carried_on["result"]["tools"])
        code, err = restarting.close()
        assert code == 0 and "Traceback" not in err and "reconnected" in err
    finally:
        runtime = data_dir / "server.json"
        if runtime.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(json.loads(runtime.read_text())["pid"], signal.SIGINT)


def test_stdio_opens_a_new_session_when_the_server_no_longer_knows_its_own(server_factory: Any, repo: Path) -> None:
    # One MCP session per client address: a second one from this (loopback) address closes the proxy's.
    server: ServerProcess = server_factory("--mcp-sessions-per-client", "1")
    proxy = RawStdio("--url", server.url, cwd=repo, env={})
    try:
        proxy.initialize()
        register = {"name": "register_agent", "arguments": {"agent_id": "alice", "name": "alice"}}
        assert "result" in proxy.ask({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": register})
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "other", "version": "1"}}
        other = httpx.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
            headers={"accept": "application/json, text/event-stream"},
        )
        assert other.status_code == 200 and other.headers["mcp-session-id"]
        # The proxy's next request meets a 404; it opens a new session and the client never notices.
        updates = {"name": "get_updates", "arguments": {"agent_id": "alice"}}
        answer = proxy.ask({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": updates})
        assert answer["id"] == 3 and not answer["result"].get("isError"), answer
    finally:
        code, err = proxy.close()
    assert code == 0 and "Traceback" not in err and "no longer knew the MCP session" in err
