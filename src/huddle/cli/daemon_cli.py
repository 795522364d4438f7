"""Argument wiring of `huddle server start|stop|restart|status|logs` (the work is in daemon.py)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huddle.cli import daemon
from huddle.cli.runtime import data_dir_of, read_runtime, read_secrets
from huddle.settings import SECRET_SETTINGS, env_name, load_settings


def add_daemon_parsers(start: argparse.ArgumentParser, actions: Any) -> None:
    start.add_argument(
        "--daemon", action="store_true", help="run in the background; logs go to server.log in the data dir"
    )
    # The daemon runs this same command in a new session; the flag only keeps its log off stderr.
    start.add_argument("--daemon-child", action="store_true", help=argparse.SUPPRESS)
    # Names (never values) of flags the daemon passed through its environment (they may hold a password).
    start.add_argument("--flags-in-env", default="", help=argparse.SUPPRESS)
    data_help = "data dir of the server [env HUDDLE_DATA_DIR; default ~/.huddle]"
    stop = actions.add_parser("stop", help="stop the data dir's server (SIGTERM, clean shutdown)")
    stop.add_argument("--data-dir", help=data_help)
    status = actions.add_parser("status", help="is the data dir's server running and healthy? (exit 0/1/3)")
    status.add_argument("--data-dir", help=data_help)
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    logs = actions.add_parser("logs", help="print the server log (server.log in the data dir)")
    logs.add_argument("--data-dir", help=data_help)
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many last lines to print (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")


def _flags(overrides: Mapping[str, Any]) -> list[str]:
    """The settings given on the command line, as flags again (for the daemon's own command).

    Settings that may carry a password go through the environment instead (`_secret_env`):
    a process's argv is shown to every user by `ps`, its environment only to its owner.
    """
    argv: list[str] = []
    secret = [name for name in SECRET_SETTINGS if overrides.get(name) is not None]
    for name, value in overrides.items():
        if value is not None and name not in secret:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return [*argv, "--flags-in-env", ",".join(secret)] if secret else argv


def _secret_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    return {env_name(name): str(overrides[name]) for name in SECRET_SETTINGS if overrides.get(name) is not None}


def _child_overrides(args: argparse.Namespace, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """In the daemon child, the flags its parent passed through the environment count as flags again."""
    names = [name for name in args.flags_in_env.split(",") if name in SECRET_SETTINGS]
    return {**overrides, **{name: os.environ[env_name(name)] for name in names if env_name(name) in os.environ}}


def restart_settings(data_dir: Path, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """The settings and cwd a restart starts with: the old server's own, new flags overriding.

    server.json records the command-line settings the server was started with and its working
    directory (a relative --repo/--data-dir and the default repo depend on it), so `restart` brings
    back the same server — port, repo, broker, toolsets — from wherever it is run.
    """
    info = read_runtime(data_dir) or {}
    recorded = info.get("overrides")
    merged = dict(recorded) if isinstance(recorded, dict) else {}
    for name in SECRET_SETTINGS:  # masked in server.json: the clear value is in server.secrets.json
        merged.pop(name, None)
    merged.update(read_secrets(data_dir, info.get("pid")))
    given = {name: value for name, value in overrides.items() if value is not None}
    for name in ("data_dir", "repo"):  # relative to where restart runs, not to the recorded cwd
        if given.get(name):
            given[name] = str(Path(str(given[name])).expanduser().absolute())
    merged.update(given)
    cwd = info.get("cwd")
    return merged, Path(cwd) if isinstance(cwd, str) and Path(cwd).is_dir() else None


def run_server_action(args: argparse.Namespace, overrides: Mapping[str, Any]) -> int:
    action = args.server_command
    if action == "start" and not args.daemon:
        from huddle.cli.server import start_server  # heavy imports only when serving

        if args.daemon_child:
            overrides = _child_overrides(args, overrides)
        return start_server(overrides, log_to_stderr=not args.daemon_child)
    if action == "start":
        data_dir = load_settings(overrides).data_path
        return daemon.start_daemon(_flags(overrides), data_dir, env=_secret_env(overrides))
    if action == "restart":
        data_dir = load_settings(overrides).data_path
        merged, cwd = restart_settings(data_dir, overrides)
        daemon.stop(data_dir)
        return daemon.start_daemon(_flags(merged), data_dir, cwd=cwd, env=_secret_env(merged))
    if action == "stop":
        return daemon.stop(data_dir_of(args))
    if action == "status":
        return daemon.status(data_dir_of(args), args.json)
    return daemon.logs(data_dir_of(args), args.lines, args.follow)
