"""Settings are data: each one has a name, a type, a default and a help line.

Precedence, highest first: CLI flag > `HUDDLE_<NAME>` environment variable > `config.toml` in the
data dir > default. The same table feeds `--help`, the README's settings table (a test checks
that every setting is documented) and validation, so the three cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huddle.errors import InvalidInput


@dataclass(frozen=True)
class Settings:
    """Every knob Huddle has. Field metadata holds the help text shown to users."""

    host: str = field(default="127.0.0.1", metadata={"help": "Address the HTTP server binds to."})
    allowed_origins: str = field(
        default="",
        metadata={
            "help": "Comma-separated web origins (e.g. https://board.example:8443) allowed to call Huddle besides"
            " its own; every other Origin is refused on every bind."
        },
    )
    allowed_hosts: str = field(
        default="",
        metadata={
            "help": "Comma-separated host names (e.g. huddle.internal) this server is reached by; a web page"
            " served from one of them may call it, and on a loopback bind such a Host header is accepted."
        },
    )
    port: int = field(default=3100, metadata={"help": "HTTP port for /mcp, /api, /health and the dashboard."})
    data_dir: str = field(
        default="~/.huddle", metadata={"help": "Directory for the SQLite database, PID file, logs and config.toml."}
    )
    repo: str = field(default="", metadata={"help": "Repository Huddle coordinates (default: the current directory)."})
    project: str = field(default="", metadata={"help": "Project key (default: the repository directory's name)."})
    db_url: str = field(
        default="",
        metadata={
            "help": "Database URL: empty means SQLite in the data dir (huddle.db); postgresql://user@host:5432/db "
            "is team mode, where any number of Huddle processes share the database."
        },
    )
    agent_ttl_s: float = field(default=300.0, metadata={"help": "Seconds of silence after which an agent is offline."})
    intent_ttl_s: float = field(
        default=3600.0, metadata={"help": "Default lifetime of an announced intent when ttl_s is not given."}
    )
    recent_edit_window_s: float = field(
        default=600.0, metadata={"help": "How far back an edit counts as 'recent' for scoring layers 1 and 2."}
    )
    working_window_s: float = field(
        default=60.0, metadata={"help": "An agent that edited within this many seconds is 'working'."}
    )
    editing_ttl_s: float = field(
        default=120.0, metadata={"help": "Lifetime of an in-flight edit marker (start_editing) if never stopped."}
    )
    thread_timeout_s: float = field(
        default=600.0, metadata={"help": "A consultation thread with no activity for this long times out."}
    )
    max_rounds: int = field(default=4, metadata={"help": "Contest rounds after which a thread is force-resolved."})
    sweep_interval_s: float = field(
        default=1.0, metadata={"help": "How often expiry of agents, intents, threads and leases is checked."}
    )
    log_level: str = field(default="INFO", metadata={"help": "Log level: DEBUG, INFO, WARNING or ERROR."})
    max_body_bytes: int = field(default=1_048_576, metadata={"help": "Largest accepted HTTP request body."})
    max_hook_body_bytes: int = field(
        default=16_777_216,
        metadata={
            "help": "Largest accepted Claude Code hook body (POST /hooks/claude/*): a Write hook carries the whole "
            "file, and a refused hook lets the edit through."
        },
    )
    header_timeout_s: float = field(
        default=10.0, metadata={"help": "A client must send a request's headers within this many seconds (else 408)."}
    )
    body_timeout_s: float = field(
        default=30.0,
        metadata={"help": "A client must send a request's whole body within this many seconds (else 408)."},
    )
    mcp_session_idle_s: float = field(
        default=600.0, metadata={"help": "An MCP session with no request or stream in flight for this long is closed."}
    )
    mcp_sessions_per_client: int = field(
        default=256,
        metadata={
            "help": "Open MCP sessions per client address; a new one closes that client's least recently used idle one."
        },
    )
    mcp_max_sessions: int = field(
        default=2048,
        metadata={"help": "Open MCP sessions in all; a new one closes the least recently used idle one."},
    )
    mcp_stateless: str = field(
        default="off",
        metadata={
            "help": "on: MCP over Streamable HTTP keeps no sessions, so any instance behind a load balancer answers"
            " any request; handshake-era clients then get no resource notifications (they poll get_updates or"
            " follow /api/events or MQTT). off: sessions, routed back to their instance by instance_name."
        },
    )
    instance_name: str = field(
        default="",
        metadata={
            "help": "This instance's name behind a load balancer: its MCP session ids and dashboard cookie start"
            " with '<name>.' so the balancer routes them back to it (deploy/nginx/huddle.conf), and every response"
            " carries it as X-Huddle-Instance. Letters, digits, - and _ (default: the port it listens on; give"
            " instances on different hosts distinct names)."
        },
    )
    lock_ttl_s: float = field(
        default=600.0, metadata={"help": "Lease of a lock when acquire_lock gives no ttl_s (renew to keep it)."}
    )
    worker_slots: int = field(default=5, metadata={"help": "Number of worker slots handed out by claim_worker_slot."})
    tools: str = field(
        default="default",
        metadata={
            "help": "Tools MCP clients see in tools/list: toolsets and/or tool names, comma-separated (default, all,"
            " core, threads, files, locks, messages, context, tasks, push, oversight, admin). Unlisted tools stay"
            " callable; introspection describes them."
        },
    )
    analysis: str = field(
        default="on",
        metadata={
            "help": "Code intelligence in the background (symbols, co-change, merge-conflict prediction): on or off."
        },
    )
    analysis_interval_s: float = field(
        default=5.0,
        metadata={"help": "Longest pause between symbol-index passes (edits and announces wake it sooner)."},
    )
    symbol_max_file_bytes: int = field(
        default=512_000,
        metadata={"help": "Files larger than this are not parsed for symbols (edits compare by line ranges)."},
    )
    cochange_refresh_s: float = field(
        default=600.0, metadata={"help": "How often the git co-change index (layer 4) is rebuilt from git log."}
    )
    cochange_max_commits: int = field(default=2000, metadata={"help": "Most recent commits read for co-change."})
    cochange_days: float = field(default=365.0, metadata={"help": "Only commits this many days old or newer count."})
    cochange_max_files: int = field(
        default=50, metadata={"help": "Commits touching more files than this are ignored for co-change."}
    )
    merge_check_interval_s: float = field(
        default=60.0,
        metadata={"help": "How often agents' branches and worktrees are merged in memory to predict conflicts."},
    )
    mqtt_broker: str = field(
        default="embedded",
        metadata={
            "help": "MQTT broker: embedded (amqtt in the server), mosquitto (a managed child process) or off;"
            " ignored when mqtt_url is set."
        },
    )
    mqtt_port: int = field(
        default=1883,
        metadata={"help": "TCP port of the embedded/managed MQTT broker; 0 picks a free port (see server.json)."},
    )
    mqtt_url: str = field(
        default="", metadata={"help": "External MQTT broker to publish to instead, e.g. mqtt://127.0.0.1:1883."}
    )
    topic_root: str = field(
        default="huddle/{project}", metadata={"help": "MQTT topic root; {project} becomes the project key."}
    )
    auth: str = field(
        default="open",
        metadata={
            "help": "open: the agent_id a caller declares is who it is (loopback teams). token: every surface (MCP,"
            " REST, SSE, MQTT, hooks, dashboard) needs a bearer token and an agent acts only as itself"
            " (docs/security.md)."
        },
    )
    auth_secret: str = field(
        default="",
        metadata={
            "help": "Key that signs Huddle's tokens (HS256), at least 32 characters; give it by environment"
            " (HUDDLE_AUTH_SECRET). Empty in token mode: one is generated in the data dir (auth.key, mode 0600);"
            " instances sharing a database must share it."
        },
    )
    auth_previous_secret: str = field(
        default="",
        metadata={"help": "The key used before the last rotation: tokens it signed stay valid until they expire."},
    )
    registration_secret: str = field(
        default="",
        metadata={
            "help": "Lets agents register themselves in token mode (POST /api/v1/auth/register) and get their"
            " own token; empty: only `huddle token issue` hands out tokens."
        },
    )
    token_ttl_s: float = field(default=3600.0, metadata={"help": "Lifetime of an access token (refresh to renew)."})
    refresh_ttl_s: float = field(default=30 * 86400.0, metadata={"help": "Lifetime of a refresh token."})
    org: str = field(default="default", metadata={"help": "Organisation (tenant) this server's project belongs to."})
    forwarded_allow_ips: str = field(
        default="",
        metadata={
            "help": "Reverse proxies (comma-separated addresses, or *) whose X-Forwarded-For/-Proto Huddle believes,"
            " e.g. 127.0.0.1 behind a local nginx. Empty: none, so no local process can pose as another client"
            " (rate limits and lockout count by client address)."
        },
    )
    projects: str = field(
        default="",
        metadata={
            "help": "Token mode: more projects this server serves besides its own, comma-separated"
            " org/project[=repository path] (e.g. acme/web=/srv/web,globex/api). A token is good for one"
            " project of one org, and sees nothing of the others. Project names are unique on a server."
        },
    )
    rate_limit_per_s: float = field(
        default=50.0,
        metadata={
            "help": "Requests a second each agent (or, before authentication, each client address) may make after"
            " its burst; more get 429 with Retry-After. 0 turns rate limits off."
        },
    )
    rate_limit_burst: int = field(
        default=200,
        metadata={"help": "Requests an agent or client address may make at once before rate_limit_per_s applies."},
    )
    lockout_failures: int = field(
        default=10,
        metadata={
            "help": "Bad tokens or registration secrets from one client address, or for one agent id, within"
            " lockout_s that lock it out for lockout_s (429). 0 turns lockout off."
        },
    )
    lockout_s: float = field(
        default=300.0,
        metadata={"help": "How long a lockout lasts, and the window in which lockout_failures are counted."},
    )
    auth_issuer: str = field(
        default="",
        metadata={
            "help": "An external OIDC/OAuth issuer (e.g. https://login.example.com/realms/dev) whose JWTs (RS256 or"
            " ES256, checked by its JWKS) are accepted besides Huddle's own tokens in token mode. Empty: none."
        },
    )
    auth_jwks_url: str = field(
        default="",
        metadata={
            "help": "The issuer's JWKS URL; empty: read from the issuer's /.well-known/openid-configuration"
            " (or oauth-authorization-server)."
        },
    )
    auth_audience: str = field(
        default="",
        metadata={"help": "The audience (aud) external tokens must be issued for; required with auth_issuer."},
    )
    auth_agent_claim: str = field(
        default="sub",
        metadata={"help": "The claim of an external token that names the agent (e.g. sub, azp, preferred_username)."},
    )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def repo_path(self) -> Path:
        return Path(self.repo or os.getcwd()).expanduser().resolve()

    @property
    def project_key(self) -> str:
        return self.project or self.repo_path.name or "default"

    @property
    def sqlite_path(self) -> Path:
        return self.data_path / "huddle.db"


SETTING_HELP: dict[str, str] = {f.name: str(f.metadata["help"]) for f in fields(Settings)}
ENV_PREFIX = "HUDDLE_"
# Settings whose value may carry a password (user:password@host URLs): never put in a child's argv
# (`ps` shows it to every user) nor in a file others may read.
SECRET_SETTINGS = ("db_url", "mqtt_url", "auth_secret", "auth_previous_secret", "registration_secret")
# An instance name starts MCP session ids (`<name>.<hex>`) and is matched by the load balancer's regex,
# so it is kept to characters that need no escaping in either.
INSTANCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Tenant:
    """One more project a server serves (setting `projects`)."""

    org: str
    project: str
    repo: str = ""


def tenants_of(settings: Settings) -> list[Tenant]:
    """The `projects` setting, parsed; InvalidInput names a malformed entry."""
    out = []
    for entry in (e.strip() for e in settings.projects.split(",") if e.strip()):
        where, _, repo = entry.partition("=")
        org, slash, project = where.strip().partition("/")
        if not slash or not INSTANCE_NAME.fullmatch(org) or not INSTANCE_NAME.fullmatch(project):
            raise InvalidInput(
                f"setting projects: {entry!r} is not org/project[=path]; names are 1-64 letters, digits, - or _",
                field="projects",
            )
        out.append(Tenant(org, project, repo.strip()))
    return out


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def _coerce(name: str, raw: Any) -> Any:
    """Turns a raw value from env, TOML or a flag into the setting's type, with a clear error."""
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind in ("int", int):
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind in ("float", float):
            value = float(raw)
            if not math.isfinite(value):  # inf/nan compare oddly and cannot be sent as JSON
                raise ValueError
            return value
        return str(raw)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"setting {name} must be a {kind}, got {raw!r}; fix it in the flag, {env_name(name)} or config.toml",
            field=name,
        ) from None


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Builds Settings from flags (`overrides`), the environment and the data dir's config.toml."""
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    known = set(SETTING_HELP)
    unknown = set(overrides) - known
    if unknown:
        raise InvalidInput(f"unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")

    merged: dict[str, Any] = {}
    for layer in _layers(overrides, environ):
        for name, raw in layer.items():
            merged[name] = _coerce(name, raw)
    settings = replace(Settings(), **merged)
    _validate(settings)
    return settings


def _layers(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The sources of settings, lowest precedence first: config.toml, environment, flags."""
    from_env = {name: environ[env_name(name)] for name in SETTING_HELP if env_name(name) in environ}
    # The data dir decides where config.toml lives, so it is resolved first.
    data_dir = overrides.get("data_dir") or from_env.get("data_dir") or Settings.data_dir
    from_file = _read_config_file(Path(str(data_dir)).expanduser() / "config.toml")
    return [from_file, from_env, overrides]


def explicit_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> set[str]:
    """Names the user set on purpose (flag, environment or config.toml), as opposed to defaults."""
    environ = os.environ if environ is None else environ
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return {name for layer in _layers(given, environ) for name in layer}


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML ({exc}); fix or remove it") from None
    unknown = set(data) - set(SETTING_HELP)
    if unknown:
        raise InvalidInput(f"{path} has unknown setting(s) {sorted(unknown)}; known: {sorted(SETTING_HELP)}")
    return dict(data)


def _validate(s: Settings) -> None:
    positive = (
        "agent_ttl_s",
        "intent_ttl_s",
        "recent_edit_window_s",
        "working_window_s",
        "editing_ttl_s",
        "thread_timeout_s",
        "sweep_interval_s",
        "max_body_bytes",
        "max_hook_body_bytes",
        "header_timeout_s",
        "body_timeout_s",
        "mcp_session_idle_s",
        "mcp_sessions_per_client",
        "mcp_max_sessions",
        "lock_ttl_s",
        "worker_slots",
        "analysis_interval_s",
        "symbol_max_file_bytes",
        "cochange_refresh_s",
        "cochange_max_commits",
        "cochange_days",
        "cochange_max_files",
        "merge_check_interval_s",
    )
    for name in positive:
        if getattr(s, name) <= 0:
            raise InvalidInput(f"setting {name} must be greater than 0", field=name)
    if not 0 <= s.port <= 65535:
        raise InvalidInput("setting port must be between 0 and 65535 (0 picks a free port)", field="port")
    if s.max_rounds < 1:
        raise InvalidInput("setting max_rounds must be at least 1", field="max_rounds")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise InvalidInput("setting log_level must be DEBUG, INFO, WARNING or ERROR", field="log_level")
    for origin in (o.strip() for o in s.allowed_origins.split(",") if o.strip()):
        if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1].rstrip("/"):
            raise InvalidInput(
                f"setting allowed_origins: {origin!r} is not an origin; write scheme://host[:port], comma-separated",
                field="allowed_origins",
            )
    if s.db_url and not s.db_url.startswith(("postgresql://", "postgres://")):
        raise InvalidInput(
            "setting db_url must be empty (SQLite in the data dir) or a PostgreSQL URL such as "
            "postgresql://huddle@127.0.0.1:5432/huddle",
            field="db_url",
        )
    if not 0 <= s.mqtt_port <= 65535:
        raise InvalidInput("setting mqtt_port must be between 0 and 65535 (0 picks a free port)", field="mqtt_port")
    if s.mcp_stateless not in ("on", "off"):
        raise InvalidInput("setting mcp_stateless must be on or off", field="mcp_stateless")
    if s.instance_name and not INSTANCE_NAME.fullmatch(s.instance_name):
        raise InvalidInput(
            f"setting instance_name must be 1-64 letters, digits, - or _ (it starts session ids and is matched by"
            f" the load balancer), got {s.instance_name!r}",
            field="instance_name",
        )
    if s.auth not in ("open", "token"):
        raise InvalidInput("setting auth must be open or token", field="auth")
    for name in ("auth_secret", "auth_previous_secret", "registration_secret"):
        value = getattr(s, name)
        if value and len(value) < 32:
            raise InvalidInput(
                f"setting {name} must be at least 32 characters (try: python -c 'import secrets;"
                " print(secrets.token_urlsafe(32))')",
                field=name,
            )
    for name in ("token_ttl_s", "refresh_ttl_s"):
        if getattr(s, name) <= 0:
            raise InvalidInput(f"setting {name} must be greater than 0", field=name)
    extra = tenants_of(s)
    if extra and s.auth != "token":
        raise InvalidInput(
            "setting projects needs token mode (auth = token): in open mode nothing tells one project's"
            " callers from another's",
            field="projects",
        )
    if extra and "{project}" not in s.topic_root:
        raise InvalidInput(
            "setting topic_root must contain {project} when the server serves several projects (projects), or"
            f" their MQTT topics would share one root; got {s.topic_root!r}",
            field="topic_root",
        )
    for tenant in extra:
        if tenant.repo and not Path(tenant.repo).expanduser().is_absolute():
            raise InvalidInput(
                f"setting projects: the repository of {tenant.org}/{tenant.project} must be an absolute path,"
                f" got {tenant.repo!r}",
                field="projects",
            )
    for proxy in (p.strip() for p in s.forwarded_allow_ips.split(",") if s.forwarded_allow_ips):
        if proxy != "*" and not _is_network(proxy):
            raise InvalidInput(
                f"setting forwarded_allow_ips: {proxy!r} is not an address or network; list proxies such as"
                " 127.0.0.1,10.0.0.0/8 (or * for any)",
                field="forwarded_allow_ips",
            )
    names = [s.project_key, *(t.project for t in extra)]
    if len(set(names)) != len(names):
        raise InvalidInput(f"setting projects: project names must be unique on a server, got {names}", field="projects")
    if not INSTANCE_NAME.fullmatch(s.org):
        raise InvalidInput(f"setting org must be 1-64 letters, digits, - or _, got {s.org!r}", field="org")
    if s.analysis not in ("on", "off"):
        raise InvalidInput("setting analysis must be on or off", field="analysis")
    if s.mqtt_broker not in ("embedded", "mosquitto", "off"):
        raise InvalidInput("setting mqtt_broker must be embedded, mosquitto or off", field="mqtt_broker")
    if s.mqtt_url and not s.mqtt_url.startswith(("mqtt://", "mqtts://", "ws://", "wss://")):
        raise InvalidInput(
            "setting mqtt_url must look like mqtt://host:1883 (or mqtts://, ws://, wss://)", field="mqtt_url"
        )
    if not s.topic_root.strip("/") or any(c in s.topic_root for c in "+#\0") or s.topic_root.startswith("$"):
        raise InvalidInput(
            "setting topic_root must be a plain MQTT topic such as huddle/{project} (no +, #, leading $ or empty)",
            field="topic_root",
        )
    _validate_limits(s)
    _validate_external_issuer(s)


def _validate_limits(s: Settings) -> None:
    for name in ("rate_limit_per_s", "rate_limit_burst", "lockout_failures"):
        if getattr(s, name) < 0:
            raise InvalidInput(f"setting {name} must be 0 (off) or more", field=name)
    if s.lockout_s <= 0:
        raise InvalidInput(
            "setting lockout_s must be greater than 0 (to turn lockout off, set lockout_failures to 0)",
            field="lockout_s",
        )


def secure_url(url: str) -> bool:
    """https, or plain http to this machine only: tokens and keys must not cross a network in the clear."""
    parsed = urlsplit(url)
    if not parsed.hostname or parsed.fragment:
        return False
    return parsed.scheme == "https" or (
        parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "::1", "localhost")
    )


def _validate_external_issuer(s: Settings) -> None:
    if not s.auth_issuer:
        for name in ("auth_jwks_url", "auth_audience"):
            if getattr(s, name):
                raise InvalidInput(f"setting {name} needs auth_issuer (the issuer it belongs to)", field=name)
        return
    if s.auth != "token":
        raise InvalidInput(
            "setting auth_issuer takes effect in token mode only; set auth to token", field="auth_issuer"
        )
    for name in ("auth_issuer", "auth_jwks_url"):
        value = getattr(s, name)
        if value and not secure_url(value):
            raise InvalidInput(
                f"setting {name} must be an https:// URL (http:// only to 127.0.0.1 or localhost), got {value!r}",
                field=name,
            )
    if not s.auth_audience:
        raise InvalidInput(
            "setting auth_audience is required with auth_issuer: the aud external tokens are issued for this server"
            " (otherwise a token the issuer made for any other service would be accepted)",
            field="auth_audience",
        )
    if not s.auth_agent_claim.strip():
        raise InvalidInput("setting auth_agent_claim must name a claim, e.g. sub", field="auth_agent_claim")
