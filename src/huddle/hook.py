"""`huddle hook claude EVENT` (also `python -m huddle.hook claude EVENT`): the command form of the hooks.

Claude Code runs this once per hook with the hook input on stdin. It forwards the input to the
server's `POST /hooks/claude/EVENT` and prints the server's answer (the hook output) on stdout.
It must start fast and never hang the agent, so its import path is the standard library only,
and the whole call has a budget of about one second: when the server is down or slow it exits 0
with a one-line warning (`systemMessage`) and the tool call proceeds uncoordinated (fail open).

Server URL: `--url`, else `HUDDLE_URL`, else the `server.json` of the data dir (`--data-dir`,
`HUDDLE_DATA_DIR`, default `~/.huddle`). Agent: `HUDDLE_AGENT`, sent as `X-Huddle-Agent`.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.parse
from typing import Any

BUDGET_S = 1.0
DEFAULT_URL = "http://127.0.0.1:3100"


class Unreachable(Exception):
    """The server could not answer within the budget; the message says why in a few words."""


def server_url(url: str | None = None, data_dir: str | None = None) -> str:
    """The base URL of the running server (never a guess when server.json exists)."""
    if url or os.environ.get("HUDDLE_URL"):
        return str(url or os.environ["HUDDLE_URL"]).rstrip("/")
    directory = os.path.expanduser(data_dir or os.environ.get("HUDDLE_DATA_DIR") or "~/.huddle")
    try:
        with open(os.path.join(directory, "server.json"), encoding="utf-8") as f:
            return str(json.load(f)["url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL


def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    budget_s: float = BUDGET_S,
) -> tuple[int, bytes]:
    """One HTTP request with a wall-clock budget; raises Unreachable on refusal, timeout or a bad URL."""
    deadline = time.monotonic() + budget_s
    parts = urllib.parse.urlsplit(base + path)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unreachable(f"bad server URL {base!r}")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=budget_s)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.connect()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        conn.request(method, target, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        if time.monotonic() > deadline + 0.05:
            raise TimeoutError
        return response.status, data
    except TimeoutError:
        raise Unreachable(f"no answer from {base} within {budget_s:g} s") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach {base} ({exc.strerror or type(exc).__name__})") from None
    except http.client.HTTPException as exc:
        raise Unreachable(f"bad answer from {base} ({type(exc).__name__})") from None
    finally:
        conn.close()


def warning(text: str) -> dict[str, Any]:
    return {"systemMessage": f"huddle: {text}; continuing without coordination"}


def run_claude(event: str, stdin: bytes, url: str | None, data_dir: str | None) -> dict[str, Any]:
    """The hook output for one event; fails open with a warning, never raises for server trouble."""
    base = server_url(url, data_dir)
    headers = {}
    agent = os.environ.get("HUDDLE_AGENT", "").strip()
    if agent:
        headers["X-Huddle-Agent"] = agent
    try:
        status, data = request(base, "POST", f"/hooks/claude/{urllib.parse.quote(event)}", stdin, headers)
    except Unreachable as exc:
        return warning(str(exc))
    try:
        answer = json.loads(data) if data.strip() else {}
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        return warning(f"server answered HTTP {status}" + (f": {error}" if error else ""))
    return answer


USAGE = "usage: huddle hook claude EVENT [--url URL] [--data-dir DIR]  (hook input on stdin)"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options: dict[str, str | None] = {"--url": None, "--data-dir": None}
    positional = []
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE)
            print("Forwards a Claude Code hook to the Huddle server; fails open within about 1 s.")
            return 0
        if arg in options and args:
            options[arg] = args.pop(0)
        else:
            positional.append(arg)
    if len(positional) != 2 or positional[0] != "claude":
        print(USAGE, file=sys.stderr)
        return 2
    output = run_claude(positional[1], sys.stdin.buffer.read(), options["--url"], options["--data-dir"])
    if output:
        sys.stdout.write(json.dumps(output))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
