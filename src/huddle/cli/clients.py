"""CLI commands that wire agent clients to Huddle: init, uninstall, hook, guard, stdio, channel.

Parsers only at import time: the MCP SDK that stdio and channel need is imported when they run.
"""

from __future__ import annotations

import argparse
from typing import Any

from huddle.cli.init import add_init_parsers
from huddle.domain.claude_hooks import EVENTS

COMMANDS = ("init", "uninstall", "hook", "guard", "stdio", "channel")


def add_client_parsers(commands: Any) -> None:
    add_init_parsers(commands)
    hook = commands.add_parser(
        "hook", help="Claude Code command hook: forwards the hook input on stdin to the server (fails open in ~1 s)"
    )
    hook.add_argument("client", choices=["claude"])
    hook.add_argument("event", choices=EVENTS)
    hook.add_argument("--url", help="server URL [env HUDDLE_URL; default: the data dir's server.json]")
    hook.add_argument("--data-dir", help="data dir holding server.json [env HUDDLE_DATA_DIR; default ~/.huddle]")
    guard = commands.add_parser("guard", help="git hooks refusing commits/pushes into other agents' leased work")
    guard.set_defaults(print_help=guard.print_help)
    actions = guard.add_subparsers(dest="guard_command", metavar="ACTION")
    for name, text in (
        ("install", "add the pre-commit and pre-push checks to this repository's git hooks"),
        ("uninstall", "take them out again (an existing hook of yours is restored byte for byte)"),
        ("pre-commit", "the pre-commit check (what the git hook runs)"),
        ("pre-push", "the pre-push check (what the git hook runs)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--repo", help="repository (default: the current directory)")
        action.add_argument("--data-dir", help="data dir of the server [env HUDDLE_DATA_DIR; default ~/.huddle]")
    add_stdio_parser(commands)
    add_channel_parser(commands)


def add_stdio_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stdio = commands.add_parser("stdio", help="MCP over stdio, proxied to the shared server (started if none runs)")
    stdio.add_argument("--url", help="server URL (default: the data dir's server.json; started if none runs)")
    stdio.add_argument("--data-dir", help="data dir of the shared server [env HUDDLE_DATA_DIR; default ~/.huddle]")
    stdio.add_argument("--no-start", action="store_true", help="fail instead of starting a server when none runs")


def add_channel_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    channel = commands.add_parser("channel", help="Claude Code channel: push an agent's events into its session")
    channel.add_argument("--agent", help="agent to follow [env HUDDLE_AGENT; default: the session in this directory]")
    channel.add_argument("--url", help="server URL (default: the data dir's server.json)")
    channel.add_argument("--data-dir", help="data dir of the shared server [env HUDDLE_DATA_DIR; default ~/.huddle]")


def run_client_command(args: argparse.Namespace) -> int:
    if args.command == "init":
        from huddle.cli.init import run_init

        return run_init(args)
    if args.command == "uninstall":
        from huddle.cli.init import run_uninstall

        return run_uninstall(args)
    if args.command == "hook":
        from huddle.hook import main as hook_main

        extra = [*(["--url", args.url] if args.url else []), *(["--data-dir", args.data_dir] if args.data_dir else [])]
        return hook_main([args.client, args.event, *extra])
    if args.command == "guard":
        return run_guard(args)
    if args.command == "stdio":
        from huddle.cli.stdio import run_stdio

        return run_stdio(args)
    from huddle.cli.channel import run_channel

    return run_channel(args)


def run_guard(args: argparse.Namespace) -> int:
    from huddle.cli.guard import main as guard_main
    from huddle.cli.init import guard_edits, repo_root
    from huddle.cli.remote import RemoteError
    from huddle.cli.wiring import Manifest, WiringError

    if args.guard_command in ("pre-commit", "pre-push"):
        return guard_main([args.guard_command, *(["--data-dir", args.data_dir] if args.data_dir else [])])
    if args.guard_command is None:
        args.print_help()
        return 2
    root = repo_root(args)
    manifest = Manifest(root)
    edits = guard_edits(root, args)
    if args.guard_command == "install":
        try:
            results = manifest.apply_all(edits)
        except WiringError as exc:
            raise RemoteError(str(exc)) from None
        for path, outcome in results:
            print(f"{outcome:9} {path}")
    else:
        for line in manifest.revert(
            {manifest.key(e.path): e for e in edits}, only={manifest.key(e.path) for e in edits}
        ):
            print(line)
    manifest.save()
    return 0
