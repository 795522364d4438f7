"""`huddle status`, `huddle agents`, `huddle threads`: the board of a running server, for people.

    huddle status                                  # the whole board in a few lines
    huddle agents                                  # who is online, doing what
    huddle threads                                 # active consultations (--status any for all)
    huddle threads T-3                             # one thread with its messages
    huddle threads post T-3 "use the v2 API" --agent alice [--type suggestion]

Like `huddle tasks` and `huddle locks`, every command calls the server over REST and takes `--json`.
"""

from __future__ import annotations

import argparse
from typing import Any

from huddle.cli.remote import add_remote_options, call, emit, table

THREAD_STATUSES = ("open", "resolving", "resolved", "closed", "cancelled", "timeout", "max_rounds")
MESSAGE_TYPES = ("context", "question", "warning", "suggestion")


def add_board_parsers(commands: Any) -> None:
    status = commands.add_parser("status", help="the board of a running server: agents, threads, locks, tasks")
    add_remote_options(status)
    agents = commands.add_parser("agents", help="registered agents and what they are doing")
    add_remote_options(agents)
    agents.add_argument("--online", action="store_true", help="only online agents")
    threads = commands.add_parser(
        "threads",
        help="consultation threads: list, show one (ID), or post to one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_remote_options(threads)
    threads.add_argument("words", nargs="*", metavar="ID | post ID TEXT", help="a thread id, or `post ID TEXT`")
    threads.add_argument("--status", default=None, help="list only this status, or `any` (default: open+resolving)")
    threads.add_argument("--agent", help="list: threads with this member; post: the author")
    threads.add_argument("--type", default="context", choices=MESSAGE_TYPES, help="post: message type")


def run_status(args: argparse.Namespace) -> int:
    return emit(args, call(args, "coordinator_status"), _render_status)


def _render_status(s: dict[str, Any]) -> str:
    locks, tasks = s.get("locks") or {}, s.get("tasks") or {}
    counts = tasks.get("counts") or {}
    lines = [
        f"project {s['project']} ({s['repo']}) — huddle {s['version']}, up {round(s['uptime_s'])}s,"
        f" cursor {s['latest_cursor']}",
        f"agents   {s['agents']['online']} online of {s['agents']['total']}",
        f"threads  {s['threads']['active']} active",
        f"intents  {s['intents']['active']} active",
        f"locks    {locks.get('active', 0)} held, {locks.get('waiting', 0)} queued",
        "tasks    " + (", ".join(f"{n} {k}" for k, n in counts.items() if n) or "none"),
    ]
    online = [a for a in s["agents"]["list"] if a["online"]]
    if online:
        lines += ["", _agents_table(online)]
    if s["threads"]["list"]:
        lines += ["", _threads_table(s["threads"]["list"])]
    return "\n".join(lines)


def run_agents(args: argparse.Namespace) -> int:
    result = call(args, "list_agents", online_only=args.online or None)
    return emit(args, result, lambda r: _agents_table(r["agents"]) if r["agents"] else "(no agents)")


def _agents_table(agents: list[dict[str, Any]]) -> str:
    return table(
        agents,
        [
            ("agent", "agent_id"),
            ("activity", "activity"),
            ("branch", "branch"),
            ("file", "current_file"),
            ("waiting on", "waiting_on"),
            ("last seen", "last_seen"),
        ],
    )


def _threads_table(threads: list[dict[str, Any]]) -> str:
    return table(
        threads,
        [
            ("thread", "thread_id"),
            ("status", "status"),
            ("round", "round"),
            ("initiator", "initiator"),
            ("subject", "subject"),
        ],
    )


def run_threads(args: argparse.Namespace) -> int:
    words = list(args.words)
    if words[:1] == ["post"]:
        if len(words) < 3 or not args.agent:
            raise SystemExit("huddle threads post: usage: huddle threads post ID TEXT --agent AGENT [--type TYPE]")
        result = call(
            args, "post_to_thread", thread_id=words[1], agent_id=args.agent, type=args.type, content=" ".join(words[2:])
        )
        return emit(args, result, lambda r: f"posted message {r['message_id']} to {r['thread_id']} ({r['status']})")
    if words:
        return emit(args, call(args, "get_thread", thread_id=words[0]), _render_thread)
    if args.status in (None, "any"):
        statuses = ["open", "resolving"] if args.status is None else [None]
    elif args.status in THREAD_STATUSES:
        statuses = [args.status]
    else:
        raise SystemExit(f"huddle threads: --status must be one of {', '.join(THREAD_STATUSES)} or any")
    found: list[dict[str, Any]] = []
    for status in statuses:
        found += call(args, "list_threads", status=status, agent_id=args.agent)["threads"]
    found.sort(key=lambda t: int(str(t["thread_id"]).split("-")[-1]), reverse=True)
    return emit(args, {"threads": found}, lambda r: _threads_table(r["threads"]) if r["threads"] else "(no threads)")


def _render_thread(t: dict[str, Any]) -> str:
    lines = [
        f"{t['thread_id']} [{t['status']}, round {t.get('round')}] {t.get('subject')}",
        f"initiator {t.get('initiator')}; respondents {', '.join(t.get('expected_respondents') or []) or '-'};"
        f" files {', '.join(t.get('target_files') or []) or '-'}",
    ]
    if t.get("proposal"):
        proposal = t["proposal"]
        summary = proposal.get("summary") if isinstance(proposal, dict) else proposal
        lines.append(f"proposal: {summary}")
    messages = t.get("messages") or []
    if messages:
        lines += [
            "",
            table(
                messages,
                [("#", "message_id"), ("from", "agent_id"), ("type", "type"), ("text", "content")],
                max_width=80,
            ),
        ]
    return "\n".join(lines)
