"""`huddle init` and `huddle uninstall`: wire a repository's agent clients to the running server.

init writes (or merges into) each client's own MCP config, the coordination instructions between
sentinel comments in CLAUDE.md / AGENTS.md, optionally Claude Code hooks in `.claude/settings.json`
and the git guard hooks. Everything is recorded in `.huddle/init-manifest.json`, so running init
twice changes nothing and uninstall puts back every pre-existing file byte for byte.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from huddle.cli.remote import RemoteError
from huddle.cli.wiring import FileEdit, Manifest, WiringError, block_edit, json_edit, server_entry_edit, toml_table_edit
from huddle.domain.claude_hooks import EDIT_MATCHER, EVENTS, TOOL_EVENTS
from huddle.hook import data_dir_of, runtime_url

CLIENTS = ("claude", "cursor", "codex", "vscode")
MD_BEGIN = "<!-- >>> huddle: coordination instructions (added by `huddle init`; `huddle uninstall` removes them) -->"
MD_END = "<!-- <<< huddle -->"
SH_BEGIN = "# >>> huddle guard (added by `huddle guard install`; `huddle uninstall` removes it)"
SH_END = "# <<< huddle guard"
# Claude Code's hook `timeout` is in whole seconds. An http hook is the server answering within the
# issue's ~1 s budget: past that Claude Code gives up on it and the edit goes on (fail open). A
# command hook also pays for starting Python, and itself gives up within its budget (huddle.hook).
HTTP_HOOK_TIMEOUT_S = 1
HOOK_TIMEOUT_S = 5
HOOK_MARKERS = ("huddle.hook", "huddle hook", "/hooks/claude/")

INSTRUCTIONS = """\
## Coordination with other agents (Huddle)

Several agents work in this repository at once; they coordinate through the Huddle MCP server
(`huddle`). Your agent id is `$HUDDLE_AGENT` when set; in Claude Code with Huddle's hooks the
session start tells you your id (`claude-` + the first 8 characters of the session id). Use that
same id as `agent_id` in every Huddle tool call.

- Once per session: `register_agent` with your id (the Claude Code hook already did it).
- Before modifying files: `announce_work` with the files you will change (`target_files`) and the
  files your change depends on (`depends_on_files`).
- If the verdict is `consult`, do not edit the contested files: read the thread (`get_thread`),
  post context, and propose or approve a resolution.
- A file leased exclusively by another agent (`acquire_lock`) is theirs until released: wait or ask.
- Between turns, call `get_updates` with your last `next_cursor` (Claude Code hooks deliver news to
  you automatically). Call `complete_work` when done.
"""


def add_init_parsers(commands: Any) -> None:
    init = commands.add_parser("init", help="wire this repository's agent clients to the running Huddle server")
    init.add_argument(
        "--client",
        action="append",
        choices=[*CLIENTS, "all"],
        help="client to configure (repeatable; default claude): .mcp.json, .cursor/mcp.json, "
        ".codex/config.toml, .vscode/mcp.json",
    )
    init.add_argument("--url", help="server URL (default: the running server's, from the data dir's server.json)")
    init.add_argument("--data-dir", help="data dir of the running server [env HUDDLE_DATA_DIR; default ~/.huddle]")
    init.add_argument("--repo", help="repository to wire (default: the git work tree of the current directory)")
    init.add_argument(
        "--hooks",
        nargs="?",
        const="http",
        choices=["http", "command"],
        help="install Claude Code hooks in .claude/settings.json: http (posts to the server, default) or command "
        "(runs `python -m huddle.hook` with this environment's interpreter)",
    )
    init.add_argument("--git-hook", action="store_true", help="install the git guard (pre-commit and pre-push)")
    init.add_argument("--write-agents-md", metavar="PATH", help="also write the coordination instructions to PATH")
    init.add_argument("--write-mcp-config", metavar="PATH", help="also write a generic {mcpServers: …} JSON to PATH")
    init.add_argument("--no-instructions", action="store_true", help="do not write CLAUDE.md / AGENTS.md")
    init.add_argument(
        "--auth",
        choices=["open", "token"],
        help="the server's auth mode (default: the running server's, from server.json): token makes every client"
        " config and hook send Authorization: Bearer $HUDDLE_TOKEN",
    )

    uninstall = commands.add_parser("uninstall", help="undo `huddle init` exactly; --purge also wipes the data dir")
    uninstall.add_argument("--repo", help="repository to unwire (default: the git work tree of the current directory)")
    uninstall.add_argument("--data-dir", help="data dir to purge [env HUDDLE_DATA_DIR; default ~/.huddle]")
    uninstall.add_argument("--purge", action="store_true", help="also delete the data dir (asks first)")
    uninstall.add_argument("--force", action="store_true", help="with --purge: do not ask")


def data_dir(args: argparse.Namespace) -> Path:
    return Path(data_dir_of(getattr(args, "data_dir", None)))


def running_server(args: argparse.Namespace) -> str:
    """The URL to write: --url, else the running server's server.json; never a guessed port."""
    if args.url:
        return str(args.url).rstrip("/")
    url = runtime_url(str(data_dir(args)))
    if url is None:
        raise RemoteError(
            f"no running Huddle server found ({data_dir(args) / 'server.json'} is missing); start one with "
            "`huddle server start` (or `--daemon`), or pass --url"
        )
    return url


def token_mode(args: argparse.Namespace) -> bool:
    """--auth, else what the running server's server.json says."""
    if args.auth:
        return bool(args.auth == "token")
    path = data_dir(args) / "server.json"
    try:
        return bool(json.loads(path.read_text()).get("auth") == "token")
    except (OSError, ValueError, AttributeError):
        return False


# How each client names an environment variable inside a config value (the token never lands in a file).
TOKEN_HEADER = {
    "claude": "Bearer ${HUDDLE_TOKEN}",
    "cursor": "Bearer ${env:HUDDLE_TOKEN}",
    "vscode": "Bearer ${env:HUDDLE_TOKEN}",
}


def repo_root(args: argparse.Namespace) -> Path:
    """--repo, else the top of the git work tree around the current directory, else the directory.

    From a subdirectory the configs must land beside `.git` (where clients and the guard look),
    and uninstall must find the manifest there.
    """
    if args.repo:
        root = Path(args.repo).resolve()
        if not root.is_dir():
            raise RemoteError(f"--repo {root} is not a directory; pass the repository to wire")
        return root
    cwd = Path(os.getcwd()).resolve()
    try:
        top = subprocess.run(
            ["git", "-C", str(cwd), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return cwd
    out = top.stdout.strip()
    return Path(out).resolve() if top.returncode == 0 and out else cwd


def hook_command(event: str, args: argparse.Namespace) -> str:
    """The command-form hook: this environment's own interpreter (not a shim), stdlib-only module."""
    parts = [os.path.realpath(sys.executable) if _is_shim(sys.executable) else sys.executable]
    parts += ["-m", "huddle.hook", "claude", event]
    if getattr(args, "url", None):
        parts += ["--url", str(args.url).rstrip("/")]
    if getattr(args, "data_dir", None):
        parts += ["--data-dir", str(data_dir(args))]
    return shlex.join(parts)


def _is_shim(executable: str) -> bool:
    # pyenv/asdf shims are shell scripts that re-exec; a venv's python is a symlink to a real binary.
    return any(part in executable for part in ("/shims/", "/.pyenv/shims", "/.asdf/shims"))


def _ours(hook: Any) -> bool:
    text = json.dumps(hook)
    return any(marker in text for marker in HOOK_MARKERS)


def claude_hooks_edit(path: Path, form: str, url: str, args: argparse.Namespace) -> FileEdit:
    def entry(event: str) -> dict[str, Any]:
        # Claude Code runs no http hook for SessionStart ("HTTP hooks are not supported for
        # SessionStart", seen in its debug log), so that one is always the command form.
        if form == "http" and event != "SessionStart":
            hook: dict[str, Any] = {
                "type": "http",
                "url": f"{url}/hooks/claude/{event}",
                "timeout": HTTP_HOOK_TIMEOUT_S,
                "headers": {"X-Huddle-Agent": "$HUDDLE_AGENT"},
                "allowedEnvVars": ["HUDDLE_AGENT"],
            }
            if token_mode(args):
                hook["headers"]["Authorization"] = "Bearer $HUDDLE_TOKEN"
                hook["allowedEnvVars"].append("HUDDLE_TOKEN")
        else:
            hook = {"type": "command", "command": hook_command(event, args), "timeout": HOOK_TIMEOUT_S}
        group: dict[str, Any] = {"hooks": [hook]}
        if event in TOOL_EVENTS:
            group = {"matcher": EDIT_MATCHER, **group}
        return group

    def undo(data: dict[str, Any]) -> None:
        hooks = data.get("hooks")
        if not isinstance(hooks, dict):
            return
        for event in EVENTS:
            groups = hooks.get(event)
            if isinstance(groups, list):
                kept = [g for g in groups if not _ours(g)]
                if kept:
                    hooks[event] = kept
                else:
                    del hooks[event]
        if not hooks:
            del data["hooks"]

    def change(data: dict[str, Any]) -> None:
        undo(data)
        hooks = data.setdefault("hooks", {})
        if not isinstance(hooks, dict):
            raise WiringError(f"{path}: 'hooks' must be an object; fix it, then run init again")
        for event in EVENTS:
            hooks.setdefault(event, []).append(entry(event))

    return json_edit(path, change, undo)


def approve_project_server(path: Path) -> FileEdit:
    """Claude Code asks before using a server from `.mcp.json`; running init is that approval.

    It goes to `.claude/settings.local.json` (personal, not shared) as `enabledMcpjsonServers`.
    """

    def change(data: dict[str, Any]) -> None:
        enabled = data.setdefault("enabledMcpjsonServers", [])
        if not isinstance(enabled, list):
            raise WiringError(f"{path}: 'enabledMcpjsonServers' must be a list; fix it, then run init again")
        if "huddle" not in enabled:
            enabled.append("huddle")

    def undo(data: dict[str, Any]) -> None:
        enabled = data.get("enabledMcpjsonServers")
        if isinstance(enabled, list) and "huddle" in enabled:
            enabled.remove("huddle")
            if not enabled:
                del data["enabledMcpjsonServers"]

    return json_edit(path, change, undo)


def git_hooks_dir(root: Path) -> Path:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--git-path", "hooks"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise RemoteError(f"{root} is not a git repository; the git guard needs one (git init)") from None
    path = Path(out)
    return path if path.is_absolute() else root / path


def guard_edits(root: Path, args: argparse.Namespace) -> list[FileEdit]:
    hooks = git_hooks_dir(root)
    python = shlex.quote(sys.executable)
    extra = f" --data-dir {shlex.quote(str(data_dir(args)))}" if getattr(args, "data_dir", None) else ""
    edits = []
    for name in ("pre-commit", "pre-push"):
        body = f'{python} -m huddle.cli.guard {name}{extra} "$@" || exit $?'
        if name == "pre-push":
            # git gives the pushed refs on stdin once: the guard reads them, and the rest of the
            # user's hook (git-lfs, say) gets them again.
            body = (
                "huddle_refs=$(cat)\n"
                f'printf \'%s\\n\' "$huddle_refs" | {python} -m huddle.cli.guard {name}{extra} "$@" || exit $?\n'
                "exec <<huddle_refs_end\n$huddle_refs\nhuddle_refs_end"
            )
        edit = block_edit(hooks / name, SH_BEGIN, SH_END, body, after_first_line=True, executable=True)

        def merge(text: str, edit: FileEdit = edit) -> str:
            _refuse_non_shell(edit.path, text)
            return edit.merge(text or "#!/bin/sh\n")

        def unmerge(text: str, edit: FileEdit = edit) -> str:
            rest = edit.unmerge(text)
            return "" if rest.strip() == "#!/bin/sh" else rest

        edits.append(FileEdit(edit.path, merge, unmerge, executable=True))
    return edits


SHELLS = ("sh", "bash", "zsh", "dash", "ksh")


def _refuse_non_shell(path: Path, text: str) -> None:
    """The guard is shell lines; inside a python (or other) hook they would break every commit."""
    first = text.split("\n", 1)[0]
    if not first.startswith("#!") or SH_BEGIN in text:
        return
    words = first[2:].split()
    interpreter = os.path.basename(words[0]) if words else ""
    if interpreter == "env" and len(words) > 1:
        interpreter = next((w for w in words[1:] if not w.startswith("-")), "")
    if interpreter not in SHELLS:
        raise WiringError(
            f"{path} is a {interpreter or 'non-shell'} script, not a shell one; Huddle's guard cannot be added to it. "
            f'Call `{shlex.quote(sys.executable)} -m huddle.cli.guard {path.name} "$@"` from it yourself '
            "(exit when it fails), or run init without --git-hook"
        )


def _user_owned(manifest: Manifest, path: Path, container: str) -> bool:
    """A `huddle` server entry the user wrote before init ever ran: init leaves it alone."""
    record = manifest.files.get(manifest.key(path))
    text = ""
    if record is not None and record["original"]:
        text = base64.b64decode(record["original"]).decode(errors="replace")
    try:
        if record is None:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
        data = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return False  # planning the edit reports what is wrong with the file
    return isinstance(data, dict) and isinstance(data.get(container), dict) and "huddle" in data[container]


def planned_edits(
    args: argparse.Namespace, root: Path, manifest: Manifest, url: str
) -> tuple[list[FileEdit], list[str]]:
    clients = list(dict.fromkeys(args.client or ["claude"]))
    if "all" in clients:
        clients = list(CLIENTS)
    mcp = f"{url}/mcp"
    edits: list[FileEdit] = []
    notes: list[str] = []
    configs: dict[str, tuple[Path, str, dict[str, Any]]] = {
        "claude": (root / ".mcp.json", "mcpServers", {"type": "http", "url": mcp}),
        "cursor": (root / ".cursor" / "mcp.json", "mcpServers", {"url": mcp}),
        "vscode": (root / ".vscode" / "mcp.json", "servers", {"type": "http", "url": mcp}),
    }
    tokens = token_mode(args)
    if tokens:
        for client, (_, _, entry) in configs.items():
            entry["headers"] = {"Authorization": TOKEN_HEADER[client]}
    for client in clients:
        if client == "codex":
            codex = {"url": mcp, **({"bearer_token_env_var": "HUDDLE_TOKEN"} if tokens else {})}
            edits.append(toml_table_edit(root / ".codex" / "config.toml", "mcp_servers.huddle", codex))
            continue
        path, container, entry = configs[client]
        if _user_owned(manifest, path, container):
            notes.append(f"{path.relative_to(root)}: you already configured a 'huddle' server; left as is")
        else:
            edits.append(server_entry_edit(path, container, entry))
    if args.write_mcp_config:
        path = Path(args.write_mcp_config).expanduser().resolve()
        edits.append(server_entry_edit(path, "mcpServers", {"type": "http", "url": mcp}))
    instruction_files = []
    if not args.no_instructions:
        if "claude" in clients:
            instruction_files.append(root / "CLAUDE.md")
        if any(c != "claude" for c in clients):
            instruction_files.append(root / "AGENTS.md")
    if args.write_agents_md:
        instruction_files.append(Path(args.write_agents_md).expanduser().resolve())
    for path in dict.fromkeys(instruction_files):
        edits.append(block_edit(path, MD_BEGIN, MD_END, INSTRUCTIONS))
    if "claude" in clients:
        edits.append(approve_project_server(root / ".claude" / "settings.local.json"))
    if args.hooks:
        edits.append(claude_hooks_edit(root / ".claude" / "settings.json", args.hooks, url, args))
    if args.git_hook:
        edits.extend(guard_edits(root, args))
    return edits, notes


def all_known_edits(root: Path, args: argparse.Namespace) -> dict[str, FileEdit]:
    """Every edit init could have made, for best-effort removal from files changed after init."""
    ns = argparse.Namespace(
        client=["all"],
        write_mcp_config=None,
        write_agents_md=None,
        no_instructions=False,
        hooks="http",
        git_hook=False,
        data_dir=None,
        auth=None,
    )
    manifest = Manifest(root)
    edits, _ = planned_edits(ns, root, manifest, "http://unused")
    by_key = {manifest.key(e.path): e for e in edits}
    for key in manifest.files:
        path = manifest.resolve(key)
        if path.suffix == ".md":
            by_key.setdefault(key, block_edit(path, MD_BEGIN, MD_END, ""))
        elif path.name in ("pre-commit", "pre-push"):
            by_key.setdefault(key, block_edit(path, SH_BEGIN, SH_END, "", after_first_line=True))
        elif path.suffix == ".json":
            by_key.setdefault(key, _strip_huddle_json(path))
    return by_key


def _strip_huddle_json(path: Path) -> FileEdit:
    def undo(data: dict[str, Any]) -> None:
        for container in ("mcpServers", "servers"):
            servers = data.get(container)
            if isinstance(servers, dict) and "huddle" in servers:
                del servers["huddle"]
                if not servers:
                    del data[container]

    return json_edit(path, lambda data: None, undo)


def run_init(args: argparse.Namespace) -> int:
    root = repo_root(args)
    url = running_server(args)
    manifest = Manifest(root)
    try:
        edits, notes = planned_edits(args, root, manifest, url)
        results = manifest.apply_all(edits)
    except WiringError as exc:
        raise RemoteError(str(exc)) from None
    finally:
        manifest.save()
    for path, outcome in results:
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        print(f"{outcome:9} {shown}")
    for note in notes:
        print(f"kept      {note}")
    if token_mode(args):
        print("token mode: clients send $HUDDLE_TOKEN — set it in their environment (`huddle token issue --agent ID`)")
    print(f"Huddle at {url} — undo with `huddle uninstall`")
    return 0


def run_uninstall(args: argparse.Namespace) -> int:
    root = repo_root(args)
    manifest = Manifest(root)
    if manifest.files:
        for line in manifest.revert(all_known_edits(root, args)):
            print(line)
        manifest.save()
    else:
        print(f"nothing to undo in {root} (no {manifest.path.relative_to(root)})")
    if args.purge:
        return purge(data_dir(args), force=args.force)
    return 0


def purge(directory: Path, *, force: bool) -> int:
    """Deletes the data dir (SPEC F-75): asks unless --force; refuses while a server runs from it."""
    if not directory.exists():
        print(f"{directory} does not exist; nothing to purge")
        return 0
    runtime = directory / "server.json"
    if runtime.exists():
        try:
            pid = int(json.loads(runtime.read_text())["pid"])
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, ProcessLookupError):
            pass
        else:
            raise RemoteError(f"a Huddle server (pid {pid}) still runs from {directory}; stop it first, then purge")
    if not force:
        if not sys.stdin.isatty():
            raise RemoteError(f"refusing to delete {directory} without confirmation; pass --force")
        answer = input(f"Delete {directory} and everything in it (database, logs)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept", directory)
            return 1
    shutil.rmtree(directory)
    print(f"deleted {directory}")
    return 0
