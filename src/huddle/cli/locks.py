"""`huddle locks …`: leases held and queued on a running server.

    huddle locks                                  # every live lease and queued request
    huddle locks list --agent alice
    huddle locks list --path 'src/**'             # only those overlapping a file, directory or glob
    huddle locks check src/auth/                  # who holds it, who waits, which modes you could get
    huddle locks acquire src/auth/ --agent alice [--mode shared] [--ttl 600] [--wait 30]
    huddle locks release src/auth/ --agent alice

Every command talks to the server over REST (`--url`, else the data dir's server.json) and
accepts `--json` for the raw result.
"""

from __future__ import annotations

import argparse
from typing import Any

from huddle.cli.argtypes import non_negative_float, positive_float
from huddle.cli.remote import add_remote_options, call, duration, emit, table


def _render_locks(result: dict[str, Any]) -> str:
    locks = result.get("locks") or result.get("holders") or []
    parts = []
    if "path" in result:  # check_lock
        parts.append(
            f"{result['path']} ({result['kind']}): "
            + (result.get("reason") or "free")
            + "; you could get "
            + ", ".join(m for m, ok in result["can_acquire"].items() if ok)
        )
    parts.append(
        table(
            locks,
            [
                ("path", "path"),
                ("mode", "mode"),
                ("holder", "agent_id"),
                ("token", "fencing_token"),
                ("expires in", lambda r: duration(r["expires_in_s"])),
            ],
        )
        if locks
        else "(no locks)"
    )
    if result.get("waiting"):
        parts.append(
            "queued:\n"
            + table(
                result["waiting"],
                [
                    ("#", "position"),
                    ("path", "path"),
                    ("mode", "mode"),
                    ("agent", "agent_id"),
                    ("gives up", "gives_up_at"),
                ],
            )
        )
    return "\n\n".join(parts)


def _render_acquired(r: dict[str, Any]) -> str:
    if r.get("granted"):
        return f"granted {r['path']} ({r['mode']}), fencing token {r['fencing_token']}, expires {r['expires_at']}"
    holders = ", ".join(f"{h['agent_id']} ({h['mode']})" for h in r.get("holders") or []) or "-"
    return f"refused: {str(r.get('reason')).rstrip('.')}; held by {holders}"


def add_locks_parser(commands: Any) -> None:
    locks = commands.add_parser(
        "locks",
        help="leases held and queued on a running server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_remote_options(locks)
    actions = locks.add_subparsers(dest="locks_command", metavar="ACTION")
    listing = actions.add_parser("list", help="live locks and queued requests")
    listing.add_argument("--agent")
    listing.add_argument("--path", help="only locks overlapping this file, directory or glob")
    check = actions.add_parser("check", help="who holds or waits for anything overlapping a path")
    check.add_argument("path")
    acquire = actions.add_parser("acquire", help="lease a file, directory or glob for an agent")
    acquire.add_argument("path")
    acquire.add_argument("--agent", required=True)
    acquire.add_argument("--mode", choices=("exclusive", "shared", "intent"), default="exclusive")
    acquire.add_argument("--ttl", type=positive_float, help="lease seconds (default: the server's lock_ttl_s)")
    acquire.add_argument("--wait", type=non_negative_float, help="queue up to this many seconds for the holder")
    release = actions.add_parser("release", help="release an agent's lock on a path")
    release.add_argument("path")
    release.add_argument("--agent", required=True)
    for sub in actions.choices.values():
        add_remote_options(sub, on_action=True)


def run_locks(args: argparse.Namespace) -> int:
    action = args.locks_command or "list"
    if action == "list":
        return emit(
            args,
            call(args, "list_locks", agent_id=getattr(args, "agent", None), path=getattr(args, "path", None)),
            _render_locks,
        )
    if action == "check":
        return emit(args, call(args, "check_lock", path=args.path), _render_locks)
    if action == "acquire":
        got = call(
            args, "acquire_lock", agent_id=args.agent, path=args.path, mode=args.mode, ttl_s=args.ttl, wait_s=args.wait
        )
        code = emit(args, got, _render_acquired)
        return code if got.get("granted") else 1
    result = call(args, "release_lock", agent_id=args.agent, path=args.path)
    return emit(args, result, lambda r: f"released {r['path']} ({r['mode']})" if r["released"] else r["reason"])
