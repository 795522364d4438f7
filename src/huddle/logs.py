"""Huddle's log: one JSON object per line on stderr, for Huddle, uvicorn and the libraries alike.

Lines are written by python-json-logger, so quotes, newlines and tracebacks in a message are
escaped and every line parses (`jq` works on the log). Per-connection chatter of the MCP SDK
(a line for each session created, idle or rejected), amqtt and `transitions` stays out of INFO:
it shows at DEBUG only.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

FIELDS = "{asctime}{levelname}{name}{message}"
RENAMED = {"asctime": "ts", "levelname": "level", "name": "logger", "message": "msg"}
CHATTY = ("mcp", "amqtt", "transitions", "httpx")


def json_formatter() -> logging.Formatter:
    return JsonFormatter(FIELDS, style="{", rename_fields=RENAMED, json_ensure_ascii=False)


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Routes every logger through one JSON handler on `stream` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in CHATTY:
        logging.getLogger(name).setLevel(quiet)
    # uvicorn installs no handlers of its own (log_config=None); its loggers reach the root one.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
