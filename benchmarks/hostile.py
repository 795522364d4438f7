"""Hostile load: abandoned MCP sessions and slow clients against a real server; memory and descriptors.

Opens N MCP sessions with `initialize` and never closes them, then M slow clients (half send part of
their headers, half a body shorter than its Content-Length), and reports the server's resident
memory and open descriptors at each step, whether a new client is still served, and how long the
slow clients hold their descriptors. Prints JSON; asserts nothing.

    python benchmarks/hostile.py             # 2,000 sessions, 200 slow clients
    python benchmarks/hostile.py --quick     # CI: 60 sessions, 20 slow clients
    python benchmarks/hostile.py --legacy    # no new flags: run it with an older Huddle to compare
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from typing import Any

import httpx

from _harness import Server, huddle_server, machine
from huddle.testing import MCP_HEADERS, initialize_request

INITIALIZE = initialize_request("leaky")
HEADERS = MCP_HEADERS


def usage(pid: int) -> dict[str, int]:
    """Resident memory (KiB) and open descriptors of a process, from /proc."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def abandon_sessions(server: Server, count: int) -> dict[str, Any]:
    codes: dict[str, int] = {}
    with httpx.Client(timeout=30) as http:
        for _ in range(count):
            code = str(http.post(server.mcp_url, json=INITIALIZE, headers=HEADERS).status_code)
            codes[code] = codes.get(code, 0) + 1
    return codes


def new_client_served(server: Server) -> int:
    return httpx.post(server.mcp_url, json=INITIALIZE, headers=HEADERS, timeout=30).status_code


def open_slow_clients(server: Server, count: int) -> list[socket.socket]:
    port = int(server.url.rsplit(":", 1)[1])
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if index % 2:
            sock.sendall(b"POST /api/v1/tools/list_agents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        else:
            sock.sendall(
                b"POST /api/v1/tools/list_agents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
        sockets.append(sock)
    return sockets


def closed_by_server(sockets: list[socket.socket]) -> int:
    closed = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            data = sock.recv(4096)
            closed += data == b"" or data.startswith(b"HTTP/1.1 408")
        except BlockingIOError:
            pass
    return closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    parser.add_argument("--legacy", action="store_true", help="pass no new settings (compare with old Huddle)")
    parser.add_argument("--watch-s", type=float, default=None, help="how long to watch slow clients (seconds)")
    args = parser.parse_args()
    sessions, slow = (60, 20) if args.quick else (2000, 200)
    extra = [] if args.legacy else ["--header-timeout-s", "2", "--body-timeout-s", "2"]
    watch_s = args.watch_s if args.watch_s is not None else (6.0 if args.quick else 10.0)
    out: dict[str, Any] = {"benchmark": "hostile", "machine": machine(), "quick": args.quick, "legacy": args.legacy}
    with huddle_server(*extra) as server:
        pid = server.process.pid
        out["baseline"] = usage(pid)
        started = time.perf_counter()
        out["abandoned_sessions"] = {"count": sessions, "status_codes": abandon_sessions(server, sessions)}
        out["abandoned_sessions"]["wall_s"] = round(time.perf_counter() - started, 2)
        after = usage(pid)
        out["after_sessions"] = after
        out["rss_kib_per_session"] = round((after["rss_kib"] - out["baseline"]["rss_kib"]) / sessions, 2)
        out["new_client_status_after_sessions"] = new_client_served(server)

        before_slow = usage(pid)
        sockets = open_slow_clients(server, slow)
        out["slow_clients"] = {"count": slow}
        out["new_client_status_during_slow"] = httpx.get(server.url + "/health", timeout=30).status_code
        started = time.perf_counter()
        released_after: float | None = None
        peak = 0
        while time.perf_counter() - started < watch_s:
            held = usage(pid)["fds"] - before_slow["fds"]
            peak = max(peak, held)
            if peak >= slow // 2 and held <= 0:
                released_after = round(time.perf_counter() - started, 2)
                break
            time.sleep(0.1)
        out["slow_clients"]["peak_fds_held"] = peak
        out["slow_clients"]["fds_after_watch"] = usage(pid)["fds"] - before_slow["fds"]
        out["slow_clients"]["descriptors_released_after_s"] = released_after
        out["slow_clients"]["closed_by_server"] = closed_by_server(sockets)
        out["slow_clients"]["watched_s"] = watch_s
        for sock in sockets:
            sock.close()
        out["final"] = usage(pid)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
