"""Claude Code hook cost per edit: the command hook (process start included) and the http hook.

Against a real server with two agents (the other one holds an active intent and an exclusive
lease elsewhere, so every PreToolUse really checks leases, intents and in-flight edits), times:

- `command`: wall time of `python -m huddle.hook claude PreToolUse` per edit, as Claude Code runs
  it (a new process reading the payload on stdin) — interpreter start, imports, HTTP, answer;
- `command_console_script`: the same through the `huddle hook claude PreToolUse` console script;
- `interpreter_floor`: `python -c "import json, socket"`, what any Python hook pays to start;
- `http`: the http hook's POST /hooks/claude/PreToolUse on a kept-alive connection (server time
  plus the loopback round trip), as Claude Code's http hooks send it.

Each edit is followed by its PostToolUse (not timed), so in-flight marks come and go as in a session.

    python benchmarks/hooks.py           # 200 edits per form
    python benchmarks/hooks.py --quick   # CI: 10 edits
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from _harness import huddle_server, machine, summarise

SESSION = "be4c0000-0000-4000-8000-00000000bench"


def payload(event: str, repo: Path, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "session_id": SESSION,
        "transcript_path": "/tmp/bench.jsonl",
        "cwd": str(repo),
        "hook_event_name": event,
        "tool_name": "Edit",
        "tool_input": {"file_path": str(repo / f"src/file_{n}.py"), "old_string": "x = 1\n", "new_string": "x = 2\n"},
        **fields,
    }


def time_processes(command: list[str], bodies: list[bytes], env: dict[str, str]) -> dict[str, Any]:
    """Wall time per process (what the agent waits) and its CPU time (user + sys), which a busy
    machine inflates far less than wall time: both, so runs on a loaded box stay comparable."""
    wall, cpu = [], []
    for body in bodies:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, input=body, capture_output=True, env=env, check=False)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0 or b"systemMessage" in done.stdout:
            raise SystemExit(f"hook failed: {done.stdout!r} {done.stderr!r}")
    return {**summarise(wall), "cpu_p50_ms": round(sorted(cpu)[len(cpu) // 2] * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    args = parser.parse_args()
    edits = 10 if args.quick else 200
    report: dict[str, Any] = {"benchmark": "hooks", "machine": machine(), "quick": args.quick, "edits": edits}
    with huddle_server() as server:
        repo = server.data_dir.parent / "repo"
        (repo / "src").mkdir()
        for n in range(edits * 2):
            (repo / f"src/file_{n}.py").write_text("x = 1\n")
        api = server.url + "/api/v1/tools/"
        httpx.post(api + "register_agent", json={"name": "other"})
        httpx.post(api + "announce_work", json={"agent_id": "other", "subject": "s", "target_files": ["lib/a.py"]})
        httpx.post(api + "acquire_lock", json={"agent_id": "other", "path": "lib/", "mode": "exclusive"})
        start = payload("SessionStart", repo, 0, source="startup")
        httpx.post(server.url + "/hooks/claude/SessionStart", json=start).raise_for_status()

        env = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_")}
        env["HUDDLE_DATA_DIR"] = str(server.data_dir)

        def bodies(offset: int) -> list[bytes]:
            return [json.dumps(payload("PreToolUse", repo, offset + n)).encode() for n in range(edits)]

        module = [sys.executable, "-m", "huddle.hook", "claude", "PreToolUse"]
        report["command"] = time_processes(module, bodies(0), env)
        script = shutil.which("huddle", path=str(Path(sys.executable).parent))
        if script:
            console = [script, "hook", "claude", "PreToolUse"]
            report["command_console_script"] = time_processes(console, bodies(0), env)
        floor = [sys.executable, "-c", "import json, socket"]
        report["interpreter_floor"] = time_processes(floor, [b""] * edits, env)

        parts = urllib.parse.urlsplit(server.url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
        timings = []
        for n in range(edits):
            body = json.dumps(payload("PreToolUse", repo, edits + n)).encode()
            started = time.perf_counter()
            conn.request("POST", "/hooks/claude/PreToolUse", body, {"Content-Type": "application/json"})
            answer = conn.getresponse().read()
            timings.append(time.perf_counter() - started)
            if b"permissionDecision" in answer:
                raise SystemExit(f"unexpected decision: {answer!r}")
            post = payload("PostToolUse", repo, edits + n, tool_response={"structuredPatch": []})
            conn.request(
                "POST", "/hooks/claude/PostToolUse", json.dumps(post).encode(), {"Content-Type": "application/json"}
            )
            conn.getresponse().read()
        conn.close()
        report["http"] = summarise(timings)
    report["load_average"] = os.getloadavg()
    report["targets"] = {"command_p50_ms": 40, "http_p50_ms": 5}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
