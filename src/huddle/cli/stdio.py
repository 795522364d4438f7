"""`huddle stdio`: an MCP stdio server that is the shared HTTP server, for stdio-only clients (SPEC F-77).

A faithful JSON-RPC pass-through built from the official SDK's two transports: every message a
client writes on stdin goes to the shared server's `/mcp` over Streamable HTTP, and every message
the server sends (responses, notifications on the standalone stream, server requests) comes back
on stdout. Nothing is re-implemented or re-interpreted in between, so protocol versions,
capabilities, notifications and errors are exactly the server's, and stdio and HTTP clients share
one coordinator. Why not a session-level proxy (client session + low-level server)? It would have
to mirror every request type, capability and notification by hand and lag behind the SDK.

If no server answers, one is started (`huddle server start` as a detached process on the same
data dir, outliving this proxy so other clients keep it).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server

from huddle.cli.remote import UNREACHABLE, RemoteError
from huddle.hook import data_dir_of, runtime_url

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


async def proxy(mcp_url: str) -> None:
    """Pipes stdin → server and server → stdout until the client closes stdin."""
    async with (
        stdio_server() as (client_in, client_out),
        streamable_http_client(mcp_url) as (server_in, server_out),
        anyio.create_task_group() as tg,
    ):

        async def pipe(source: Any, sink: Any, side: str) -> None:
            async for message in source:
                if isinstance(message, Exception):
                    log.warning("unreadable message from the %s: %s", side, message)
                    continue
                await sink.send(message)
            tg.cancel_scope.cancel()  # one side is gone: so is the proxy

        tg.start_soon(pipe, client_in, server_out, "client")
        tg.start_soon(pipe, server_in, client_out, "server")


def run_stdio(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="huddle stdio: %(message)s")
    url = ensure_server(args.url, Path(data_dir_of(args.data_dir)), start=not args.no_start)
    anyio.run(proxy, url + "/mcp")
    return 0
