"""Shared context (SPEC F-42): decisions, discoveries, conventions, blockers and notes, searchable.

Full-text search lives in `FullText` alone: SQLite uses its FTS5 index, PostgreSQL a generated
tsvector column with a GIN index.
Only an entry's author may delete it; anyone can correct it by sharing a newer entry.
"""

from __future__ import annotations

import json
import re
from typing import Any

from huddle.domain import validate
from huddle.domain.events import EVERYONE, Kind, iso
from huddle.domain.ids import parse_ref
from huddle.errors import Forbidden, InvalidInput, NotFound
from huddle.service.agents import touch
from huddle.service.context import ServiceContext, dumps, placeholders
from huddle.storage.base import Row, Unit

TYPES = ("decision", "discovery", "convention", "blocker", "note")
MAX_CONTENT_CHARS = 20_000
MAX_TAGS = 20
MAX_KEYWORD_CHARS = 500
MAX_SEARCH_TERMS = 20
SEARCH_CANDIDATES = 5000
PREVIEW_CHARS = 500
LIMIT_RANGE = (1, 500)
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._:/+-]{0,49}$")
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def context_ref(number: int) -> str:
    return f"C-{number}"


def entry_dict(row: Row) -> dict[str, Any]:
    return {
        "id": context_ref(row["id"]),
        "agent_id": row["agent_id"],
        "type": row["type"],
        "content": row["content"],
        "tags": json.loads(row["tags"]),
        "created_at": iso(row["created_at"]),
    }


def normalize_tags(tags: list[str] | None) -> list[str]:
    out: dict[str, None] = {}
    for i, raw in enumerate(validate.items(tags, "tags", max_items=MAX_TAGS)):
        tag = raw.strip().lower() if isinstance(raw, str) else raw
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            raise InvalidInput(
                f"tags[{i}] {str(raw)[:40]!r} is not a tag: use 1-50 letters, digits and . _ : / + -",
                field=f"tags[{i}]",
            )
        out.setdefault(tag, None)
    return list(out)


class FullText:
    """The one place that knows how shared context is indexed and searched."""

    @staticmethod
    def terms(keyword: str) -> list[str]:
        words = _WORD_RE.findall(keyword.lower())
        if not words:
            raise InvalidInput(
                "keyword has no searchable words; give one or more words, e.g. 'auth token'", field="keyword"
            )
        return words[:MAX_SEARCH_TERMS]

    @staticmethod
    def index(unit: Unit, entry_id: int, content: str, tags: list[str]) -> None:
        if unit.tx.dialect == "sqlite":
            unit.tx.execute(
                "INSERT INTO shared_context_fts (rowid, content, tags) VALUES (?, ?, ?)",
                (entry_id, content, " ".join(tags)),
            )

    @staticmethod
    def remove(unit: Unit, entry_id: int) -> None:
        if unit.tx.dialect == "sqlite":
            unit.tx.execute("DELETE FROM shared_context_fts WHERE rowid = ?", (entry_id,))

    @staticmethod
    def rebuild(unit: Unit) -> int:
        """Indexes every entry afresh (after `huddle import` wrote shared_context rows directly)."""
        if unit.tx.dialect != "sqlite":
            return 0  # PostgreSQL's tsvector column is generated from the row: never stale
        unit.tx.execute("DELETE FROM shared_context_fts")
        rows = unit.tx.all("SELECT id, content, tags FROM shared_context")
        for row in rows:
            FullText.index(unit, int(row["id"]), row["content"], json.loads(row["tags"]))
        return len(rows)

    @staticmethod
    def search(unit: Unit, terms: list[str]) -> list[int]:
        """Ids of entries matching every term (as a word prefix), best match first."""
        if unit.tx.dialect == "sqlite":
            # One FTS5 index holds every project's notes: the project is filtered before the candidate
            # limit (or another project's notes could crowd mine out, and tell me they exist), and the
            # ranking is counted here, within my project — FTS5's bm25 weighs words by how common they
            # are across the whole index, every project's notes included.
            query = " ".join('"' + t.replace('"', '""') + '"*' for t in terms)
            rows = unit.tx.all(
                "SELECT c.id, c.content, c.tags FROM shared_context_fts f JOIN shared_context c ON c.id = f.rowid"
                " WHERE shared_context_fts MATCH ? AND c.project = ? ORDER BY c.id DESC LIMIT ?",
                (query, unit.project, SEARCH_CANDIDATES),
            )
            prefixes = [re.compile(r"\b" + re.escape(t), re.IGNORECASE) for t in terms]

            def hits(row: Row) -> int:
                text = f"{row['content']} {' '.join(json.loads(row['tags']))}"
                return sum(len(p.findall(text)) for p in prefixes)

            return [int(r["id"]) for r in sorted(rows, key=hits, reverse=True)]
        # PostgreSQL: the generated tsvector column (schema/postgresql/002); each word as a prefix.
        query = " & ".join(f"'{t}':*" for t in terms)  # words are [\w]+ (no quote can occur)
        rows = unit.tx.all(
            "SELECT id FROM shared_context WHERE project = ? AND search @@ to_tsquery('simple', ?)"
            " ORDER BY ts_rank(search, to_tsquery('simple', ?)) DESC, id DESC LIMIT ?",
            (unit.project, query, query, SEARCH_CANDIDATES),
        )
        return [int(r["id"]) for r in rows]


class SharedContextService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def share(self, agent_id: str, type: str, content: str, tags: list[str] | None = None) -> dict[str, Any]:
        """Records a piece of knowledge for every agent. Raises InvalidInput for a bad field."""
        agent = validate.identifier(agent_id, "agent_id")
        kind = validate.choice(type, "type", TYPES)
        text = validate.text(content, "content", max_chars=MAX_CONTENT_CHARS)
        labels = normalize_tags(tags)

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            row = unit.tx.one(
                "INSERT INTO shared_context (project, agent_id, type, content, tags, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (unit.project, agent, kind, text, dumps(labels), unit.now),
            )
            assert row is not None
            number = int(row["id"])
            unit.tx.executemany(
                "INSERT INTO shared_context_tags (project, tag, context_id) VALUES (?, ?, ?)",
                [(unit.project, tag, number) for tag in labels],
            )
            FullText.index(unit, number, text, labels)
            unit.emit(
                Kind.CONTEXT_SHARED,
                actor=agent,
                audience=[EVERYONE],
                context_id=context_ref(number),
                type=kind,
                tags=labels,
                content=text[:PREVIEW_CHARS],
                truncated=len(text) > PREVIEW_CHARS,
            )
            return {
                "shared": True,
                "id": context_ref(number),
                "type": kind,
                "tags": labels,
                "created_at": iso(unit.now),
            }

        return await self.ctx.store.write(txn)

    async def query(
        self,
        type: str | None = None,
        keyword: str | None = None,
        tag: str | None = None,
        agent_id: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """Entries matching every filter given; keyword search ranks by relevance, otherwise newest first."""
        kind = validate.choice(type, "type", TYPES) if type else None
        terms = FullText.terms(validate.text(keyword, "keyword", max_chars=MAX_KEYWORD_CHARS)) if keyword else None
        label = normalize_tags([tag])[0] if tag else None
        author = validate.identifier(agent_id, "agent_id") if agent_id else None
        count = int(validate.within(limit, "limit", LIMIT_RANGE, default=50))

        def read(unit: Unit) -> dict[str, Any]:
            sql = "SELECT * FROM shared_context WHERE project = ?"
            params: list[Any] = [unit.project]
            ranked: list[int] | None = None
            if terms is not None:
                ranked = FullText.search(unit, terms)
                if not ranked:
                    return {"entries": [], "count": 0}
                sql += f" AND id IN ({placeholders(ranked)})"
                params += ranked
            if kind:
                sql += " AND type = ?"
                params.append(kind)
            if author:
                sql += " AND agent_id = ?"
                params.append(author)
            if label:
                sql += " AND id IN (SELECT context_id FROM shared_context_tags WHERE project = ? AND tag = ?)"
                params += [unit.project, label]
            if ranked is None:
                rows = unit.tx.all(sql + " ORDER BY id DESC LIMIT ?", (*params, count))
            else:
                order = {number: position for position, number in enumerate(ranked)}
                rows = sorted(unit.tx.all(sql, params), key=lambda r: order[r["id"]])[:count]
            return {"entries": [entry_dict(r) for r in rows], "count": len(rows)}

        return await self.ctx.store.read(read)

    async def delete(self, id: str | int, agent_id: str) -> dict[str, Any]:
        """Deletes an entry. Only its author may; raises Forbidden for anyone else, NotFound for a bad id."""
        number = parse_ref(id, "C", "id")
        agent = validate.identifier(agent_id, "agent_id")

        def txn(unit: Unit) -> dict[str, Any]:
            touch(unit, agent)
            row = unit.tx.one("SELECT * FROM shared_context WHERE id = ? AND project = ?", (number, unit.project))
            if row is None:
                raise NotFound(
                    f"context entry {context_ref(number)} does not exist; query_context lists entries", field="id"
                )
            if row["agent_id"] != agent:
                raise Forbidden(
                    f"context entry {context_ref(number)} was shared by {row['agent_id']}; only its author"
                    " may delete it — share a correcting entry instead, or ask them",
                    field="agent_id",
                )
            unit.tx.execute("DELETE FROM shared_context WHERE id = ?", (number,))
            unit.tx.execute("DELETE FROM shared_context_tags WHERE context_id = ?", (number,))
            FullText.remove(unit, number)
            unit.emit(
                Kind.CONTEXT_DELETED, actor=agent, audience=[EVERYONE], context_id=context_ref(number), type=row["type"]
            )
            return {"deleted": True, "id": context_ref(number)}

        return await self.ctx.store.write(txn)
