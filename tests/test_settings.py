"""Settings precedence: flag > HUDDLE_* environment > config.toml in the data dir > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from huddle.errors import InvalidInput
from huddle.settings import Settings, load_settings


def test_a_flag_beats_the_environment_which_beats_config_toml_which_beats_the_default(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("port = 4000\nagent_ttl_s = 90\nmax_rounds = 7\n")
    env = {"HUDDLE_DATA_DIR": str(tmp_path), "HUDDLE_PORT": "5000", "HUDDLE_AGENT_TTL_S": "45"}
    settings = load_settings({"port": 6000}, environ=env)
    assert settings.port == 6000  # flag
    assert settings.agent_ttl_s == 45.0  # environment
    assert settings.max_rounds == 7  # config.toml
    assert settings.thread_timeout_s == Settings().thread_timeout_s  # default


def test_the_data_dir_flag_decides_which_config_toml_is_read(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.toml").write_text("max_rounds = 9\n")
    assert load_settings({"data_dir": str(tmp_path / "a")}, environ={}).max_rounds == 9
    assert load_settings({"data_dir": str(tmp_path / "b")}, environ={}).max_rounds == 4


@pytest.mark.parametrize(
    ("overrides", "env", "toml", "message"),
    [
        ({}, {"HUDDLE_PORT": "eighty"}, "", "port must be a int"),
        ({"agent_ttl_s": -1}, {}, "", "agent_ttl_s must be greater than 0"),
        ({}, {}, "nonsense = 1\n", "unknown setting"),
        ({}, {}, "port = [", "not valid TOML"),
        ({"log_level": "LOUD"}, {}, "", "log_level must be"),
        ({"allowed_origins": "board.example"}, {}, "", "allowed_origins: 'board.example' is not an origin"),
        ({"allowed_origins": "https://a.example/path"}, {}, "", "is not an origin"),
        ({"header_timeout_s": 0}, {}, "", "header_timeout_s must be greater than 0"),
        ({}, {"HUDDLE_MCP_SESSIONS_PER_CLIENT": "0"}, "", "mcp_sessions_per_client must be greater than 0"),
        ({"forwarded_allow_ips": "garbage"}, {}, "", "'garbage' is not an address or network"),
        ({"forwarded_allow_ips": "1.2.3.4/99"}, {}, "", "is not an address or network"),
        ({"forwarded_allow_ips": ",,"}, {}, "", "is not an address or network"),
        ({"projects": "acme/web"}, {}, "", "projects needs token mode"),
        ({"auth": "token", "projects": "acme/web", "topic_root": "team/h"}, {}, "", r"must contain \{project\}"),
        ({"auth": "token", "projects": "acme/web=rel/path"}, {}, "", "must be an absolute path"),
        ({"auth": "token", "projects": "acme"}, {}, "", "is not org/project"),
    ],
)
def test_bad_settings_are_clear_errors(tmp_path: Path, overrides, env, toml, message) -> None:
    if toml:
        (tmp_path / "config.toml").write_text(toml)
    with pytest.raises(InvalidInput, match=message):
        load_settings({"data_dir": str(tmp_path), **overrides}, environ=env)
