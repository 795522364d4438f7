"""The shipped nginx config (deploy/nginx/huddle.conf) is consistent and is accepted by a real nginx."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from balancer_helpers import SHIPPED, SHIPPED_INSTANCES, Nginx, free_port, nginx_binary, render
from huddle.transports.instance import SEPARATOR

UPSTREAM = re.compile(r"(?ms)^upstream (\w+) \{(.*?)^\}")
MAP = re.compile(r"(?ms)^map \$(\w+) \$(\w+) \{(.*?)^\}")


def blocks(text: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Upstream name → its servers; map target variable → map body."""
    upstreams = {name: re.findall(r"server (\S+);", body) for name, body in UPSTREAM.findall(text)}
    maps = {target: body for _, target, body in MAP.findall(text)}
    return upstreams, maps


def test_every_pooled_instance_has_its_own_upstream_and_a_route_for_its_sessions_and_dashboard_cookie() -> None:
    upstreams, maps = blocks(SHIPPED.read_text())
    pool = upstreams["huddle_pool"]
    assert pool == [f"127.0.0.1:{port}" for port in SHIPPED_INSTANCES]
    for port in SHIPPED_INSTANCES:
        assert upstreams[f"huddle_{port}"] == [f"127.0.0.1:{port}"]
        # The default instance name is the port, and ids are `<name><SEPARATOR><hex>`.
        route = f"~^{port}{re.escape(SEPARATOR)} huddle_{port};"
        assert route in maps["huddle_mcp_backend"] and route in maps["huddle_dashboard_backend"]
    assert "least_conn;" in SHIPPED.read_text().split("upstream huddle_pool", 1)[1].split("}", 1)[0]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_the_config_rendered_for_one_to_three_instances_passes_nginx_t(tmp_path: Path, count: int) -> None:
    nginx_binary()
    ports = [free_port() for _ in range(count)]
    text = render(ports, free_port())
    upstreams, _ = blocks(text)
    assert upstreams["huddle_pool"] == [f"127.0.0.1:{port}" for port in ports]
    for port in ports:
        assert f"~^{port}\\. " in text
    Nginx(tmp_path, text, free_port()).check()


def test_nginx_t_names_the_problem_in_a_broken_config(tmp_path: Path) -> None:
    nginx_binary()
    broken = render([free_port()], free_port()).replace("least_conn;", "least_conn", 1)
    with pytest.raises(AssertionError, match="nginx -t refused the config"):
        Nginx(tmp_path, broken, free_port()).check()
