"""`huddle tasks …`: the task board and worker slots of a running server.

    huddle tasks                                  # the board (same as `huddle tasks list`)
    huddle tasks list --status pending
    huddle tasks add build "Build the wheel" --priority 5
    huddle tasks add deploy "Deploy" --depends-on build,test
    huddle tasks import tasks.json                # a JSON list of {task_id, description, depends_on?, …}
    huddle tasks available
    huddle tasks claim --agent alice [TASK_ID]    # without TASK_ID: the best available task
    huddle tasks update build --agent alice --status done --output "wheel in dist/"
    huddle tasks reset build
    huddle tasks workers

Every command talks to the server over REST (`--url`, else the data dir's server.json) and
accepts `--json` for the raw result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from huddle.cli.remote import RemoteError, add_remote_options, call, emit, table

TASK_STATUSES = ("pending", "claimed", "in_progress", "done", "failed")


def _task_table(tasks: list[dict[str, Any]]) -> str:
    if not tasks:
        return "(no tasks)"
    return table(
        tasks,
        [
            ("task", "task_id"),
            ("status", lambda t: "available" if t.get("available") else t["status"]),
            ("prio", "priority"),
            ("claimed by", "claimed_by"),
            ("depends on", "depends_on"),
            ("description", "description"),
        ],
        max_width=50,
    )


def _render_board(result: dict[str, Any]) -> str:
    counts = result.get("counts", {})
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    head = f"{result.get('total', 0)} task(s): {summary or 'none'}; {result.get('available', 0)} available"
    return head + "\n\n" + _task_table(result["tasks"])


def _render_one(result: dict[str, Any]) -> str:
    task = result.get("task")
    lines = []
    if "claimed" in result and not result["claimed"]:
        lines.append(f"not claimed: {result.get('reason', '')}")
    if "reset" in result and not result["reset"]:
        lines.append(f"not reset: {result.get('reason', '')}")
    if task:
        lines.append(_task_table([task]))
    if result.get("unblocked"):
        lines.append(f"now available: {', '.join(result['unblocked'])}")
    return "\n".join(lines) or json.dumps(result)


def _render_workers(result: dict[str, Any]) -> str:
    head = f"{result['busy']} of {result['total']} worker slots busy"
    return (
        head
        + "\n\n"
        + table(
            result["slots"],
            [
                ("slot", "slot"),
                ("status", "status"),
                ("agent", "agent_id"),
                ("since", "claimed_at"),
                ("tasks", "tasks"),
            ],
        )
    )


def add_tasks_parser(commands: Any) -> None:
    tasks = commands.add_parser(
        "tasks",
        help="the task board and worker slots of a running server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_remote_options(tasks)
    actions = tasks.add_subparsers(dest="tasks_command", metavar="ACTION")
    listing = actions.add_parser("list", help="the board, oldest first")
    listing.add_argument("--status", choices=TASK_STATUSES)
    add = actions.add_parser("add", help="add one task")
    add.add_argument("task_id")
    add.add_argument("description")
    add.add_argument("--depends-on", default="", help="comma-separated task ids that must be done first")
    add.add_argument("--priority", type=int, default=0, help="higher is claimed first (default 0)")
    add.add_argument("--payload", help="JSON handed to whoever claims the task")
    add.add_argument("--agent", help="who adds it (gets its claim and progress events)")
    imp = actions.add_parser("import", help="add many tasks from a JSON file (a list of task objects)")
    imp.add_argument("file", type=Path)
    imp.add_argument("--agent")
    actions.add_parser("available", help="tasks that could be claimed now, best first")
    claim = actions.add_parser("claim", help="claim a task (or the best available one)")
    claim.add_argument("task_id", nargs="?")
    claim.add_argument("--agent", required=True)
    update = actions.add_parser("update", help="report progress, success or failure (claimer only)")
    update.add_argument("task_id")
    update.add_argument("--agent", required=True)
    update.add_argument("--status", required=True, choices=("in_progress", "done", "failed"))
    update.add_argument("--output")
    update.add_argument("--error")
    reset = actions.add_parser("reset", help="make a failed or abandoned task available again")
    reset.add_argument("task_id")
    reset.add_argument("--agent")
    actions.add_parser("workers", help="worker slots: who holds which")
    for sub in actions.choices.values():
        add_remote_options(sub, on_action=True)


def _payload(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RemoteError(f"--payload is not valid JSON ({exc}); quote it, e.g. --payload '{{\"k\": 1}}'") from None


def _import_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise RemoteError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise RemoteError(f"{path} is not JSON ({exc}); give a list of task objects") from None
    if isinstance(data, dict) and isinstance(data.get("tasks"), list):
        data = data["tasks"]
    if not isinstance(data, list):
        raise RemoteError(f"{path} must hold a JSON list of {{task_id, description, depends_on?}} objects")
    return data


def run_tasks(args: argparse.Namespace) -> int:
    action = args.tasks_command or "list"
    if action == "list":
        return emit(args, call(args, "list_tasks", status=getattr(args, "status", None)), _render_board)
    if action == "add":
        deps = [d.strip() for d in args.depends_on.split(",") if d.strip()]
        return emit(
            args,
            call(
                args,
                "add_task",
                task_id=args.task_id,
                description=args.description,
                depends_on=deps or None,
                priority=args.priority,
                payload=_payload(args.payload),
                agent_id=args.agent,
            ),
            _render_one,
        )
    if action == "import":
        result = call(args, "add_tasks", tasks=_import_file(args.file), agent_id=args.agent)
        return emit(
            args,
            result,
            lambda r: f"{r['created']} added, {r['unchanged']} already there\n\n" + _task_table(r["tasks"]),
        )
    if action == "available":
        return emit(args, call(args, "get_available_tasks"), lambda r: _task_table(r["tasks"]))
    if action == "claim":
        return emit(args, call(args, "claim_task", agent_id=args.agent, task_id=args.task_id), _render_one)
    if action == "update":
        return emit(
            args,
            call(
                args,
                "update_task",
                task_id=args.task_id,
                agent_id=args.agent,
                status=args.status,
                output=args.output,
                error=args.error,
            ),
            _render_one,
        )
    if action == "reset":
        return emit(args, call(args, "reset_task", task_id=args.task_id, agent_id=args.agent), _render_one)
    return emit(args, call(args, "get_workers"), _render_workers)
