"""`huddle tasks` and `huddle locks` against a real server: readable tables, JSON, clear errors."""

from __future__ import annotations

import json

import httpx

from huddle.cli.main import main


def _rest(server, tool, **args):
    response = httpx.post(f"{server.url}/api/v1/tools/{tool}", json=args)
    assert response.json()["ok"], response.text
    return response.json()["result"]


def test_the_task_board_round_trip_through_the_cli(huddle_server, capsys, tmp_path):
    _rest(huddle_server, "register_agent", name="alice")
    url = ["--url", huddle_server.url]
    assert main(["tasks", "add", "build", "Build the wheel", "--priority", "5", *url]) == 0
    assert main(["tasks", "add", "test", "Run the tests", "--depends-on", "build", *url]) == 0
    batch = tmp_path / "tasks.json"
    batch.write_text(json.dumps([{"task_id": "deploy", "description": "Deploy", "depends_on": ["test"]}]))
    assert main(["tasks", "import", str(batch), *url]) == 0
    capsys.readouterr()
    assert main(["tasks", *url]) == 0
    board = capsys.readouterr().out
    assert board.splitlines()[0] == "3 task(s): 3 pending; 1 available"
    assert "build   available  5" in board and "deploy  pending" in board
    assert main(["tasks", "claim", "--agent", "alice", *url]) == 0
    assert "alice" in capsys.readouterr().out
    assert main(["tasks", "update", "build", "--agent", "alice", "--status", "done", *url]) == 0
    assert "now available: test" in capsys.readouterr().out
    assert main(["tasks", "--json", "available", *url]) == 0
    assert [t["task_id"] for t in json.loads(capsys.readouterr().out)["tasks"]] == ["test"]
    assert main(["tasks", "workers", "--url", huddle_server.url]) == 0
    assert "0 of 5 worker slots busy" in capsys.readouterr().out


def test_locks_are_listed_checked_and_released_through_the_cli(huddle_server, capsys):
    _rest(huddle_server, "register_agent", name="alice")
    _rest(huddle_server, "acquire_lock", agent_id="alice", path="src/auth/", ttl_s=120)
    url = ["--url", huddle_server.url]
    assert main(["locks", *url]) == 0
    assert "src/auth/  exclusive  alice" in capsys.readouterr().out
    assert main(["locks", "check", "src/auth/jwt.py", *url]) == 0
    out = capsys.readouterr().out
    assert "alice holds an exclusive lock on src/auth/" in out and "you could get intent" in out
    assert main(["locks", "release", "src/auth/", "--agent", "alice", *url]) == 0
    assert "released src/auth/" in capsys.readouterr().out


def test_the_server_url_comes_from_the_data_dir(huddle_server, capsys):
    assert main(["locks", "list", "--data-dir", str(huddle_server.data_dir)]) == 0
    assert "(no locks)" in capsys.readouterr().out


def test_cli_errors_are_one_clear_line_and_exit_1(huddle_server, capsys):
    assert main(["tasks", "claim", "--agent", "nobody", "--url", huddle_server.url]) == 1
    assert capsys.readouterr().err.startswith("huddle: agent nobody is not registered; call register_agent")
    assert main(["tasks", "add", "bad id", "x", "--url", huddle_server.url]) == 1
    assert "task_id 'bad id' is not a valid id" in capsys.readouterr().err
    assert main(["locks", "--url", "http://127.0.0.1:9"]) == 1
    assert "no Huddle server answers at http://127.0.0.1:9" in capsys.readouterr().err
