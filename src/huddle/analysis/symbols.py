"""Definitions (functions, classes, methods — nested too) with their line ranges, via tree-sitter.

Names are qualified by their enclosing definitions (`Greeter.hello`), lines are 1-based and
inclusive. Edits map to the innermost definition containing them; an edit outside every
definition keeps its bare line range (the line-range rule, also used for unparsed languages).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tree_sitter import Node, Parser

from huddle.analysis.languages import Grammar, grammar_for, load
from huddle.domain.symbols import Span

# Declarator nodes that wrap the name of a C/C++ function: descend through them.
_DECLARATOR_NAMES = frozenset(
    {"identifier", "field_identifier", "qualified_identifier", "destructor_name", "operator_name", "type_identifier"}
)
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})


@dataclass(frozen=True)
class Definition:
    name: str  # qualified by the enclosing definitions: Outer.inner
    kind: str  # the tree-sitter node type
    start: int  # first line, 1-based
    end: int  # last line, inclusive

    def contains(self, first: int, last: int) -> bool:
        return self.start <= first and last <= self.end

    def overlaps(self, first: int, last: int) -> bool:
        return self.start <= last and first <= self.end


def parse_definitions(path: str, source: bytes) -> list[Definition] | None:
    """Definitions in `source`, in document order; None when no grammar parses this file type."""
    grammar = grammar_for(path)
    language = load(grammar) if grammar else None
    if grammar is None or language is None:
        return None
    tree = Parser(language).parse(source)
    out: list[Definition] = []
    stack: list[tuple[Node, str]] = [(tree.root_node, "")]
    while stack:
        node, scope = stack.pop()
        inner_scope = scope
        if node.type in grammar.definitions:
            name = _name(grammar, node)
            if name:
                qualified = f"{scope}.{name}" if scope else name
                out.append(Definition(qualified, node.type, node.start_point[0] + 1, _last_line(node)))
                inner_scope = qualified
        stack.extend((child, inner_scope) for child in reversed(node.named_children))
    return out


def _last_line(node: Node) -> int:
    # A node ending at column 0 ends with the newline of the line before it.
    row, column = node.end_point
    return max(node.start_point[0] + 1, row if column == 0 else row + 1)


def _text(node: Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


def _name(grammar: Grammar, node: Node) -> str:
    if node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        return _text(node.child_by_field_name("name")) if value is not None and value.type in _FUNCTION_VALUES else ""
    if node.type == "method_declaration" and grammar.name == "go":
        # Go methods are named by receiver type, like methods nested in a class elsewhere.
        receiver = _text(node.child_by_field_name("receiver")).strip("()").split()
        owner = receiver[-1].lstrip("*").split("[")[0] if receiver else ""
        name = _text(node.child_by_field_name("name"))
        return f"{owner}.{name}" if owner else name
    field = grammar.name_fields.get(node.type, "name")
    target = node.child_by_field_name(field)
    if field == "declarator":
        # C/C++: function_definition → (pointer_)declarator → function_declarator → identifier.
        while target is not None and target.type not in _DECLARATOR_NAMES:
            target = target.child_by_field_name("declarator")
    if target is None and node.type in ("module", "class") and grammar.name == "ruby":
        target = node.child_by_field_name("name")
    return _text(target).replace("::", ".")


def symbols_for_ranges(definitions: Sequence[Definition], ranges: Iterable[Sequence[int]]) -> list[Span]:
    """Each edited range as the innermost definition containing it, or as its bare lines."""
    spans: dict[str, Span] = {}
    for first, last in ranges:
        inner = [d for d in definitions if d.contains(first, last)]
        if inner:
            best = min(inner, key=lambda d: d.end - d.start)
            spans.setdefault(best.name, Span(best.name, best.start, best.end))
        else:
            touched = [d for d in definitions if d.overlaps(first, last)]
            for d in touched:
                spans.setdefault(d.name, Span(d.name, d.start, d.end))
            if not touched:
                label = f"lines {first}-{last}"
                spans.setdefault(label, Span(label, first, last, bare=True))
    return list(spans.values())


def resolve_names(definitions: Sequence[Definition], names: Iterable[str]) -> list[Span]:
    """Announced symbol names as spans: `hello` matches `Greeter.hello`; unknown names keep no lines."""
    out = []
    for name in names:
        found = [d for d in definitions if d.name == name or d.name.endswith("." + name)]
        if found:
            out += [Span(d.name, d.start, d.end) for d in found]
        else:
            out.append(Span(name, None, None))
    return out
