"""Push settings come from flags, HUDDLE_* variables or config.toml, and bad values are clear errors."""

from __future__ import annotations

import pytest

from huddle.errors import InvalidInput
from huddle.settings import load_settings


def test_mqtt_settings_come_from_the_environment_and_config_toml(tmp_path):
    (tmp_path / "config.toml").write_text('mqtt_broker = "off"\ntopic_root = "team/{project}"\n')
    settings = load_settings({"data_dir": str(tmp_path)}, environ={"HUDDLE_MQTT_PORT": "0"})
    assert (settings.mqtt_broker, settings.mqtt_port, settings.topic_root) == ("off", 0, "team/{project}")
    flagged = load_settings({"data_dir": str(tmp_path), "mqtt_url": "mqtt://127.0.0.1:1883"}, environ={})
    assert flagged.mqtt_url == "mqtt://127.0.0.1:1883" and flagged.mqtt_port == 1883


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mqtt_port": 70000}, "mqtt_port must be between 0 and 65535"),
        ({"mqtt_broker": "rabbit"}, "mqtt_broker must be embedded, mosquitto or off"),
        ({"mqtt_url": "http://x"}, "mqtt_url must look like mqtt://host:1883"),
        ({"topic_root": "huddle/#"}, "topic_root must be a plain MQTT topic"),
        ({"topic_root": "$SYS/x"}, "topic_root must be a plain MQTT topic"),
    ],
)
def test_bad_push_settings_are_refused_with_what_to_use(tmp_path, overrides, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        load_settings({"data_dir": str(tmp_path), **overrides}, environ={})
