"""How Huddle writes a host and port into a URL: one place, so an IPv6 host is always bracketed."""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """`127.0.0.1:3100`, `[::1]:3100` — an IPv6 literal needs brackets, or its colons read as a port."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def http_url(host: str, port: int) -> str:
    """The base URL of a server listening on host:port."""
    return f"http://{host_port(host, port)}"
