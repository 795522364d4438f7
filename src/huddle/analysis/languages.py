"""Which tree-sitter grammar parses a file, and which node types are definitions in it.

Every grammar ships as its own PyPI wheel (tree-sitter-python, tree-sitter-go, …) and loads
offline; a grammar that cannot be imported makes its files fall back to the line-range rule
(edits compared by lines, no symbol names) instead of failing.
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from tree_sitter import Language

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grammar:
    """A language: its wheel, the function returning the grammar, and its definition node types."""

    name: str
    module: str
    function: str
    definitions: frozenset[str]
    # Definition types whose name is not the `name` field: node type → field holding the name.
    name_fields: dict[str, str] = field(default_factory=dict)
    # Import statements (for `huddle deps scan`).
    imports: frozenset[str] = frozenset()


_C_DEFS = frozenset({"function_definition", "struct_specifier", "union_specifier", "enum_specifier"})
_JS_DEFS = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "method_definition",
        "variable_declarator",  # only when its value is a function (see symbols.py)
    }
)
_TS_DEFS = _JS_DEFS | {
    "abstract_class_declaration",
    "interface_declaration",
    "enum_declaration",
    "internal_module",
    "type_alias_declaration",
    "method_signature",
    "abstract_method_signature",
}

GRAMMARS: dict[str, Grammar] = {
    "python": Grammar(
        "python",
        "tree_sitter_python",
        "language",
        frozenset({"function_definition", "class_definition"}),
        imports=frozenset({"import_statement", "import_from_statement"}),
    ),
    "javascript": Grammar(
        "javascript",
        "tree_sitter_javascript",
        "language",
        _JS_DEFS,
        imports=frozenset({"import_statement", "call_expression"}),
    ),
    "typescript": Grammar(
        "typescript",
        "tree_sitter_typescript",
        "language_typescript",
        _TS_DEFS,
        imports=frozenset({"import_statement", "call_expression"}),
    ),
    "tsx": Grammar(
        "tsx",
        "tree_sitter_typescript",
        "language_tsx",
        _TS_DEFS,
        imports=frozenset({"import_statement", "call_expression"}),
    ),
    "go": Grammar(
        "go",
        "tree_sitter_go",
        "language",
        frozenset({"function_declaration", "method_declaration", "type_spec"}),
        imports=frozenset({"import_spec"}),
    ),
    "rust": Grammar(
        "rust",
        "tree_sitter_rust",
        "language",
        frozenset({"function_item", "struct_item", "enum_item", "trait_item", "impl_item", "mod_item", "union_item"}),
        name_fields={"impl_item": "type"},
        imports=frozenset({"use_declaration", "mod_item"}),
    ),
    "java": Grammar(
        "java",
        "tree_sitter_java",
        "language",
        frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "method_declaration",
                "constructor_declaration",
            }
        ),
        imports=frozenset({"import_declaration"}),
    ),
    "c": Grammar(
        "c",
        "tree_sitter_c",
        "language",
        _C_DEFS,
        name_fields={"function_definition": "declarator"},
        imports=frozenset({"preproc_include"}),
    ),
    "cpp": Grammar(
        "cpp",
        "tree_sitter_cpp",
        "language",
        _C_DEFS | {"class_specifier", "namespace_definition"},
        name_fields={"function_definition": "declarator"},
        imports=frozenset({"preproc_include"}),
    ),
    "csharp": Grammar(
        "csharp",
        "tree_sitter_c_sharp",
        "language",
        frozenset(
            {
                "namespace_declaration",
                "class_declaration",
                "struct_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "method_declaration",
                "constructor_declaration",
            }
        ),
        imports=frozenset({"using_directive"}),
    ),
    "ruby": Grammar(
        "ruby",
        "tree_sitter_ruby",
        "language",
        frozenset({"module", "class", "method", "singleton_method"}),
        imports=frozenset({"call"}),
    ),
    "php": Grammar(
        "php",
        "tree_sitter_php",
        "language_php",
        frozenset(
            {
                "function_definition",
                "class_declaration",
                "interface_declaration",
                "trait_declaration",
                "method_declaration",
            }
        ),
        imports=frozenset(
            {"require_expression", "require_once_expression", "include_expression", "include_once_expression"}
        ),
    ),
    "kotlin": Grammar(
        "kotlin",
        "tree_sitter_kotlin",
        "language",
        frozenset({"class_declaration", "object_declaration", "function_declaration"}),
        imports=frozenset({"import"}),
    ),
    "swift": Grammar(
        "swift",
        "tree_sitter_swift",
        "language",
        frozenset(
            {"class_declaration", "protocol_declaration", "function_declaration", "protocol_function_declaration"}
        ),
        imports=frozenset({"import_declaration"}),
    ),
    "bash": Grammar(
        "bash",
        "tree_sitter_bash",
        "language",
        frozenset({"function_definition"}),
        imports=frozenset({"command"}),
    ),
}

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".swift": "swift",
    ".sh": "bash",
    ".bash": "bash",
}


def grammar_for(path: str) -> Grammar | None:
    """The grammar for a path by its extension, or None for a language Huddle does not parse."""
    name = EXTENSIONS.get(PurePosixPath(path).suffix.lower())
    return GRAMMARS.get(name) if name else None


def load(grammar: Grammar) -> Language | None:
    """The compiled grammar, or None (logged once) when its wheel is not installed."""
    return _load(grammar.name)


@functools.cache
def _load(name: str) -> Language | None:
    grammar = GRAMMARS[name]
    try:
        module = importlib.import_module(grammar.module)
        return Language(getattr(module, grammar.function)())
    except (ImportError, AttributeError, ValueError) as exc:
        log.warning("tree-sitter grammar for %s unavailable (%s); using the line-range rule", grammar.name, exc)
        return None


def available() -> dict[str, bool]:
    """Language name → whether its grammar loads here (for /readyz and the README's claim)."""
    return {name: load(g) is not None for name, g in GRAMMARS.items()}
