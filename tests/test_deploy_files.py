"""The Prometheus alert rules and the Grafana dashboard only use metrics Huddle really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from mcp import Client

from helpers import ServerProcess, call
from test_metrics_openapi import scrape

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
METRIC = re.compile(r"\bhuddle_[a-z_]+")


def alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "huddle-alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "huddle-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_alert_rule_has_a_name_an_expression_a_severity_and_a_summary():
    rules = alert_rules()
    assert len(rules) >= 5
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["labels"]["severity"], rule  # type: ignore[index]
        assert rule["annotations"]["summary"], rule  # type: ignore[index]


async def test_the_alerts_and_the_dashboard_only_use_metrics_the_server_exposes(huddle_server: ServerProcess):
    async with Client(huddle_server.mcp_url) as client:  # give every labelled family a sample
        for name in ("alice", "bob"):
            await call(client, "register_agent", name=name)
        await call(client, "announce_work", agent_id="alice", subject="a", target_files=["a.py"])
        await call(client, "announce_work", agent_id="bob", subject="b", target_files=["a.py"])
    exposed = {name for name, _ in scrape(huddle_server.url)}
    used = {m for expr in [*(str(r["expr"]) for r in alert_rules()), *dashboard_exprs()] for m in METRIC.findall(expr)}
    assert len(used) >= 10
    assert used <= exposed, f"not exposed by /metrics: {sorted(used - exposed)}"
