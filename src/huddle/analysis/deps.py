"""`huddle deps scan`: the module dependency map derived from imports (SPEC F-35).

A module is a directory holding parsed source files; module A depends on module B when a file in
A imports a file of B. Imports are found with tree-sitter (the import node types of each grammar
in languages.py) and resolved against the repository's own files only — third-party imports,
which resolve to nothing here, are not modules of this map.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from tree_sitter import Node, Parser

from huddle.analysis.files import read_source
from huddle.analysis.git import GitError, git, names
from huddle.analysis.languages import EXTENSIONS, grammar_for, load

MAX_FILES = 20_000
MAX_PATHS = 200  # set_dependency_map's limit per list
MAX_FILE_BYTES = 1_000_000
_STRING = re.compile(r"""["'<]([^"'<>]+)[">']""")
_SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", "dist", "build", "target", "vendor"})
_REQUIRE_CALLS = frozenset({"require", "require_relative", "load", "source", "."})
ROOT_MODULE = "(root)"


def source_files(repo: str) -> list[str]:
    """Files a grammar parses: git's tracked files, or a walk when the directory is no repository."""
    try:
        files = names(git(repo, ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout)
    except GitError:
        files = []
        for root, dirs, found in os.walk(repo):  # symlinked directories are not followed
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            rel = os.path.relpath(root, repo)
            files += [posixpath.normpath(posixpath.join(rel.replace(os.sep, "/"), n)) for n in found]
    return sorted(f for f in files if _valid_text(f) and grammar_for(f) is not None)[:MAX_FILES]


def _valid_text(name: str) -> bool:
    """os.walk gives undecodable bytes as surrogates; such a name has no text form to report."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def module_of(path: str) -> str:
    parent = posixpath.dirname(path)
    return parent or ROOT_MODULE


class Resolver:
    """Finds the repository file an import names, by relative path or by path suffix."""

    def __init__(self, files: Iterable[str]):
        self.files = set(files)
        self.by_suffix: dict[str, set[str]] = {}
        self.dirs: dict[str, set[str]] = {}  # directory suffix → files directly in it (Go packages)
        for f in self.files:
            parts = f.split("/")
            for i in range(len(parts) - 1):
                self.dirs.setdefault("/".join(parts[i:-1]), set()).add(f)
            for i in range(len(parts)):
                self.by_suffix.setdefault("/".join(parts[i:]), set()).add(f)
                stem = "/".join(parts[i:]).rsplit(".", 1)[0]
                self.by_suffix.setdefault(stem, set()).add(f)
                if parts[-1].startswith(("__init__.", "index.", "mod.")):
                    self.by_suffix.setdefault("/".join(parts[i:-1]), set()).add(f)

    def resolve(self, spec: str, importer: str) -> set[str]:
        spec = spec.strip()
        if not spec:
            return set()
        here = posixpath.dirname(importer)
        if spec.startswith("."):
            if "/" in spec or spec in (".", ".."):
                rel = posixpath.normpath(posixpath.join(here, spec))
            else:  # Python relative import: one dot is this package, each further dot one up
                dots = len(spec) - len(spec.lstrip("."))
                base = here
                for _ in range(dots - 1):
                    base = posixpath.dirname(base)
                rel = posixpath.join(base, spec.lstrip(".").replace(".", "/")) if spec.lstrip(".") else base
            return self._lookup(rel, exact=True)
        if "/" in spec or PurePosixPath(spec).suffix in EXTENSIONS:
            direct = self._lookup(posixpath.normpath(posixpath.join(here, spec)), exact=True)
            if direct:
                return direct
            found = self._lookup(spec.lstrip("/"), exact=False)
            segments = spec.strip("/").split("/")
            while not found and segments:  # a Go import path: module prefix, then the package dir
                found = set(self.dirs.get("/".join(segments), set()))
                segments = segments[1:]
            return found
        dotted = spec.replace("::", ".").replace("\\", ".").split(".")
        dotted = [p for p in dotted if p not in ("crate", "self", "super", "*", "")]
        while dotted:  # `from a.b import c` and `import a.b.C` name a file, a package, or something in one
            found = self._lookup("/".join(dotted), exact=False)
            if found:
                return found
            dotted = dotted[:-1]
        return set()

    def _lookup(self, rel: str, *, exact: bool) -> set[str]:
        if exact:
            if rel in self.files:
                return {rel}
            found = {f for f in self.by_suffix.get(rel, set()) if f.startswith(rel)}
            return found
        return set(self.by_suffix.get(rel, set()))


def import_specs(path: str, source: bytes) -> list[str]:
    """What the file imports, as written: module names, dotted names or quoted paths."""
    grammar = grammar_for(path)
    language = load(grammar) if grammar else None
    if grammar is None or language is None:
        return []
    tree = Parser(language).parse(source)
    specs: list[str] = []
    stack: list[Node] = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in grammar.imports:
            specs += _specs_of(grammar.name, node)
            continue
        stack.extend(node.named_children)
    return specs


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


def _specs_of(language: str, node: Node) -> list[str]:
    text = _text(node)
    if node.type in ("call_expression", "call", "command"):
        head = _text(
            node.child_by_field_name("function")
            or node.child_by_field_name("method")
            or node.child_by_field_name("name")
        )
        if head not in _REQUIRE_CALLS:
            return []
        quoted = _STRING.findall(text)
        if quoted:
            return quoted[:1]
        words = text.split()
        return words[1:2] if language == "bash" else []
    if language == "python":
        module = node.child_by_field_name("module_name")
        if module is not None:
            base = _text(module)
            names = [_text(n) for n in node.children_by_field_name("name")]
            joined = [
                f"{base}.{n.split(' as ')[0]}" if not base.endswith(".") else base + n.split(" as ")[0] for n in names
            ]
            return [*joined, base]
        return [_text(n).split(" as ")[0] for n in node.children_by_field_name("name")]
    quoted = _STRING.findall(text)
    if quoted:
        return quoted
    words = text.replace(";", " ").split()
    names = [w for w in words if w not in ("import", "use", "using", "mod", "pub", "static", "package", "as")]
    return [names[0].rstrip("{").rstrip(":")] if names else []


def scan(repo: str) -> dict[str, dict[str, Any]]:
    """The dependency map of `repo`: {module: {depends_on: [...], paths: ["dir/", files...]}}.

    A module's paths start with its directory prefix, which owns every file under it however
    many there are; its first files follow (what an announce's derived depends_on_files draws
    on, since a prefix names no file). The root module has no prefix: it lists files only.
    """
    files = source_files(repo)
    resolver = Resolver(files)
    edges: dict[str, set[str]] = {module_of(f): set() for f in files}
    for f in files:
        source = read_source(repo, f, MAX_FILE_BYTES)  # regular files in the repository only
        if source is None:
            continue
        mine = module_of(f)
        for spec in import_specs(f, source):
            for target in resolver.resolve(spec, f):
                theirs = module_of(target)
                if theirs != mine:
                    edges[mine].add(theirs)
    owned: dict[str, list[str]] = {}
    for f in files:
        owned.setdefault(module_of(f), []).append(f)
    return {
        module: {"depends_on": sorted(deps), "paths": _paths(module, owned[module])}
        for module, deps in sorted(edges.items())
    }


def _paths(module: str, files: list[str]) -> list[str]:
    if module == ROOT_MODULE:
        return files[:MAX_PATHS]
    return [f"{module}/", *files[: MAX_PATHS - 1]]
