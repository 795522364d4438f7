"""huddle deps scan: derive the module dependency map from the repository's imports (tree-sitter).

Prints the map; with --write it is sent to the running server as its dependency map
(set_dependency_map), which get_blast_radius and get_module_info then answer from.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from huddle.cli.remote import RemoteError, add_remote_options, call, emit, table


def add_deps_parser(commands: Any) -> None:
    deps = commands.add_parser(
        "deps",
        help="the module dependency map derived from imports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_remote_options(deps)
    actions = deps.add_subparsers(dest="deps_command", metavar="ACTION")
    scan = actions.add_parser("scan", help="derive the map from imports (Python, JS/TS, Go, Rust, Java, C/C++, …)")
    scan.add_argument(
        "--repo", type=Path, default=Path("."), help="repository to scan (default: the current directory)"
    )
    scan.add_argument("--write", action="store_true", help="send the map to the running server (set_dependency_map)")
    add_remote_options(scan, on_action=True)
    deps.set_defaults(print_help=deps.print_help)


def run_deps(args: argparse.Namespace) -> int:
    if args.deps_command != "scan":
        args.print_help()
        return 2
    from huddle.analysis.deps import scan  # tree-sitter loads only for this command

    repo = args.repo.expanduser()
    if not repo.is_dir():
        raise RemoteError(f"--repo {repo} is not a directory; give the repository to scan")
    modules = scan(str(repo))
    if not modules:
        raise RemoteError(f"no source files Huddle can parse under {repo}; nothing to map")
    result: dict[str, Any] = {"modules": modules}
    if args.write:
        result["written"] = call(args, "set_dependency_map", modules=modules)
    return emit(args, result, _render)


def _render(result: dict[str, Any]) -> str:
    rows = [
        {"module": m, "depends_on": spec["depends_on"], "files": sum(not p.endswith("/") for p in spec["paths"])}
        for m, spec in result["modules"].items()
    ]
    text = table(rows, [("module", "module"), ("files", "files"), ("depends on", "depends_on")], max_width=100)
    if "written" in result:
        text += f"\nwritten to the server: {result['written']['modules']} modules, {result['written']['edges']} edges"
    return text
