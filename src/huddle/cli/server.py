"""`huddle server start`: run the HTTP server (MCP, REST, health) in the foreground."""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from huddle.app import build_app
from huddle.cli.runtime import (
    DataDirLock,
    add_log_file,
    check_repo,
    prepare_data_dir,
    redact_url,
    remove_own_runtime,
    write_runtime,
    write_secrets,
)
from huddle.errors import HuddleError
from huddle.logs import configure_logging
from huddle.push.ports import check_free
from huddle.settings import SECRET_SETTINGS, Settings, explicit_settings, load_settings, tenants_of
from huddle.storage import postgres
from huddle.storage.sqlite import check_schema
from huddle.transports.instance import instance_name
from huddle.transports.slow_clients import deadline_protocol
from huddle.urls import host_port, http_url


def bind_socket(host: str, port: int) -> socket.socket:
    """Binds before the app starts, so a taken port is a clear message, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise HuddleError(
                f"port {port} on {host} is already in use; pass --port N (or HUDDLE_PORT), or stop whatever holds it"
            ) from None
        where = host_port(host, port)
        raise HuddleError(f"cannot listen on {where} ({exc.strerror}); check --host and --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def write_runtime_file(settings: Settings, port: int, extra: Mapping[str, Any] | None = None) -> Path:
    """`server.json` in the data dir says which process serves which URL (one per data dir)."""
    url = http_url(settings.host, port)
    return write_runtime(
        settings.data_path,
        {
            "host": settings.host,
            "port": port,
            "url": url,
            "mcp_url": url + "/mcp",
            "project": settings.project_key,
            "auth": settings.auth,  # `huddle init` wires token-mode clients to send $HUDDLE_TOKEN
            # `huddle token` signs for these: the server's org and its other projects, however they were given.
            "org": settings.org,
            "projects": settings.projects,
            "repo": str(settings.repo_path),
            "log": str(settings.data_path / "server.log"),
            **(extra or {}),
        },
    )


def settle_mqtt_port(settings: Settings, explicit: set[str]) -> Settings:
    """The *default* MQTT port falls back to a free one when taken; a port the user chose never does.

    1883 is the port every MQTT broker wants, so on many machines it is taken. Refusing to start
    would make the zero-config default fail there; moving silently would leave subscribers on the
    wrong broker. So: say which port is taken and what the choices are, and carry on elsewhere.
    """
    own_broker = settings.mqtt_broker in ("embedded", "mosquitto") and not settings.mqtt_url
    if not own_broker or "mqtt_port" in explicit or settings.mqtt_port == 0:
        return settings
    try:
        check_free(settings.host, settings.mqtt_port)
    except HuddleError as exc:
        print(
            f"huddle: warning: {exc.message} For now Huddle's broker takes a free port (below, and in"
            f" {settings.data_path / 'server.json'}).",
            file=sys.stderr,
            flush=True,
        )
        return replace(settings, mqtt_port=0)
    return settings


class _Terminated(Exception):
    """SIGTERM, turned into an exception so the same clean stop runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def start_server(overrides: Mapping[str, Any], *, log_to_stderr: bool = True) -> int:
    """Serves until Ctrl-C or SIGTERM; holds the data dir's lock for the whole process life."""
    settings = load_settings(overrides)
    # What `huddle server restart` needs to start this same server again: server.json carries it,
    # with passwords masked; the password-bearing values go to server.secrets.json (both 0600).
    given = {name: value for name, value in overrides.items() if value is not None}
    secrets = {name: str(given[name]) for name in SECRET_SETTINGS if name in given}
    started_with = {
        "overrides": {name: redact_url(str(v)) if name in secrets else v for name, v in given.items()},
        "cwd": os.getcwd(),
    }
    prepare_data_dir(settings.data_path)
    repo_warning = check_repo(settings.repo_path, settings.repo)
    for tenant in tenants_of(settings):  # another project's repository, when given, must be there too
        if tenant.repo and not Path(tenant.repo).expanduser().is_dir():
            raise HuddleError(
                f"--projects: the repository of {tenant.org}/{tenant.project}, {tenant.repo}, is not a directory;"
                " pass the path of that project's repository, or leave it out (org/project)"
            )
    settings = settle_mqtt_port(settings, explicit_settings(overrides))
    configure_logging(settings.log_level)
    add_log_file(settings.data_path)
    if not log_to_stderr:  # a daemon: the log file is the log; stderr only catches what logging cannot
        root = logging.getLogger()
        root.removeHandler(root.handlers[0])
    lock = DataDirLock(settings.data_path)
    lock.acquire()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if repo_warning:
            print(f"huddle: warning: {repo_warning}", file=sys.stderr, flush=True)
        return _serve(settings, started_with, secrets)
    except (KeyboardInterrupt, _Terminated):
        return 0
    finally:
        remove_own_runtime(settings.data_path)
        lock.release()


def _serve(settings: Settings, started_with: Mapping[str, Any], secrets: Mapping[str, str]) -> int:
    # A clear refusal now, not a traceback from the app's startup.
    if settings.db_url:
        postgres.check_schema(settings.db_url)
    else:
        check_schema(settings.sqlite_path)
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    # The default instance name is the port actually bound (--port 0 picks one), so it is known now.
    settings = replace(settings, instance_name=instance_name(settings, port))
    huddle = build_app(settings)
    huddle.push.bind()  # the MQTT port too: taken → a clear message and exit 1, before anything runs
    signing = {"auth_key_id": huddle.credentials.key_id} if huddle.credentials is not None else {}
    write_runtime_file(
        settings,
        port,
        {"instance_name": settings.instance_name, **huddle.push.runtime_info(), **started_with, **signing},
    )
    write_secrets(settings.data_path, secrets)
    banner = (
        f"Huddle serving {settings.project_key} ({settings.repo_path}) on {http_url(settings.host, port)}"
        f" as instance {settings.instance_name}"
        f" — MCP at /mcp, dashboard at /dashboard, data in {settings.data_path}"
    )
    print(banner, flush=True)
    print(huddle.push.describe(), flush=True)
    logging.getLogger("huddle").info("%s; %s", banner, huddle.push.describe())
    config = uvicorn.Config(
        huddle.served,
        log_config=None,  # uvicorn's lines go through Huddle's JSON handlers (huddle/logs.py)
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=deadline_protocol(settings.header_timeout_s, settings.body_timeout_s),
        # Forwarded headers only from the proxies the operator names (uvicorn trusts 127.0.0.1 by default).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
    )
    # A server lives long: freeze what startup built and collect young objects less often, so the cyclic
    # GC stops stalling the event loop (gen-2 pauses of ~45 ms were seen with 200 MQTT subscribers).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal under our own
    # handlers: KeyboardInterrupt for Ctrl-C, _Terminated for SIGTERM — both a normal stop.
    uvicorn.Server(config).run(sockets=[sock])
    return 0
