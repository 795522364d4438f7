"""`huddle token issue | revoke | sign-out`: the operator's side of token mode (SPEC F-91).

Run on the server's machine with the server's settings (the same --data-dir / --db-url /
config.toml / HUDDLE_AUTH_SECRET): the CLI signs with the server's key and records what it issued
in the server's database, so no admin token is needed to get the first one.

A revocation must reach the running server at once. With PostgreSQL every instance follows the
database's event log, so the CLI writes it there. A SQLite server does not read other processes'
commits back, so when one is running the CLI asks it over REST, with a one-minute admin token it
signs for itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from huddle.cli.runtime import data_dir_of, running_server
from huddle.domain.principal import ADMIN, AGENT, SCOPES
from huddle.errors import HuddleError
from huddle.service.credentials import Credentials, key_id, signing_secret
from huddle.service.token_codec import TokenCodec, TokenRefused
from huddle.settings import Settings, load_settings, tenants_of

T = TypeVar("T")
CLI_AGENT = "huddle:cli"  # reserved (service/credentials.py): nobody can register or sign it out


def add_token_parsers(commands: Any) -> None:
    token = commands.add_parser(
        "token",
        help="issue and revoke agents' tokens (token mode)",
        description="Tokens for token mode (auth = token). Uses the server's settings: pass the same"
        " --data-dir (or --db-url) and, if you set one, HUDDLE_AUTH_SECRET.",
    )
    token.set_defaults(print_help=token.print_help)
    actions = token.add_subparsers(dest="token_command", metavar="ACTION")
    issue = actions.add_parser("issue", help="print a new access token (and refresh token) for an agent")
    issue.add_argument("--agent", required=True, help="the agent id the token acts as, e.g. claude-frontend")
    issue.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help=f"what the token may do (repeatable; default {AGENT}): {AGENT} acts as itself, read only reads,"
        " dashboard signs a person in to the dashboard, admin does anything for anyone",
    )
    issue.add_argument("--ttl", type=float, default=None, help="lifetime in seconds [default: token_ttl_s]")
    issue.add_argument("--no-refresh", action="store_true", help="no refresh token (service tokens for CI)")
    issue.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    revoke = actions.add_parser("revoke", help="revoke one token (access or refresh)")
    revoke.add_argument("token", help="the token to revoke ('-' reads it from standard input)")
    sign_out = actions.add_parser("sign-out", help="revoke every token an agent holds (logout-all)")
    sign_out.add_argument("agent", help="the agent id")
    registration = actions.add_parser(
        "registration-secret",
        help="print the secret agents of a project register with (POST /api/v1/auth/register)",
        description="The server's registration_secret admits into its own project; each other project"
        " (setting projects) has its own, derived from it, so one org's secret admits into its project only.",
    )
    for parser in (issue, revoke, sign_out, registration):
        parser.add_argument("--data-dir", help="the server's data dir [env HUDDLE_DATA_DIR; default ~/.huddle]")
        parser.add_argument("--db-url", help="the server's PostgreSQL database (team mode)")
        parser.add_argument("--project", help="the server's project key [default: as the server would choose]")


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of the project the command acts on: the server's own, or (`--project`) one of the
    other projects it serves, with that project's org and registration secret."""
    from huddle.app import tenant_settings

    data_dir = data_dir_of(args)
    if args.project is not None and not args.project.strip():
        raise HuddleError("--project must name a project; leave it out for the server's own")
    overrides: dict[str, Any] = {"data_dir": str(data_dir), "db_url": args.db_url}
    running = running_server(data_dir)
    if running is not None:  # the running server's project, org and other projects, however they were given
        for name in ("project", "org", "projects"):
            if running.info.get(name):
                overrides[name] = running.info[name]
    base = load_settings(overrides)
    if not base.db_url and not base.sqlite_path.is_file():
        raise HuddleError(
            f"no database at {base.sqlite_path}; pass the --data-dir the server uses (or --db-url): a token"
            " recorded anywhere else would not be the server's"
        )
    tenants = tenants_of(base)
    if args.project is None or args.project == base.project_key:
        return base
    for tenant in tenants:
        if tenant.project == args.project:
            return tenant_settings(base, tenant)
    if tenants or running is not None:
        served = ", ".join([base.project_key, *(t.project for t in tenants)])
        raise HuddleError(f"this server serves {served}; there is no project {args.project[:64]!r} on it")
    return load_settings({**overrides, "project": args.project})  # a server not running: its own project


def _check_key(settings: Settings) -> str:
    """The signing key, refused when it is not the one the data dir's running server signs with."""
    secret = signing_secret(settings, create=False)
    running = running_server(Path(settings.data_path))
    served = running.info.get("auth_key_id") if running is not None else None
    if served and served != key_id(secret):
        raise HuddleError(
            "the server runs with another signing key, so its tokens would not work: run this with the"
            " HUDDLE_AUTH_SECRET (or config.toml) the server was started with"
        )
    return secret


def _with_credentials(settings: Settings, job: Callable[[Credentials], Awaitable[T]]) -> T:
    from huddle.app import build_store

    _check_key(settings)

    async def run() -> T:
        store = build_store(settings)
        await store.open()
        try:
            return await job(Credentials(store, settings, create_key=False))
        finally:
            await store.close()

    return asyncio.run(run())


def run_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.auth != "token":
        print(
            "huddle: note: this server's settings say auth = open; the token works once it runs with HUDDLE_AUTH=token",
            file=sys.stderr,
        )
    try:
        if args.token_command == "registration-secret":
            if not settings.registration_secret:
                raise HuddleError("self-registration is off: set registration_secret (HUDDLE_REGISTRATION_SECRET)")
            print(settings.registration_secret)
            return 0
        if args.token_command == "issue":
            scopes = args.scope or [AGENT]
            answer = _with_credentials(
                settings,
                lambda c: c.issue(args.agent, scopes, ttl_s=args.ttl, with_refresh=not args.no_refresh, by=CLI_AGENT),
            )
            if args.json:
                print(json.dumps(answer, indent=2))
            else:
                print(answer["access_token"])
                if "refresh_token" in answer:
                    print(f"refresh token (keep it secret): {answer['refresh_token']}", file=sys.stderr)
                print(
                    f"{args.agent}: scopes {', '.join(answer['scopes'])}, expires in {answer['expires_in']} s",
                    file=sys.stderr,
                )
            return 0
        if args.token_command == "revoke":
            token = sys.stdin.readline().strip() if args.token == "-" else args.token
            answer = _change(settings, args, "revoke", {"token": token}, lambda c: c.revoke(token))
            print(f"revoked token {answer['revoked']} of {answer['agent_id']}")
            return 0
        answer = _change(
            settings, args, "sign_out", {"agent_id": args.agent}, lambda c: c.sign_out_everywhere(args.agent)
        )
        print(f"{answer['agent_id']} is signed out everywhere: every token issued before now is refused")
        return 0
    except TokenRefused as refused:
        raise HuddleError(refused.message) from None


def _change(
    settings: Settings,
    args: argparse.Namespace,
    route: str,
    body: dict[str, Any],
    direct: Callable[[Credentials], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Through the running SQLite server when there is one (see the module doc), else directly."""
    running = running_server(Path(settings.data_path)) if not settings.db_url else None
    if running is None or not running.url.startswith("http"):
        return _with_credentials(settings, direct)

    codec = TokenCodec(_check_key(settings), clock=time.time)
    token, _ = codec.issue(CLI_AGENT, project=settings.project_key, org=settings.org, scopes={ADMIN}, ttl_s=60)
    try:
        response = httpx.post(
            f"{running.url}/api/v1/auth/{route}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        raise HuddleError(f"the server at {running.url} did not answer ({type(exc).__name__}); is it up?") from None
    envelope = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if not envelope.get("ok"):
        raise HuddleError(str(envelope.get("error") or f"the server answered HTTP {response.status_code}"))
    return dict(envelope)
