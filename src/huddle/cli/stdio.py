"""`huddle stdio`: an MCP stdio server that is the shared HTTP server, for stdio-only clients (SPEC F-77).

A JSON-RPC pass-through: every line a client writes on stdin is POSTed as is to the shared server's
`/mcp` (Streamable HTTP, with the session id and protocol version headers), and every message the
server sends back (a JSON answer, the events of an SSE answer, the standalone GET stream opened
after `notifications/initialized`) is written to stdout unchanged. Messages are not re-modelled,
so protocol versions, capabilities, notifications and errors are exactly the server's.

Failures are answered, never left hanging: a line that is not JSON gets a -32700 parse error; a
request the server cannot be reached for gets a -32000 error saying so and what to do. When the
server went away the proxy starts it again (unless `--url` or `--no-start`), replays the client's
`initialize` on a fresh session and retries the request once, so the client carries on. When the
server answers 404 for the session (it expired or was evicted, or behind a load balancer the
instance holding it stopped), the proxy does the same without restarting anything: the MCP
specification's answer to a 404 is a new session, which a stdio client cannot open itself. Closing
stdin ends the proxy cleanly (exit 0, no traceback).

If no server answers at start, one is started (`huddle server start` as a detached process on the
same data dir, outliving this proxy so other clients keep it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from huddle.cli.remote import UNREACHABLE, RemoteError
from huddle.hook import auth_headers, data_dir_of, runtime_url

log = logging.getLogger("huddle.stdio")
START_TIMEOUT_S = 30.0


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except UNREACHABLE:
        return False


def spawn_server(data_dir: Path) -> None:
    """Starts `huddle server start` detached from this process (its own session), logging to the data dir.

    One function so it can later hand over to `huddle server start --daemon`.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "server.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "huddle.cli.main", "server", "start", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def ensure_server(url: str | None, data_dir: Path, *, start: bool = True) -> str:
    """The URL of a healthy shared server, starting one on `data_dir` if none runs."""
    if url:
        if not _healthy(url.rstrip("/")):
            raise RemoteError(f"no Huddle server answers at {url}; start one with `huddle server start`")
        return url.rstrip("/")
    found = runtime_url(str(data_dir))
    if found and _healthy(found):
        return found
    if not start:
        raise RemoteError(f"no Huddle server runs on {data_dir}; start one with `huddle server start`")
    spawn_server(data_dir)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = runtime_url(str(data_dir))
        if found and _healthy(found):
            return found
        time.sleep(0.1)
    raise RemoteError(f"started a Huddle server on {data_dir} but it did not answer; see {data_dir / 'server.log'}")


PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
SERVER_UNREACHABLE = -32000
DRAIN_S = 5.0
Json = dict[str, Any]


def rpc_error(request_id: Any, code: int, message: str) -> Json:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


class Relay:
    """One stdio client's pass-through to the shared server."""

    def __init__(self, url: str, data_dir: Path, *, restart: bool):
        self.url = url
        self.data_dir = data_dir
        self.restart = restart
        self.session: str | None = None
        self.version: str | None = None
        self.initialize: Json | None = None
        self.generation = 0  # bumped at each server restart, so concurrent failures restart once
        self.write_lock = anyio.Lock()
        self.recover_lock = anyio.Lock()
        self.stream_started = False
        self.out = anyio.wrap_file(sys.stdout.buffer)

    async def emit(self, message: Any) -> None:
        data = (message if isinstance(message, str) else json.dumps(message)).strip().encode() + b"\n"
        async with self.write_lock:
            await self.out.write(data)
            await self.out.flush()

    def adopt_session(self, response: httpx.Response) -> None:
        # Only a successful answer assigns the session (an error answer may carry a throwaway id).
        if response.status_code < 300 and response.headers.get("mcp-session-id"):
            self.session = response.headers["mcp-session-id"]

    def headers(self) -> dict[str, str]:
        out = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json", **auth_headers()}
        if self.session:
            out["mcp-session-id"] = self.session
        if self.version:
            out["mcp-protocol-version"] = self.version
        return out

    async def run(self) -> None:
        stdin = anyio.wrap_file(sys.stdin.buffer)
        timeout = httpx.Timeout(30.0, read=None)  # a tool call may wait (acquire_lock wait_s)
        async with httpx.AsyncClient(timeout=timeout) as http, anyio.create_task_group() as tg:
            self.http = http
            async with anyio.create_task_group() as requests:
                async for line in stdin:
                    if not line.strip():
                        continue
                    try:
                        message = json.loads(line)
                    except (ValueError, UnicodeDecodeError) as exc:
                        await self.emit(
                            rpc_error(None, PARSE_ERROR, f"not JSON ({exc}); send one JSON-RPC message a line")
                        )
                        continue
                    if not isinstance(message, dict):
                        await self.emit(rpc_error(None, INVALID_REQUEST, "send one JSON-RPC object per line"))
                        continue
                    method = message.get("method")
                    if method == "initialize":
                        self.initialize = message
                        await self.forward(message)  # the session id must exist before anything else
                    elif method is not None and "id" in message:
                        requests.start_soon(self.forward, message)
                    else:
                        await self.forward(message)
                    if method == "notifications/initialized" and not self.stream_started:
                        self.stream_started = True
                        tg.start_soon(self.listen)
                # The client closed stdin: let answers in progress go out, briefly, then stop.
                requests.cancel_scope.deadline = anyio.current_time() + DRAIN_S
            tg.cancel_scope.cancel()
            with anyio.move_on_after(2):
                await self.close_session()

    async def forward(self, message: Json, *, retry: bool = True) -> None:
        """POSTs one client message; relays what comes back; answers the request itself on failure."""
        request_id = message.get("id") if message.get("method") is not None else None
        generation = self.generation
        session_lost = answered = False
        try:
            async with self.http.stream(
                "POST", f"{self.url}/mcp", content=json.dumps(message), headers=self.headers()
            ) as response:
                if response.status_code == 404 and retry and self.session and message.get("method") != "initialize":
                    session_lost = True
                    await response.aread()
                else:
                    self.adopt_session(response)
                    answered = await self.relay(response, request_id)
        except httpx.TransportError as exc:
            if retry and await self.recover(generation):
                await self.forward(message, retry=False)
                return
            log.warning("server unreachable at %s: %s", self.url, exc)
            if request_id is not None:
                await self.emit(rpc_error(request_id, SERVER_UNREACHABLE, self.unreachable_text(exc)))
            return
        if session_lost:
            # Retried once on a new session; a second 404 is relayed to the client as the server words it.
            if await self.recover(generation, restart_server=False):
                await self.forward(message, retry=False)
            elif request_id is not None:
                text = f"the Huddle server at {self.url} no longer knows this MCP session; restart this MCP client"
                await self.emit(rpc_error(request_id, SERVER_UNREACHABLE, text))
            return
        if request_id is not None and not answered:
            await self.emit(rpc_error(request_id, INTERNAL_ERROR, "the Huddle server closed the answer early; retry"))

    async def relay(self, response: httpx.Response, request_id: Any) -> bool:
        """Writes the server's messages to stdout; True once the request (if any) got its answer."""
        kind = response.headers.get("content-type", "")
        if "text/event-stream" in kind:
            answered = False
            async for data in sse_data(response):
                answered = self.note(data, request_id) or answered
                await self.emit(data)
            return answered
        body = await response.aread()
        if request_id is None and response.status_code < 400:
            return True
        try:
            parsed = json.loads(body) if body.strip() else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict) and parsed.get("jsonrpc") == "2.0":
            self.note(body.decode(), request_id)
            if request_id is not None and parsed.get("id") is None and "error" in parsed:
                parsed["id"] = request_id  # a transport-level error answers this request
            await self.emit(parsed)
            return True
        if request_id is not None:
            text = f"the Huddle server answered HTTP {response.status_code} without a JSON-RPC message"
            await self.emit(rpc_error(request_id, INTERNAL_ERROR, text))
            return True
        log.warning("server answered HTTP %s to a notification", response.status_code)
        return True

    def note(self, data: str, request_id: Any) -> bool:
        """Remembers the negotiated protocol version; True when `data` answers `request_id`."""
        try:
            message = json.loads(data)
        except ValueError:
            return False
        if not isinstance(message, dict):
            return False
        result = message.get("result")
        if self.initialize is not None and message.get("id") == self.initialize.get("id") and isinstance(result, dict):
            self.version = str(result.get("protocolVersion") or self.version or "") or None
        return request_id is not None and message.get("id") == request_id and bool({"result", "error"} & set(message))

    async def recover(self, generation: int, *, restart_server: bool = True) -> bool:
        """The client's session replayed on a new one: after a transport failure on a server started again
        (if allowed), or after a 404 (`restart_server=False`) on the same URL."""
        async with self.recover_lock:
            if self.generation != generation:
                return True  # another request already brought it back
            if self.initialize is None or (restart_server and not self.restart):
                return False
            if restart_server:
                try:
                    self.url = await anyio.to_thread.run_sync(lambda: ensure_server(None, self.data_dir))
                except RemoteError as exc:
                    log.warning("%s", exc)
                    return False
            self.session = None
            self.version = None
            try:
                for message in (self.initialize, {"jsonrpc": "2.0", "method": "notifications/initialized"}):
                    async with self.http.stream(
                        "POST", f"{self.url}/mcp", content=json.dumps(message), headers=self.headers()
                    ) as response:
                        self.adopt_session(response)
                        async for data in messages(response):
                            self.note(data, None)
            except httpx.TransportError:
                return False
            if restart_server:
                log.warning("the Huddle server went away; reconnected to %s with a new session", self.url)
            else:
                log.warning("the Huddle server at %s no longer knew the MCP session; opened a new one", self.url)
            self.generation += 1
            return True

    def unreachable_text(self, exc: Exception) -> str:
        what = f"the Huddle server at {self.url} is unreachable ({type(exc).__name__})"
        if self.restart:
            log_file = self.data_dir / "server.log"
            return f"{what} and could not be restarted; see {log_file}, start it with `huddle server start`, retry"
        return f"{what}; start it (`huddle server start`), then retry or restart this MCP client"

    async def listen(self) -> None:
        """Relays the standalone GET stream (server notifications and requests); reopens it after a failure."""
        delay = 0.5
        while True:
            try:
                async with self.http.stream("GET", f"{self.url}/mcp", headers=self.headers()) as response:
                    if response.status_code == 405:
                        return  # the server offers no standalone stream
                    if response.status_code == 200:
                        delay = 0.5
                        async for data in sse_data(response):
                            await self.emit(data)
            except httpx.TransportError:
                pass
            await anyio.sleep(delay)  # not a test wait: a reconnect back-off
            delay = min(delay * 2, 10.0)

    async def close_session(self) -> None:
        if self.session:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.delete(f"{self.url}/mcp", headers=self.headers())


async def sse_data(response: httpx.Response) -> Any:
    """The `data` of each event of an SSE response."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
            lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


async def messages(response: httpx.Response) -> Any:
    """The messages of a JSON or SSE answer."""
    if "text/event-stream" in response.headers.get("content-type", ""):
        async for data in sse_data(response):
            yield data
        return
    body = await response.aread()
    if body.strip():
        yield body.decode(errors="replace")


def run_stdio(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="huddle stdio: %(message)s")
    data_dir = Path(data_dir_of(args.data_dir))
    url = ensure_server(args.url, data_dir, start=not args.no_start)
    relay = Relay(url, data_dir, restart=not (args.url or args.no_start))
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        anyio.run(relay.run)
    return 0
