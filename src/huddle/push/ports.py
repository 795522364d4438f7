"""Listening sockets for the MQTT broker, bound before the server starts so a taken port is a clear
message naming the port and the ways out — not a traceback from deep inside the event loop."""

from __future__ import annotations

import contextlib
import errno
import socket

from huddle.errors import HuddleError

CONNECT_PROBE = bytes([0x10, 0x13, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x05, 0x00, 0x07]) + b"huddle?"


def speaks_mqtt(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something on host:port answers an MQTT CONNECT with a CONNACK."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(CONNECT_PROBE)
            reply = sock.recv(4)
            with contextlib.suppress(OSError):
                sock.sendall(bytes([0xE0, 0x00]))  # DISCONNECT, politely
            return len(reply) >= 2 and reply[0] == 0x20
    except OSError:
        return False


def port_taken_message(host: str, port: int) -> str:
    who = "an MQTT broker answers there" if speaks_mqtt(host, port) else "something else listens there"
    return (
        f"MQTT port {port} on {host} is already in use ({who}). Choose one: --mqtt-port N (or"
        f" HUDDLE_MQTT_PORT; 0 picks a free port) to run Huddle's broker elsewhere; --mqtt-url"
        f" mqtt://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port} to publish to the broker that is"
        " there; or --mqtt-broker off to run without MQTT."
    )


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket for the MQTT broker; raises HuddleError with the choices when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # No SO_REUSEADDR on purpose beyond the default: two brokers must not share a port silently.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise HuddleError(port_taken_message(host, port)) from None
        raise HuddleError(
            f"cannot listen for MQTT on {host}:{port} ({exc.strerror}); check --host and --mqtt-port"
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def free_port(host: str) -> int:
    """A port that was free a moment ago (for a child broker that binds it itself)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_free(host: str, port: int) -> None:
    """Raises the port-taken message when host:port cannot be bound right now."""
    bind_tcp(host, port).close()
