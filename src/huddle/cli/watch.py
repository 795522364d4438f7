"""`huddle watch --agent ID`: a sidecar that prints — or hands to a command — the events an agent must see.

It follows `GET /api/events?agent=ID` (SSE) and resumes from the agent's last cursor, which it keeps in
`<data-dir>/watch/<agent>.cursor`, so a watcher that was stopped, or lost its connection, picks up
exactly where it left off: push is a hint, the event log behind it is the truth (F-65, F-66).

    huddle watch --agent bob                     # one readable line per event
    huddle watch --agent bob --json              # one JSON object per line
    huddle watch --agent bob --exec ./on-event   # run a command per event, the JSON on its stdin
    huddle watch --agent bob --once              # print what is pending, then exit

Delivery is at-least-once. The cursor is saved right after each event is printed or its `--exec`
command has run, never before (an event is not skipped because the watcher died handling it), and a
stop — Ctrl-C or SIGTERM — waits until that pair is done, so a stopped watcher resumes after the
last event it handled. Only a crash between the two (kill -9, power loss) hands that one event
over again on restart; consumers that must not act twice can key on its `cursor`. A command that
fails is reported on stderr and the watcher moves on. The agent's own actions are skipped
unless `--include-own`. Stdlib and httpx only: it starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from huddle.hook import auth_headers

DEFAULT_URL = "http://127.0.0.1:3100"
READ_TIMEOUT_S = 60.0  # the server pings every 15 s; silence this long means the connection is dead
MAX_BACKOFF_S = 5.0


class WatchError(Exception):
    pass


@contextlib.contextmanager
def stop_after_this() -> Iterator[None]:
    """Holds SIGTERM and Ctrl-C until the block is done, then stops as they asked.

    Python handlers, not a blocked signal mask: a mask would be inherited by the `--exec` command.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGINT in caught:
        raise KeyboardInterrupt
    if caught:
        raise SystemExit(128 + signal.SIGTERM)


def add_watch_parser(commands: Any) -> None:
    watch = commands.add_parser(
        "watch",
        help="print or forward the events an agent must see (sidecar)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch.add_argument("--agent", required=True, help="the agent whose events to follow")
    watch.add_argument("--json", action="store_true", help="one JSON object per line instead of readable text")
    watch.add_argument(
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        help="run CMD (through the shell) per event with the event JSON on stdin;"
        " env HUDDLE_EVENT, HUDDLE_CURSOR, HUDDLE_AGENT",
    )
    watch.add_argument("--once", action="store_true", help="print the pending events and exit")
    watch.add_argument(
        "--since",
        type=int,
        metavar="CURSOR",
        help="start after this cursor instead of the saved one (0 = the whole history)",
    )
    watch.add_argument("--kinds", help="only these kinds, comma-separated (thread.opened, thread.*, lock.*)")
    watch.add_argument("--include-own", action="store_true", help="also show the agent's own actions")
    watch.add_argument("--url", help=f"server URL (default: from the data dir's server.json, else {DEFAULT_URL})")
    watch.add_argument(
        "--data-dir", help="data dir holding server.json and the saved cursors [env HUDDLE_DATA_DIR; default ~/.huddle]"
    )


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("HUDDLE_DATA_DIR") or "~/.huddle").expanduser()


def server_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    runtime = data_dir(args) / "server.json"
    try:
        return str(json.loads(runtime.read_text())["url"]).rstrip("/")
    except (OSError, ValueError, KeyError):
        return DEFAULT_URL


class CursorFile:
    """The last cursor handled for one agent; written atomically after every event."""

    def __init__(self, root: Path, agent: str):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in agent)
        self.path = root / "watch" / f"{safe}.cursor"

    def load(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def save(self, cursor: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(cursor))
        os.replace(tmp, self.path)


def sse_frames(lines: Iterator[str]) -> Iterator[tuple[str, int | None, str]]:
    """Parses an SSE stream into ("event", id, data) and ("comment", None, text) items."""
    data: list[str] = []
    event_id: int | None = None
    for line in lines:
        if line == "":
            if data:
                yield "event", event_id, "\n".join(data)
            data, event_id = [], None
        elif line.startswith(":"):
            yield "comment", None, line[1:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("id:"):
            value = line[3:].strip()
            event_id = int(value) if value.isascii() and value.isdigit() else None


def summary(event: dict[str, Any]) -> str:
    """One readable line: when, cursor, kind, thread, who, and the most telling field."""
    parts = [str(event.get("ts", "")), f"#{event.get('cursor')}", str(event.get("event"))]
    if event.get("thread_id"):
        parts.append(str(event["thread_id"]))
    if event.get("agent_id"):
        parts.append(f"by {event['agent_id']}")
    for key in ("subject", "content", "summary", "status", "path", "task_id", "reason"):
        value = event.get(key)
        if value:
            text = str(value).replace("\n", " ")
            parts.append(f"— {text[:160]}")
            break
    return " ".join(parts)


class Watcher:
    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr):
        self.args = args
        self.out = out
        self.err = err
        self.url = server_url(args)
        self.cursors = CursorFile(data_dir(args), args.agent)
        self.cursor: int | None = args.since if args.since is not None else self.cursors.load()

    def handle(self, cursor: int, raw: str) -> None:
        """Delivers one event, then saves its cursor; a stop requested meanwhile waits for both."""
        with stop_after_this():
            self._deliver(cursor, raw)
            self.cursor = cursor
            self.cursors.save(cursor)

    def _deliver(self, cursor: int, raw: str) -> None:
        if self.args.exec_cmd:
            event = json.loads(raw)
            env = {
                **os.environ,
                "HUDDLE_EVENT": str(event.get("event", "")),
                "HUDDLE_CURSOR": str(cursor),
                "HUDDLE_AGENT": self.args.agent,
            }
            done = subprocess.run(self.args.exec_cmd, shell=True, input=raw.encode() + b"\n", env=env, check=False)
            if done.returncode != 0:
                print(
                    f"huddle watch: command exited with {done.returncode} for event #{cursor}; moving on",
                    file=self.err,
                    flush=True,
                )
        elif self.args.json:
            print(raw, file=self.out, flush=True)
        else:
            print(summary(json.loads(raw)), file=self.out, flush=True)

    def follow_once(self) -> bool:
        """One SSE connection; True when `--once` is satisfied (the replay is done)."""
        import httpx  # only here: `huddle watch --help` stays instant

        params = {"agent": self.args.agent}
        if not self.args.include_own:
            params["exclude_self"] = "1"
        if self.args.kinds:
            params["kinds"] = self.args.kinds
        headers = {"Accept": "text/event-stream", **auth_headers()}
        if self.cursor is not None:
            headers["Last-Event-ID"] = str(self.cursor)
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
        with httpx.stream("GET", self.url + "/api/events", params=params, headers=headers, timeout=timeout) as resp:
            if resp.status_code != 200:
                resp.read()
                try:
                    message = resp.json().get("error", resp.text)
                except ValueError:
                    message = resp.text[:200]
                raise WatchError(f"{self.url}/api/events answered {resp.status_code}: {message}")
            if self.cursor is None:
                self.cursor = int(resp.headers.get("x-huddle-cursor", "0"))
                self.cursors.save(self.cursor)
                print(
                    f"huddle watch: following {self.args.agent} from cursor {self.cursor} (now);"
                    " --since 0 replays the whole history",
                    file=self.err,
                    flush=True,
                )
            for kind, cursor, text in sse_frames(resp.iter_lines()):
                if kind == "event" and cursor is not None:
                    if self.cursor is not None and cursor <= self.cursor:
                        continue
                    self.handle(cursor, text)
                elif kind == "comment" and text.startswith("live") and self.args.once:
                    return True
        return False

    def run(self) -> int:
        import httpx

        backoff = 0.2
        while True:
            try:
                if self.follow_once():
                    return 0
                backoff = 0.2
            except httpx.InvalidURL as exc:  # not an HTTPError, and retrying cannot fix it
                raise WatchError(f"bad server URL {self.url!r} ({exc}); pass --url http://HOST:PORT") from None
            except httpx.HTTPError as exc:
                if self.args.once:
                    raise WatchError(
                        f"cannot reach the Huddle server at {self.url} ({exc}); is it running?"
                        " Start it with `huddle server start`, or pass --url"
                    ) from None
                print(
                    f"huddle watch: lost {self.url} ({exc.__class__.__name__}); reconnecting from cursor {self.cursor}",
                    file=self.err,
                    flush=True,
                )
                self.url = server_url(self.args)  # a restarted server may listen on another port
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def run_watch(args: argparse.Namespace) -> int:
    try:
        return Watcher(args).run()
    except WatchError as exc:
        print(f"huddle watch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
