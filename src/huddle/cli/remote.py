"""Talking to a running server from the CLI: find its URL, call an operation over REST, print tables.

The URL comes from `--url`, else the data dir's `server.json` (written by `huddle server start`),
else the default address. Operations are called as `POST /api/v1/tools/{name}`, so the CLI gets
exactly the validation and error messages agents get. Stdlib and httpx only: it starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from huddle.hook import auth_headers

DEFAULT_URL = "http://127.0.0.1:3100"
TIMEOUT_S = 30.0
# What a request to a server URL can fail with: httpx.InvalidURL (a malformed --url or host such as
# `http://[::1`) is not an httpx.HTTPError, yet it is the same user mistake — one line, no traceback.
UNREACHABLE = (httpx.HTTPError, httpx.InvalidURL)


class RemoteError(Exception):
    """A message for the CLI user; `main` prints it and exits 1."""


def add_remote_options(parser: argparse.ArgumentParser, *, on_action: bool = False) -> None:
    """--url, --data-dir and --json, accepted before or after the action (`huddle tasks --json list`).

    On an action's parser the defaults are suppressed, so they do not overwrite the values
    given before the action (argparse fills sub-parser defaults last).
    """
    default: Any = argparse.SUPPRESS if on_action else None
    parser.add_argument(
        "--url", default=default, help=f"server URL (default: from the data dir's server.json, else {DEFAULT_URL})"
    )
    parser.add_argument(
        "--data-dir", default=default, help="data dir holding server.json [env HUDDLE_DATA_DIR; default ~/.huddle]"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if on_action else False,
        help="print the raw JSON result instead of a table",
    )


def server_url(args: argparse.Namespace) -> str:
    if getattr(args, "url", None):
        return str(args.url).rstrip("/")
    data_dir = Path(getattr(args, "data_dir", None) or os.environ.get("HUDDLE_DATA_DIR") or "~/.huddle").expanduser()
    try:
        return str(json.loads((data_dir / "server.json").read_text())["url"]).rstrip("/")
    except (OSError, ValueError, KeyError):
        return DEFAULT_URL


def call(args: argparse.Namespace, operation: str, **arguments: Any) -> dict[str, Any]:
    """Calls one operation and returns its result; raises RemoteError with the server's message."""
    url = server_url(args)
    body = {k: v for k, v in arguments.items() if v is not None}
    try:
        response = httpx.post(f"{url}/api/v1/tools/{operation}", json=body, headers=auth_headers(), timeout=TIMEOUT_S)
    except httpx.InvalidURL as exc:
        raise RemoteError(f"bad server URL {url!r} ({exc}); pass --url http://HOST:PORT") from None
    except httpx.HTTPError as exc:
        raise RemoteError(
            f"no Huddle server answers at {url} ({type(exc).__name__}); start one with "
            "`huddle server start`, or pass --url / --data-dir"
        ) from None
    try:
        envelope = response.json()
    except ValueError:
        raise RemoteError(f"{url} answered HTTP {response.status_code} without JSON; is it a Huddle server?") from None
    if not isinstance(envelope, dict) or not envelope.get("ok"):
        message = envelope.get("error") if isinstance(envelope, dict) else None
        raise RemoteError(str(message or f"{operation} failed with HTTP {response.status_code}"))
    result = envelope.get("result")
    return result if isinstance(result, dict) else {"result": result}


def duration(seconds: float | None) -> str:
    """12 → 12s, 754 → 12m34s, 7300 → 2h01m."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str | Callable[[dict[str, Any]], Any]]],
    *,
    max_width: int = 60,
) -> str:
    """A plain aligned text table; `columns` are (header, key or function of the row)."""
    cells = [[h.upper() for h, _ in columns]]
    for row in rows:
        line = []
        for _, source in columns:
            value = source(row) if callable(source) else row.get(source)
            text = (
                "-"
                if value is None or value == "" or value == []
                else (", ".join(map(str, value)) if isinstance(value, list) else str(value))
            )
            text = " ".join(text.split())
            line.append(text if len(text) <= max_width else text[: max_width - 1] + "…")
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def emit(args: argparse.Namespace, result: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> int:
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0
