"""/metrics parses with the Prometheus client's own parser and moves with the calls; OpenAPI 3.1 validates."""

from __future__ import annotations

from typing import Any

import httpx
from mcp import Client
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from helpers import ServerProcess, call, call_error


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}, parsed by prometheus_client."""
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_parse_and_their_counters_move_with_the_calls_made(huddle_server: ServerProcess):
    before = scrape(huddle_server.url)
    assert value(before, "huddle_tool_calls_total", tool="register_agent", outcome="ok") == 0
    async with Client(huddle_server.mcp_url) as client:
        for name in ("alice", "bob", "carol"):
            await call(client, "register_agent", name=name)
        await call(client, "announce_work", agent_id="alice", subject="a", target_files=["src/a.py"])
        consult = await call(client, "announce_work", agent_id="bob", subject="b", target_files=["src/a.py"])
        assert consult["verdict"] == "consult"
        await call_error(client, "complete_work", agent_id="carol", intent_id="I-999")
        await call(client, "acquire_lock", agent_id="carol", path="docs/")
    httpx.post(huddle_server.url + "/api/v1/tools/list_agents", json={}).raise_for_status()  # REST counts too

    after = scrape(huddle_server.url)
    assert value(after, "huddle_tool_calls_total", tool="register_agent", outcome="ok") == 3
    assert value(after, "huddle_tool_calls_total", tool="complete_work", outcome="not_found") == 1
    assert value(after, "huddle_tool_calls_total", tool="list_agents", outcome="ok") == 1
    assert value(after, "huddle_tool_call_seconds_count", tool="announce_work") == 2
    assert value(after, "huddle_announces_total", verdict="proceed") == 1
    assert value(after, "huddle_announces_total", verdict="consult") == 1
    assert value(after, "huddle_scoring_layer_firings_total", layer="0a") >= 1
    assert value(after, "huddle_open_threads") == 1
    assert value(after, "huddle_leases") == 1
    assert value(after, "huddle_agents_online") == 3
    assert value(after, "huddle_queue_length", queue="lock_waiters") == 0
    assert ("huddle_subscribers", (("channel", "sse"),)) in after
    commits = value(after, "huddle_sqlite_commit_batch_size_count")
    assert commits >= 6 and value(after, "huddle_sqlite_commit_seconds_count") == commits


async def test_introspection_and_calls_refused_at_argument_validation_are_counted_on_both_transports(
    huddle_server: ServerProcess,
):
    async with Client(huddle_server.mcp_url) as client:
        await call(client, "introspection")
        await call_error(client, "register_agent", name=5)  # MCP: refused before the operation runs
        await call_error(client, "complete_work", agent_id="nobody", intent_id="I-1")  # ran: not_found
    rest = huddle_server.url + "/api/v1/tools/"
    assert httpx.post(rest + "register_agent", json={"name": ["x"]}).status_code == 422
    assert httpx.post(rest + "no_such_tool", json={}).status_code >= 400  # unknown: never a label

    after = scrape(huddle_server.url)
    assert value(after, "huddle_tool_calls_total", tool="introspection", outcome="ok") == 1
    assert value(after, "huddle_tool_calls_total", tool="register_agent", outcome="invalid") == 2
    assert value(after, "huddle_tool_calls_total", tool="complete_work", outcome="invalid") == 0
    assert value(after, "huddle_tool_calls_total", tool="complete_work", outcome="not_found") == 1
    assert not any(labels and ("tool", "no_such_tool") in labels for _, labels in after)


def test_the_openapi_document_validates_and_holds_every_tool(huddle_server: ServerProcess):
    document = httpx.get(huddle_server.url + "/api/v1/openapi.json").json()
    validate(document)  # raises with the JSON path of the first problem
    assert document["openapi"].startswith("3.1")
    tools = httpx.get(huddle_server.url + "/api/v1/tools").json()["tools"]
    assert len(tools) > 50
    for tool in tools:
        operation = document["paths"][f"/api/v1/tools/{tool['name']}"]["post"]
        assert operation["operationId"] == tool["name"] and operation["tags"] == [tool["toolset"]]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert set(schema.get("required", [])) == set(tool["input_schema"].get("required", []))
    assert "/metrics" in document["paths"] and "/health" in document["paths"]
