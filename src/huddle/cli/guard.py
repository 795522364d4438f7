"""`huddle guard`: git hooks that keep commits and pushes off other agents' leased work (SPEC F-36).

`huddle guard install` (or `huddle init --git-hook`) adds a block to `.git/hooks/pre-commit` and
`pre-push` (after the shebang of an existing hook, which keeps working) that runs
`python -m huddle.cli.guard pre-commit|pre-push`:

- pre-commit refuses a commit that stages a path leased exclusively by another agent;
- pre-push refuses a push while another agent has an active git-operation intent (git_commit,
  git_push, git_rebase, git_merge) on the same branch.

`HUDDLE_GUARD=off` lets one commit or push through. The committer is `HUDDLE_AGENT`, else the agent
whose session runs in this worktree. When the server is down the guard warns and lets git go on.
Standard library only (it runs inside every commit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from huddle.hook import Unreachable, request, server_url

OVERRIDE = "HUDDLE_GUARD"
BUDGET_S = 3.0


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def _ask(check: str, body: dict[str, object], data_dir: str | None) -> dict[str, object] | None:
    base = server_url(None, data_dir)
    try:
        status, data = request(base, "POST", f"/hooks/git/{check}", json.dumps(body).encode(), budget_s=BUDGET_S)
    except Unreachable as exc:
        print(f"huddle guard: {exc}; not checked", file=sys.stderr)
        return None
    answer = json.loads(data) if data.strip() else {}
    if status != 200 or not isinstance(answer, dict):
        print(f"huddle guard: server answered HTTP {status}: {answer.get('error', '')}; not checked", file=sys.stderr)
        return None
    return answer


def check(name: str, data_dir: str | None) -> int:
    if os.environ.get(OVERRIDE, "").lower() in ("off", "0", "false", "no"):
        print(f"huddle guard: {OVERRIDE}=off, {name} not checked", file=sys.stderr)
        return 0
    top = _git("rev-parse", "--show-toplevel").strip()
    body: dict[str, object] = {"agent_id": os.environ.get("HUDDLE_AGENT") or None, "worktree": top}
    if name == "pre-commit":
        staged = [p for p in _git("diff", "--cached", "--name-only", "-z").split("\0") if p]
        if not staged:
            return 0
        body["paths"] = staged
        what = "commit"
    else:
        branch = _git("symbolic-ref", "--short", "HEAD").strip()  # works on an unborn branch too
        body["branch"] = branch
        what = "push"
    answer = _ask(name, body, data_dir)
    if answer is None or answer.get("ok"):
        return 0
    print(f"huddle guard: {what} refused —", file=sys.stderr)
    print(str(answer.get("message", "")), file=sys.stderr)
    print(
        f"Wait for the holder to finish (or ask them), or override once with {OVERRIDE}=off git {what} …",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    data_dir = None
    if "--data-dir" in args:
        i = args.index("--data-dir")
        data_dir = args[i + 1] if i + 1 < len(args) else None
        del args[i : i + 2]
    if not args or args[0] not in ("pre-commit", "pre-push"):
        print("usage: python -m huddle.cli.guard pre-commit|pre-push [--data-dir DIR]", file=sys.stderr)
        return 2
    try:
        return check(args[0], data_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"huddle guard: cannot read the repository ({exc}); not checked", file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
