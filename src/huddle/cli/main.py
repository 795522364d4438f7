"""`huddle` command line. Flags for settings are generated from the Settings table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields

from huddle import __version__
from huddle.cli.deps import add_deps_parser, run_deps
from huddle.cli.locks import add_locks_parser, run_locks
from huddle.cli.remote import RemoteError
from huddle.cli.tasks import add_tasks_parser, run_tasks
from huddle.cli.watch import add_watch_parser, run_watch
from huddle.errors import HuddleError
from huddle.settings import Settings, env_name

SERVER_FLAGS = (
    "host",
    "port",
    "data_dir",
    "repo",
    "project",
    "db_url",
    "log_level",
    "mqtt_port",
    "mqtt_url",
    "mqtt_broker",
    "topic_root",
)


def _add_setting_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    types = {f.name: f for f in fields(Settings)}
    for name in names:
        f = types[name]
        kind = int if f.type in ("int", int) else float if f.type in ("float", float) else str
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,
            help=f"{f.metadata['help']} [env {env_name(name)}; default {f.default!r}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="huddle", description="Coordination server for parallel AI coding agents (MCP)."
    )
    parser.add_argument("--version", action="version", version=f"huddle {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    server = commands.add_parser("server", help="run the coordination server")
    server.set_defaults(print_help=server.print_help)
    server_commands = server.add_subparsers(dest="server_command", metavar="ACTION")
    start = server_commands.add_parser("start", help="start the server in the foreground")
    _add_setting_flags(start, SERVER_FLAGS)
    tuning = [f.name for f in fields(Settings) if f.name not in SERVER_FLAGS]
    _add_setting_flags(start.add_argument_group("tuning"), tuning)  # type: ignore[arg-type]
    add_watch_parser(commands)
    add_tasks_parser(commands)
    add_locks_parser(commands)
    add_deps_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "server" and args.server_command == "start":
            from huddle.cli.server import start_server  # heavy imports only when serving

            overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
            return start_server(overrides)
        if args.command == "watch":
            return run_watch(args)
        if args.command == "tasks":
            return run_tasks(args)
        if args.command == "locks":
            return run_locks(args)
        if args.command == "deps":
            return run_deps(args)
        # A command group without its action (`huddle server`): show that group's help.
        getattr(args, "print_help", parser.print_help)()
        return 0 if args.command is None else 2
    except HuddleError as exc:
        print(f"huddle: {exc.message}", file=sys.stderr)
        return 1
    except RemoteError as exc:
        print(f"huddle: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
