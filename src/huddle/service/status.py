"""`coordinator_status`: one call that shows the whole board (agents, threads, files, intents)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from huddle import __version__
from huddle.service.agents import agent_rows
from huddle.service.context import ServiceContext
from huddle.service.intents import intent_dict
from huddle.service.overseers import OVERSEER_PREFIX
from huddle.service.threads import summary_dict
from huddle.storage.base import Unit, latest_cursor

StatusSection = Callable[[Unit], dict[str, Any]]


class StatusService:
    """Capabilities add their own sections (locks, tasks, MQTT, quota) through `sections`."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.started_at = time.time()
        self.sections: dict[str, StatusSection] = {}
        self.live_sections: dict[str, Callable[[], dict[str, Any]]] = {}

    async def status(self) -> dict[str, Any]:
        """The whole board in one read, plus every registered section (locks, tasks, MQTT…)."""

        def read(unit: Unit) -> dict[str, Any]:
            agents = agent_rows(unit, self.ctx, online_only=False, limit=1000)
            threads = unit.tx.all(
                "SELECT * FROM threads WHERE project = ? AND status IN ('open', 'resolving')"
                " ORDER BY id DESC LIMIT 100",
                (unit.project,),
            )
            intents = unit.tx.all(
                "SELECT * FROM intents WHERE project = ? AND status = 'active' AND expires_at > ?"
                " ORDER BY id DESC LIMIT 200",
                (unit.project, unit.now),
            )
            hot = unit.tx.all(  # the window's rows first, then the grouping (service/files.py IN_WINDOW_FIRST)
                "WITH e AS MATERIALIZED (SELECT path, agent_id FROM file_edits WHERE project = ? AND ts >= ?)"
                " SELECT path, COUNT(DISTINCT agent_id) AS agents, COUNT(*) AS edits FROM e"
                " GROUP BY path ORDER BY agents DESC, edits DESC, path LIMIT 20",
                (unit.project, unit.now - self.ctx.settings.recent_edit_window_s),
            )
            online = [a for a in agents if a["online"]]
            people = sum(1 for a in online if a["agent_id"].startswith(OVERSEER_PREFIX))
            out: dict[str, Any] = {
                "version": __version__,
                "project": unit.project,
                "repo": self.ctx.repo_root,
                "uptime_s": round(time.time() - self.started_at, 1),
                # online counts agents, the coordination peers; people at the dashboard apart.
                "agents": {
                    "online": len(online) - people,
                    "overseers_online": people,
                    "total": len(agents),
                    "list": agents,
                },
                "threads": {"active": len(threads), "list": [summary_dict(unit, r) for r in threads]},
                "intents": {"active": len(intents), "list": [intent_dict(r) for r in intents]},
                "file_activity": [{"path": r["path"], "agents": r["agents"], "edits": r["edits"]} for r in hot],
                "latest_cursor": latest_cursor(unit),
            }
            for name, section in self.sections.items():
                out[name] = section(unit)
            return out

        result = await self.ctx.store.read(read)
        for name, live in self.live_sections.items():
            result[name] = live()
        return result
