"""`huddle guard`: git hooks that keep commits and pushes off other agents' leased work (SPEC F-36).

`huddle guard install` (or `huddle init --git-hook`) adds a block to `.git/hooks/pre-commit` and
`pre-push` (after the shebang of an existing hook, which keeps working) that runs
`python -m huddle.cli.guard pre-commit|pre-push`:

- pre-commit refuses a commit that stages a path leased exclusively by another agent (renames
  count as their old and their new path, deletions count too);
- pre-push refuses a push while another agent has an active git-operation intent (git_commit,
  git_push, git_rebase, git_merge) on a branch being pushed (each `<local ref> <sha> <remote ref>
  <sha>` line git gives the hook on stdin; the checked-out branch when run by hand).

`HUDDLE_GUARD=off` lets one commit or push through. The committer is `HUDDLE_AGENT`, else the agent
whose session runs in this worktree. When the server is down the guard warns and lets git go on.
Standard library only (it runs inside every commit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from huddle.hook import Unreachable, auth_headers, request, server_url

OVERRIDE = "HUDDLE_GUARD"
BUDGET_S = 3.0
CHUNK = 2000  # the server's limit on paths per pre-commit check


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def _ask(check: str, body: dict[str, object], data_dir: str | None) -> dict[str, object] | None:
    base = server_url(None, data_dir)
    try:
        status, data = request(
            base, "POST", f"/hooks/git/{check}", json.dumps(body).encode(), auth_headers(), budget_s=BUDGET_S
        )
    except Unreachable as exc:
        print(f"huddle guard: {exc}; not checked", file=sys.stderr)
        return None
    try:
        answer = json.loads(data) if data.strip() else {}
    except (ValueError, UnicodeDecodeError):
        answer = None
    if not isinstance(answer, dict):
        # A proxy's HTML error page, a JSON list…: not Huddle talking. Warn, let git go on.
        print(f"huddle guard: {base} gave no Huddle answer (HTTP {status}); not checked", file=sys.stderr)
        return None
    if status != 200:
        print(f"huddle guard: server answered HTTP {status}: {answer.get('error', '')}; not checked", file=sys.stderr)
        return None
    return answer


def pushed_branches(stdin: str) -> list[str]:
    """Branch names in git's pre-push input (`<local ref> <sha> <remote ref> <sha>` per line)."""
    names: dict[str, None] = {}
    for line in stdin.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        for ref in (parts[0], parts[2]):  # the local branch pushed, and the branch it lands on
            if ref.startswith("refs/heads/"):
                names.setdefault(ref[len("refs/heads/") :], None)
    return list(names)


def _stdin(from_git: bool) -> str:
    # Only git's own call (it passes the remote's name and URL) feeds refs on stdin; by hand, the
    # stdin may be a terminal or an open pipe that never ends.
    if not from_git or sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.read()


def check(name: str, data_dir: str | None, from_git: bool = False) -> int:
    if os.environ.get(OVERRIDE, "").lower() in ("off", "0", "false", "no"):
        print(f"huddle guard: {OVERRIDE}=off, {name} not checked", file=sys.stderr)
        return 0
    top = _git("rev-parse", "--show-toplevel").strip()
    body: dict[str, object] = {"agent_id": os.environ.get("HUDDLE_AGENT") or None, "worktree": top}
    requests: list[dict[str, object]] = []
    if name == "pre-commit":
        # --no-renames: a rename is its old path deleted and its new path added; both are checked.
        staged = [p for p in _git("diff", "--cached", "--name-only", "--no-renames", "-z").split("\0") if p]
        requests = [{**body, "paths": staged[i : i + CHUNK]} for i in range(0, len(staged), CHUNK)]
        what = "commit"
    else:
        branches = pushed_branches(_stdin(from_git)) or [_git("symbolic-ref", "--short", "HEAD").strip()]
        requests = [{**body, "branch": branch} for branch in branches]
        what = "push"
    messages = []
    for item in requests:
        answer = _ask(name, item, data_dir)
        if answer is not None and not answer.get("ok"):
            messages.append(str(answer.get("message", "")))
        elif answer is not None and answer.get("message"):
            print(f"huddle guard: {answer['message']}", file=sys.stderr)  # a note; the commit goes on
    if not messages:
        return 0
    print(f"huddle guard: {what} refused —", file=sys.stderr)
    print("\n".join(messages), file=sys.stderr)
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
        return check(args[0], data_dir, from_git=len(args) > 1)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"huddle guard: cannot read the repository ({exc}); not checked", file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
