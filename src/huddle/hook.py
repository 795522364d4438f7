"""`huddle hook claude EVENT` (also `python -m huddle.hook claude EVENT`): the command form of the hooks.

Claude Code runs this once per hook with the hook input on stdin. It forwards the input to the
server's `POST /hooks/claude/EVENT` and prints the server's answer (the hook output) on stdout.
It must start fast and never hang the agent, so its import path is the standard library only,
and the whole call has a budget of about one second: when the server is down or slow it exits 0
with a one-line warning (`systemMessage`) and the tool call proceeds uncoordinated (fail open).

Server URL: `--url`, else `HUDDLE_URL`, else the `server.json` of the data dir (`--data-dir`,
`HUDDLE_DATA_DIR`, default `~/.huddle`). Agent: `HUDDLE_AGENT`, sent as `X-Huddle-Agent`.
Token mode: `HUDDLE_TOKEN`, sent as `Authorization: Bearer …` (every Huddle client command does so).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

# Deliberately not http.client / urllib / typing: together they import email, ssl and typing,
# which triples this process's start-up time. One HTTP/1.1 request over a socket is all we need.

BUDGET_S = 1.0
DEFAULT_URL = "http://127.0.0.1:3100"
Json = dict[str, object]


def auth_headers() -> dict[str, str]:
    """`Authorization: Bearer $HUDDLE_TOKEN` when the caller has a token (token mode), else nothing."""
    token = os.environ.get("HUDDLE_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


class Unreachable(Exception):
    """The server could not answer within the budget; the message says why in a few words."""


def data_dir_of(value: str | None = None) -> str:
    """The data dir: the given one, else HUDDLE_DATA_DIR, else ~/.huddle."""
    return os.path.expanduser(value or os.environ.get("HUDDLE_DATA_DIR") or "~/.huddle")


def runtime_url(data_dir: str | None = None) -> str | None:
    """The URL in the data dir's server.json (written by the running server), if any."""
    try:
        with open(os.path.join(data_dir_of(data_dir), "server.json"), encoding="utf-8") as f:
            return str(json.load(f)["url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def server_url(url: str | None = None, data_dir: str | None = None) -> str:
    """The base URL of the running server (never a guess when server.json exists)."""
    if url or os.environ.get("HUDDLE_URL"):
        return str(url or os.environ["HUDDLE_URL"]).rstrip("/")
    return runtime_url(data_dir) or DEFAULT_URL


def _split(base: str) -> tuple[str, int, str]:
    """http://host:port/prefix → (host, port, prefix); https is not needed for a local server."""
    if not base.startswith("http://"):
        raise Unreachable(f"unsupported server URL {base!r} (use http://host:port)")
    rest = base[len("http://") :]
    hostport, _, prefix = rest.partition("/")
    if hostport.startswith("["):  # [::1]:3100
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.partition(":")
    try:
        number = int(port) if port else 80
    except ValueError:
        raise Unreachable(f"bad port in server URL {base!r}") from None
    return host, number, ("/" + prefix).rstrip("/")


def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    budget_s: float = BUDGET_S,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request with a wall-clock budget; raises Unreachable on refusal, timeout or a bad answer."""
    deadline = time.monotonic() + budget_s
    host, port, prefix = _split(base)
    data = body or b""
    head = [f"{method} {prefix}{path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    try:
        with socket.create_connection((host, port), timeout=budget_s) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
            chunks = []
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except TimeoutError:
        raise Unreachable(f"no answer from {base} within {budget_s:g} s") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach {base} ({exc.strerror or type(exc).__name__})") from None
    raw = b"".join(chunks)
    header, _, payload = raw.partition(b"\r\n\r\n")
    try:
        status = int(header.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise Unreachable(f"bad answer from {base}") from None
    if b"transfer-encoding: chunked" in header.lower():
        payload = _dechunk(payload)
    return status, payload


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def warning(text: str) -> Json:
    return {"systemMessage": f"huddle: {text}; continuing without coordination"}


def run_claude(event: str, stdin: bytes, url: str | None, data_dir: str | None) -> Json:
    """The hook output for one event; fails open with a warning, never raises for server trouble."""
    base = server_url(url, data_dir)
    headers = auth_headers()
    agent = os.environ.get("HUDDLE_AGENT", "").strip()
    if agent:
        headers["X-Huddle-Agent"] = agent
    try:
        status, data = request(base, "POST", f"/hooks/claude/{event}", stdin, headers)
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
    if len(positional) != 2 or positional[0] != "claude" or not positional[1].isalpha():
        print(USAGE, file=sys.stderr)
        return 2
    output = run_claude(positional[1], sys.stdin.buffer.read(), options["--url"], options["--data-dir"])
    if output:
        sys.stdout.write(json.dumps(output))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
