"""`huddle deps scan` derives the module map from imports and can hand it to a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from git_helpers import commit, driven_coordinator, init_repo
from helpers import ServerProcess
from huddle.cli.main import main

SOURCES = {
    "app/main.py": "import os\nfrom lib.util import helper\nfrom . import views\n",
    "app/views.py": "def page():\n    return 1\n",
    "lib/util.py": "def helper():\n    return 2\n",
    "web/index.ts": 'import { x } from "../shared/x";\nexport const y = x;\n',
    "shared/x.ts": "export const x = 1;\n",
    "go.mod": "module example.com/demo\n",
    "cmd/main.go": 'package main\n\nimport "example.com/demo/pkg/store"\n\nfunc main() { store.Open() }\n',
    "pkg/store/store.go": "package store\n\nfunc Open() {}\n",
    "native/main.c": '#include "../include/api.h"\n#include <stdio.h>\nint main(void) { return 0; }\n',
    "include/api.h": "int api(void);\n",
    "jsrc/com/demo/app/App.java": "package com.demo.app;\nimport com.demo.lib.Util;\nclass App {}\n",
    "jsrc/com/demo/lib/Util.java": "package com.demo.lib;\npublic class Util {}\n",
    "scripts/run.sh": "source ../tools/env.sh\necho run\n",
    "tools/env.sh": "export X=1\n",
}


@pytest.fixture
def sources(repo: Path) -> Path:
    init_repo(repo)
    commit(repo, SOURCES, "sources")
    return repo


def scan_json(repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["deps", "scan", "--repo", str(repo), "--json", *extra]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_scan_derives_module_edges_from_imports_in_several_languages(
    sources: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    modules = scan_json(sources, capsys)["modules"]
    edges = {m: spec["depends_on"] for m, spec in modules.items()}
    assert edges["app"] == ["lib"]  # `import os` is not a module of this repository
    assert edges["web"] == ["shared"]
    assert edges["cmd"] == ["pkg/store"]
    assert edges["native"] == ["include"]
    assert edges["jsrc/com/demo/app"] == ["jsrc/com/demo/lib"]
    assert edges["scripts"] == ["tools"]
    assert edges["lib"] == []
    assert modules["app"]["paths"] == ["app/", "app/main.py", "app/views.py"]


def test_scan_of_a_directory_without_sources_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deps", "scan", "--repo", str(tmp_path)]) == 1
    assert "no source files" in capsys.readouterr().err


def test_scan_write_sets_the_servers_map_so_blast_radius_answers_from_it(
    sources: Path, huddle_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    result = scan_json(sources, capsys, "--write", "--url", huddle_server.url)
    assert result["written"]["modules"] == len(result["modules"])
    response = httpx.post(f"{huddle_server.url}/api/v1/tools/get_blast_radius", json={"module": "lib"}, timeout=10)
    affected = response.json()["result"]["affected"]
    assert affected == [{"module": "app", "distance": 1}]


async def test_with_no_map_set_by_hand_the_server_derives_one_and_a_hand_map_always_wins(
    sources: Path, tmp_path: Path, backend: dict[str, str]
) -> None:
    async with driven_coordinator(tmp_path, sources, **backend) as c:
        derived = await c.analysis.refresh_dependency_map()
        assert derived["source"] == "scan"
        radius = await c.depmap.blast_radius(module="lib")
        assert radius["affected"] == [{"module": "app", "distance": 1}]
        owners = await c.depmap.blast_radius(path="lib/util.py")
        assert owners["modules"] == ["lib"]
        await c.depmap.set_map({"core": {"depends_on": [], "paths": ["lib/"]}})
        again = await c.analysis.refresh_dependency_map()
        assert again["source"] == "hand"
        info = await c.depmap.module_info("core")
        assert info["paths"] == ["lib/"]


async def test_the_map_feeds_layers_0b_and_0c_when_an_announce_names_no_dependencies(
    sources: Path, tmp_path: Path, backend: dict[str, str]
) -> None:
    async with driven_coordinator(tmp_path, sources, **backend) as c:
        await c.analysis.refresh_dependency_map()
        for agent in ("alice", "bob", "carol"):
            await c.agents.register(agent)
        await c.intents.announce("alice", "util rewrite", ["lib/util.py"])
        result = await c.intents.announce("bob", "main tweak", ["app/main.py"])
        evidence = result["impacts"][0]["evidence"][0]
        assert (result["impacts"][0]["agent_id"], evidence["layer"], evidence["files"]) == (
            "alice",
            "0b",
            ["lib/util.py"],
        )
        later = await c.intents.announce("carol", "util too", ["lib/util.py"], target_symbols=[])
        layers = {i["agent_id"]: {e["layer"] for e in i["evidence"]} for i in later["impacts"]}
        assert layers["bob"] == {"0c"}
