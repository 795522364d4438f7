"""A real nginx in front of real Huddle instances, configured by the shipped deploy/nginx/huddle.conf.

The shipped file names three instances on 127.0.0.1:3101-3103 (whose default instance names are those
ports) behind 127.0.0.1:3100. `render` swaps those ports for the test's ephemeral ones, so what runs is
the file a user copies, not a test double. nginx runs as the current user in the foreground
(`daemon off`), with its pid, logs and temp files in a temporary prefix.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "huddle.conf"
SHIPPED_LISTEN = 3100
SHIPPED_INSTANCES = (3101, 3102, 3103)
STARTUP_TIMEOUT_S = 10
# Per request: the Mcp-Session-Id it carried (or "-") and the instance that answered (X-Huddle-Instance).
ACCESS_FORMAT = "$http_mcp_session_id|$upstream_http_x_huddle_instance|$status"


def nginx_binary() -> str:
    """nginx on PATH or in /usr/sbin (Debian's package); skips locally, fails in CI, when missing."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        reason = "nginx is not installed (Debian: apt-get install -y nginx); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render(instance_ports: list[int], listen_port: int, template: str | None = None) -> str:
    """The shipped config with its example ports replaced: instance i of the file → `instance_ports[i]`.

    A file for fewer instances than the example drops the extra instances' lines (pool server, upstream
    block, map entries), exactly what a user running fewer instances would delete.
    """
    text = SHIPPED.read_text() if template is None else template
    if len(instance_ports) > len(SHIPPED_INSTANCES):
        raise ValueError(f"the shipped config names {len(SHIPPED_INSTANCES)} instances")
    for unused in SHIPPED_INSTANCES[len(instance_ports) :]:
        text = re.sub(rf"(?ms)^upstream huddle_{unused} \{{.*?^\}}\n", "", text)
        text = re.sub(rf"(?m)^.*\b{unused}\b.*\n", "", text)
    mapping = {SHIPPED_LISTEN: listen_port, **dict(zip(SHIPPED_INSTANCES, instance_ports, strict=False))}
    return re.sub(r"\b(310[0-3])\b", lambda m: str(mapping.get(int(m.group(1)), m.group(1))), text)


def main_config(prefix: Path, site: Path) -> str:
    """A minimal nginx.conf around the site file: foreground, everything under `prefix`."""
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""  # workers stay as us
    temp = "".join(
        f"    {kind}_temp_path {prefix / (kind + '_temp')};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    log_format huddle '{ACCESS_FORMAT}';\n"
        f"    access_log {prefix / 'access.log'} huddle;\n"
        f"{temp}"
        f"    include {site};\n"
        "}\n"
    )


class Nginx:
    """nginx serving `site_text` (a rendered huddle.conf) on `port`; start() returns once it accepts."""

    def __init__(self, prefix: Path, site_text: str, port: int):
        self.prefix = prefix
        self.port = port
        self.site = prefix / "huddle.conf"
        self.conf = prefix / "nginx.conf"
        self.process: subprocess.Popen[bytes] | None = None
        prefix.mkdir(parents=True, exist_ok=True)
        self.site.write_text(site_text)
        self.conf.write_text(main_config(prefix, self.site))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *extra: str) -> list[str]:
        return [
            nginx_binary(),
            "-p",
            str(self.prefix),
            "-e",
            str(self.prefix / "error.log"),
            "-c",
            str(self.conf),
            *extra,
        ]

    def check(self) -> None:
        """`nginx -t`: the rendered config parses; raises with nginx's words if not."""
        result = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise AssertionError(f"nginx -t refused the config:\n{result.stderr}")

    def start(self) -> Nginx:
        self.check()
        log = (self.prefix / "stderr.log").open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=log)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)  # polling for the listener, not waiting for time to pass
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.port} within {STARTUP_TIMEOUT_S}s:\n{self.error_log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def session_routes(self) -> dict[str, set[str]]:
        """From the access log: each MCP session id seen → the instances that answered its requests."""
        path = self.prefix / "access.log"
        routes: dict[str, set[str]] = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            session, instance, _status = line.split("|")
            if session != "-":
                routes.setdefault(session, set()).add(instance)
        return routes

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""
