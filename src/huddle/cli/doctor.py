"""`huddle doctor [--url URL]`: check the setup end to end, with a hint beside each failure.

Checks, in order: config, data dir, the PostgreSQL database when db_url is set (reachable, and its
schema version), server (the data dir's lock), ports, /health, MCP initialize (with the official
MCP client), MQTT (a real connect), dashboard, the repository being a git repository, and each
client config `huddle init` writes that exists in the repository (it must point at this server).
Exit 1 if any check fails. With `--url`, the server is the one at that URL and the local data dir
checks still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from huddle.cli.remote import UNREACHABLE
from huddle.cli.runtime import read_runtime, running_server, stale_runtime
from huddle.errors import HuddleError
from huddle.hook import auth_headers
from huddle.settings import Settings, load_settings
from huddle.urls import host_port, http_url

TIMEOUT_S = 10.0
# What `huddle init` writes: file in the repository → where the server entries live.
CLIENT_CONFIGS = {
    ".mcp.json": "mcpServers",
    ".cursor/mcp.json": "mcpServers",
    ".vscode/mcp.json": "servers",
    ".codex/config.toml": "mcp_servers",
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def add_doctor_parser(commands: Any) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check config, data dir, server, MCP, MQTT, dashboard, git and client configs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("--url", help="server URL (default: from the data dir's server.json)")
    doctor.add_argument("--data-dir", help="data dir [env HUDDLE_DATA_DIR; default ~/.huddle]")
    doctor.add_argument("--db-url", help="PostgreSQL database to check [env HUDDLE_DB_URL; default: config.toml's]")
    doctor.add_argument("--repo", help="repository whose git state and client configs to check (default: the server's)")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")


def run_doctor(args: argparse.Namespace) -> int:
    checks = diagnose(args.url, args.data_dir, args.repo, args.db_url)
    if args.json:
        print(json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
            if not c.ok and c.hint:
                print(f"      {'':<{width}}  → {c.hint}")
    return 0 if all(c.ok for c in checks) else 1


def diagnose(url: str | None, data_dir: str | None, repo: str | None, db_url: str | None = None) -> list[Check]:
    checks: list[Check] = []
    try:
        settings = load_settings({"data_dir": data_dir, "repo": repo, "db_url": db_url})
        checks.append(Check("config", True, "settings, environment and config.toml are valid"))
    except HuddleError as exc:
        checks.append(Check("config", False, exc.message, "fix the setting named above"))
        settings = Settings(data_dir=data_dir or Settings.data_dir, repo=repo or "")
    data = settings.data_path
    checks.append(_data_dir(data))
    server = running_server(data)
    info = server.info if server else read_runtime(data) or {}
    # The database the data dir's server was started on, when --db-url was a flag rather than config.
    db_url = settings.db_url or str((info.get("overrides") or {}).get("db_url") or "")
    if db_url:
        checks.append(_postgres(db_url))
    if url is None:
        if server is None:
            stale = stale_runtime(data)
            detail = f"no server holds {data}" + (" (server.json is stale: it crashed)" if stale else "")
            checks.append(Check("server", False, detail, f"start one: huddle server start --daemon --data-dir {data}"))
            checks.append(_port_free(settings))
        elif server.starting:
            detail = f"the server (pid {server.pid or '?'}) holding {data} is still starting"
            checks.append(Check("server", False, detail, "retry in a moment"))
        else:
            checks.append(Check("server", True, f"pid {server.pid} serves {server.url}"))
        url = server.url if server and not server.starting else http_url(settings.host, settings.port)
    else:
        checks.append(Check("server", True, f"checking the server at {url} (--url)"))
    url = url.rstrip("/")
    health = _health(url)
    checks.append(health)
    if health.ok:
        checks.append(_mcp(url, info.get("auth") == "token"))
        checks.append(_mqtt(url, info if server else {}))
        checks.append(_dashboard(url))
    repo_path = Path(repo).expanduser().resolve() if repo else Path(str(info.get("repo") or settings.repo_path))
    checks.append(_git(repo_path))
    checks.extend(_client_configs(repo_path, url + "/mcp"))
    return checks


def _data_dir(path: Path) -> Check:
    if not path.exists():
        return Check("data dir", False, f"{path} does not exist", "huddle server start creates it; or pass --data-dir")
    if not path.is_dir():
        return Check("data dir", False, f"{path} is not a directory", "pass --data-dir pointing at a directory")
    probe = path / ".doctor-probe"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check("data dir", False, f"{path} is not writable ({exc.strerror})", "fix its permissions or owner")
    return Check("data dir", True, f"{path} is writable")


def _postgres(url: str) -> Check:
    """Team mode: the PostgreSQL database answers, and holds this Huddle's schema (or none yet)."""
    from huddle.storage import migrations
    from huddle.storage.admin import PostgresDatabase
    from huddle.storage.postgres import redact

    where = redact(url)
    try:
        with PostgresDatabase(url) as db:
            applied = db.applied_versions()
    except HuddleError as exc:
        hint = "check db_url (flag, HUDDLE_DB_URL or config.toml), that PostgreSQL runs and the database exists"
        return Check("database", False, exc.message, hint)
    except Exception as exc:  # any driver failure after connecting is what this check reports
        return Check("database", False, f"{where} failed a query ({type(exc).__name__}: {exc})", "see its log")
    current = max(migrations.known_versions("postgresql"))
    version = max(applied, default=0)
    if not applied:
        detail = f"{where} answers; no Huddle schema yet (the first server start or huddle migrate creates it)"
        return Check("database", True, detail)
    if version > current or set(applied) - migrations.known_versions("postgresql"):
        detail = f"{where} has schema version {version}, newer than this Huddle's ({current})"
        return Check("database", False, detail, "upgrade Huddle on this machine to the version the servers run")
    if version < current:
        detail = f"{where} has schema version {version}, this Huddle's is {current}"
        return Check("database", False, detail, f"huddle migrate --db-url {where} (a server start migrates too)")
    return Check("database", True, f"{where} answers, schema version {version} (current)")


def _port_free(settings: Settings) -> Check:
    from huddle.push.ports import check_free

    try:
        check_free(settings.host, settings.port)
    except HuddleError as exc:
        return Check("ports", False, exc.message, "stop whatever holds it, or pass --port N")
    return Check("ports", True, f"{host_port(settings.host, settings.port)} is free for the server")


def _health(url: str) -> Check:
    try:
        body = httpx.get(url + "/health", timeout=TIMEOUT_S).json()
    except (*UNREACHABLE, ValueError) as exc:
        return Check("health", False, f"{url}/health does not answer ({type(exc).__name__})", _start_hint(url))
    if not body.get("ok") or body.get("service") != "huddle":
        return Check("health", False, f"{url}/health is not Huddle's", "is another program on that port?")
    return Check("health", True, f"huddle {body.get('version')} serves project {body.get('project')}")


TOKEN_HINT = "token mode: set HUDDLE_TOKEN (huddle token issue --agent ID) and run doctor again"


def _mcp(url: str, token_mode: bool) -> Check:
    import anyio  # heavy imports only when doctor runs: the CLI's other commands start fast
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = auth_headers()
    if token_mode and not headers:
        return Check("mcp", True, "not checked: the server runs in token mode and HUDDLE_TOKEN is not set", TOKEN_HINT)

    async def initialize() -> Check:
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(TIMEOUT_S))
        with anyio.fail_after(TIMEOUT_S):
            async with Client(streamable_http_client(url + "/mcp", http_client=http)) as client:
                tools = (await client.list_tools()).tools
        return Check("mcp", True, f"initialize ok, {len(tools)} tools listed")

    try:
        return anyio.run(initialize)
    except Exception as exc:  # any failure of the handshake is what this check reports
        return Check(
            "mcp", False, f"MCP initialize at {url}/mcp failed ({type(exc).__name__}: {exc})", _start_hint(url)
        )


def _token_agent(token: str) -> str | None:
    """The agent a token names (read, not verified: the broker verifies it)."""
    import jwt

    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return sub if isinstance(sub, str) else None


def _mqtt(url: str, info: dict[str, Any]) -> Check:
    try:
        status = httpx.post(
            url + "/api/v1/tools/coordinator_status", json={}, headers=auth_headers(), timeout=TIMEOUT_S
        ).json()["result"]
        mqtt = status.get("mqtt") or {}
    except (*UNREACHABLE, ValueError, KeyError):
        mqtt = {}
    if mqtt.get("enabled") is False or info.get("mqtt_broker") == "off":
        return Check("mqtt", True, "off (mqtt_broker=off); push goes over SSE and MCP")
    port = mqtt.get("port") or info.get("mqtt_port")
    host = mqtt.get("host") or info.get("host") or "127.0.0.1"
    if not port:
        return Check("mqtt", False, "the server reports no MQTT port", "see coordinator_status.mqtt")

    import aiomqtt
    import anyio

    # Token mode: the broker wants username = the token's agent, password = the token.
    token = os.environ.get("HUDDLE_TOKEN", "").strip()
    if info.get("auth") == "token" and not token:
        return Check("mqtt", True, "not checked: the server runs in token mode and HUDDLE_TOKEN is not set", TOKEN_HINT)
    username = _token_agent(token) if info.get("auth") == "token" else None

    async def connect() -> None:
        with anyio.fail_after(TIMEOUT_S):
            async with aiomqtt.Client(
                str(host),
                int(port),
                identifier="huddle-doctor",
                username=username,
                password=token if username else None,
            ):
                pass

    try:
        anyio.run(connect)
    except Exception as exc:  # connection refused, timeout, protocol error: all mean "not reachable"
        return Check(
            "mqtt",
            False,
            f"cannot connect to mqtt://{host}:{port} ({type(exc).__name__})",
            "check --mqtt-broker / --mqtt-url, or run with --mqtt-broker off",
        )
    return Check("mqtt", True, f"connected to mqtt://{host}:{port}")


def _dashboard(url: str) -> Check:
    try:
        response = httpx.get(url + "/dashboard", timeout=TIMEOUT_S)
    except UNREACHABLE as exc:
        return Check("dashboard", False, f"{url}/dashboard does not answer ({type(exc).__name__})", _start_hint(url))
    if response.status_code == 404:
        return Check("dashboard", True, "not served by this version")
    if response.status_code == 200:
        return Check("dashboard", True, f"{url}/dashboard answers")
    return Check("dashboard", False, f"{url}/dashboard answered HTTP {response.status_code}", "see huddle server logs")


def _git(repo: Path) -> Check:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("git", False, f"cannot run git ({exc})", "install git")
    if result.returncode != 0:
        return Check("git", False, f"{repo} is not a git repository", f"git init {repo}, or pass --repo to the server")
    return Check("git", True, f"{repo} is in the git repository {result.stdout.strip()}")


def _client_configs(repo: Path, mcp_url: str) -> list[Check]:
    checks = []
    for relative, container in CLIENT_CONFIGS.items():
        path = repo / relative
        if not path.is_file():
            continue
        name = f"client {relative}"
        hint = f"rerun `huddle init` in {repo}, or set its huddle url to {mcp_url}"
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            checks.append(Check(name, False, f"cannot parse {path} ({exc})", hint))
            continue
        entry = (data.get(container) or {}).get("huddle") if isinstance(data, dict) else None
        if not isinstance(entry, dict):
            checks.append(Check(name, False, f"no huddle entry under {container}", hint))
        elif _points_at(entry, mcp_url):
            checks.append(Check(name, True, f"huddle → {entry.get('url') or 'huddle stdio'}"))
        else:
            checks.append(Check(name, False, f"huddle points at {entry.get('url')}, not {mcp_url}", hint))
    return checks


def _points_at(entry: dict[str, Any], mcp_url: str) -> bool:
    url = entry.get("url")
    if isinstance(url, str):
        return url.rstrip("/") == mcp_url.rstrip("/")
    command = " ".join([str(entry.get("command", "")), *map(str, entry.get("args") or [])])
    return "huddle" in command  # a stdio bridge (`huddle stdio`) finds the server itself


def _start_hint(url: str) -> str:
    return f"start the server (huddle server start --daemon) or check --url {url}"
