"""`huddle` command line. Flags for settings are generated from the Settings table."""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import fields

from huddle import __version__
from huddle.cli.argtypes import non_negative_float
from huddle.cli.audit import add_audit_parsers, run_audit
from huddle.cli.backup import add_backup_parsers, run_backup, run_restore
from huddle.cli.board import add_board_parsers, run_agents, run_status, run_threads
from huddle.cli.clients import COMMANDS as CLIENT_COMMANDS
from huddle.cli.clients import add_client_parsers, run_client_command
from huddle.cli.daemon_cli import add_daemon_parsers, run_server_action
from huddle.cli.database import add_database_parsers, run_export, run_import, run_migrate
from huddle.cli.deps import add_deps_parser, run_deps
from huddle.cli.doctor import add_doctor_parser, run_doctor
from huddle.cli.locks import add_locks_parser, run_locks
from huddle.cli.remote import RemoteError
from huddle.cli.tasks import add_tasks_parser, run_tasks
from huddle.cli.tokens import add_token_parsers, run_token
from huddle.cli.watch import add_watch_parser, run_watch
from huddle.errors import HuddleError
from huddle.settings import Settings, env_name

# The OS errors that mean "this path cannot be used". Any other OSError (a signal to a vanished pid,
# a refused connection…) is not about the user's paths and must not be reported as if it were.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
PATH_ERRNOS = {errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOSPC}


def _is_path_error(exc: OSError) -> bool:
    return bool(exc.filename) and (isinstance(exc, PATH_ERRORS) or exc.errno in PATH_ERRNOS)


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
        # Floats must be finite here; whether 0 is allowed is the setting's own rule (settings.py says
        # which must be greater than 0 — rate_limit_per_s = 0, for one, turns rate limits off).
        kind = int if f.type in ("int", int) else non_negative_float if f.type in ("float", float) else str
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
    start = server_commands.add_parser("start", help="start the server (foreground, or --daemon)")
    restart = server_commands.add_parser("restart", help="stop the data dir's server and start it as a daemon")
    tuning = [f.name for f in fields(Settings) if f.name not in SERVER_FLAGS]
    for parser_ in (start, restart):
        _add_setting_flags(parser_, SERVER_FLAGS)
        _add_setting_flags(parser_.add_argument_group("tuning"), tuning)  # type: ignore[arg-type]
    add_daemon_parsers(start, server_commands)
    add_watch_parser(commands)
    add_tasks_parser(commands)
    add_locks_parser(commands)
    add_board_parsers(commands)
    add_doctor_parser(commands)
    add_backup_parsers(commands)
    add_database_parsers(commands)
    add_client_parsers(commands)
    add_deps_parser(commands)
    add_token_parsers(commands)
    add_audit_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "server" and args.server_command:
            overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
            return run_server_action(args, overrides)
        if args.command == "watch":
            return run_watch(args)
        if args.command == "tasks":
            return run_tasks(args)
        if args.command == "locks":
            return run_locks(args)
        runners = {
            "status": run_status,
            "agents": run_agents,
            "threads": run_threads,
            "doctor": run_doctor,
            "backup": run_backup,
            "restore": run_restore,
            "migrate": run_migrate,
            "export": run_export,
            "import": run_import,
            "deps": run_deps,
            "audit": run_audit,
        }
        if args.command == "token" and args.token_command:
            return run_token(args)
        if args.command in runners:
            return runners[args.command](args)
        if args.command in CLIENT_COMMANDS and not (args.command == "guard" and args.guard_command is None):
            return run_client_command(args)
        # A command group without its action (`huddle server`): show that group's help.
        getattr(args, "print_help", parser.print_help)()
        return 0 if args.command is None else 2
    except HuddleError as exc:
        print(f"huddle: {exc.message}", file=sys.stderr)
        return 1
    except RemoteError as exc:
        print(f"huddle: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `huddle watch … | head`: the reader left; not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again (the recipe from Python's signal docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if not _is_path_error(exc):
            raise  # not about a path the user gave: a real bug, keep its traceback
        # A path the user gave that cannot be used (a --data-dir that is a file, below a file, or
        # read-only): one line naming it, whichever command met it, instead of a traceback.
        print(
            f"huddle: cannot use {exc.filename}: {exc.strerror or exc}; check --data-dir and the paths you passed",
            file=sys.stderr,
        )
        return 1
    except sqlite3.Error as exc:
        # A damaged or foreign database file met by a CLI command (backup, restore, start).
        print(
            f"huddle: database error: {exc}; check the --data-dir's huddle.db (`huddle doctor`), or restore a"
            " backup with `huddle restore PATH`",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
