"""Every log line is one JSON object, whatever the message holds (issue 7, defect 9)."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from mcp import Client

from huddle.logs import configure_logging


def test_messages_with_quotes_newlines_and_tracebacks_are_one_json_object_per_line() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        log = logging.getLogger("huddle.test")
        log.info('he said "stop"\nthen {left} \\ with a backslash')
        log.warning("path %s", 'C:\\x "y"')
        try:
            raise ValueError('bad "value"\nsecond line')
        except ValueError:
            log.exception("failed on %r", "café ☕")
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        logging.getLogger("mcp.server.streamable_http_manager").info("Created new transport with session ID: x")
    finally:
        configure_logging("WARNING")
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4  # the SDK's per-session INFO line is not there
    assert records[0]["msg"] == 'he said "stop"\nthen {left} \\ with a backslash'
    assert records[0]["level"] == "INFO" and records[0]["logger"] == "huddle.test" and records[0]["ts"]
    assert records[1]["msg"] == 'path C:\\x "y"'
    assert 'ValueError: bad "value"\nsecond line' in records[2]["exc_info"]
    assert records[2]["msg"] == "failed on 'café ☕'"
    assert records[3]["logger"] == "uvicorn.error"


async def test_the_server_log_is_json_lines_without_per_session_chatter(tmp_path: Path) -> None:
    data, repo = tmp_path / "data", tmp_path / "repo"
    repo.mkdir()
    args = [sys.executable, "-m", "huddle.cli.main", "server", "start", "--port", "0", "--mqtt-port", "0"]
    args += ["--data-dir", str(data), "--repo", str(repo), "--log-level", "INFO"]
    stderr_path = tmp_path / "stderr.log"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while not (data / "server.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = json.loads((data / "server.json").read_text())["port"]
        url = f"http://127.0.0.1:{port}"
        async with Client(url + "/mcp") as client:
            await client.call_tool("register_agent", {"name": 'quote"and\nnewline'})
        httpx.post(url + "/api/v1/tools/register_agent", content=b"\x00garbage", headers={"content-type": "x"})
        # An invalid request line makes uvicorn itself log a warning.
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b'GET /"quoted"\x01 HTTP/1.1\r\n\r\n')
            raw.settimeout(10)
            raw.recv(1024)
    finally:
        process.terminate()
        process.wait(timeout=10)
    # stderr also carries one-line start-up warnings for the human at the terminal ("huddle: …");
    # every other line there, and every line of the log file, is a JSON record.
    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("huddle: ")]
    log_file = [line for line in (data / "server.log").read_text().splitlines() if line.strip()]
    assert lines and log_file, "the server wrote no log at all"
    records = [json.loads(line) for line in [*lines, *log_file]]
    assert all({"ts", "level", "logger", "msg"} <= set(record) for record in records)
    assert any(record["logger"].startswith("uvicorn") for record in records), lines
    assert not any("Created new transport" in line or "Processing request" in line for line in lines)
