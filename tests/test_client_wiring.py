"""Pure parts of client integration: hook payload parsing and outputs, reversible file edits."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from huddle.cli.wiring import Manifest, WiringError, block_edit, server_entry_edit, toml_table_edit
from huddle.domain import claude_hooks as wire
from huddle.errors import InvalidInput


def test_planned_ranges_find_each_old_string_in_the_current_text() -> None:
    text = "a\nb\nc\nd\n"
    edit = {"tool_name": "Edit", "tool_input": {"file_path": "/r/x.py", "old_string": "b\nc\n", "new_string": "z"}}
    assert wire.planned_ranges(edit, text) == [[2, 3]]
    multi = {"tool_name": "MultiEdit", "tool_input": {"edits": [{"old_string": "d"}, {"old_string": "nope"}]}}
    assert wire.planned_ranges(multi, text) == [[4, 4]]
    write = {"tool_name": "Write", "tool_input": {"content": "1\n2\n3"}}
    assert wire.planned_ranges(write, None) == [[1, 3]]
    assert wire.planned_ranges(edit, None) == []  # unreadable file: no ranges, still an edit


def test_applied_ranges_come_from_the_new_side_of_structured_patch_hunks() -> None:
    post = {
        "tool_name": "Edit",
        "tool_response": {"structuredPatch": [{"oldStart": 5, "oldLines": 3, "newStart": 5, "newLines": 4}]},
    }
    assert wire.applied_ranges(post) == [[5, 8]]
    created = {"tool_name": "Write", "tool_input": {"content": "x\ny\n"}, "tool_response": {"type": "create"}}
    assert wire.applied_ranges(created) == [[1, 2]]


def test_allow_carries_no_permission_decision_so_the_users_own_rules_still_apply() -> None:
    assert wire.decision_output("allow", "") == {}
    assert wire.decision_output("allow", "", "news") == {
        "hookSpecificOutput": {"hookEventName": "PreToolUse", "additionalContext": "news"}
    }
    assert wire.decision_output("deny", "held")["hookSpecificOutput"] == {
        "hookEventName": "PreToolUse",
        "permissionDecision": "deny",
        "permissionDecisionReason": "held",
    }


def test_event_names_and_session_ids_are_checked_with_the_field_named() -> None:
    assert wire.event_name("pretooluse") == "PreToolUse"
    with pytest.raises(InvalidInput) as bad:
        wire.event_name("Stop")
    assert bad.value.field == "event"
    with pytest.raises(InvalidInput) as missing:
        wire.session_id({"cwd": "/"})
    assert missing.value.field == "session_id"
    assert wire.derived_agent_id("A1B2-c3d4-e5f6") == "claude-a1b2c3d4"


def test_a_block_is_added_once_replaced_in_place_and_removed_exactly(tmp_path: Path) -> None:
    edit = block_edit(tmp_path / "AGENTS.md", "<!-- b -->", "<!-- e -->", "one")
    original = "# Title\n\ntext"
    merged = edit.merge(original)
    assert merged == "# Title\n\ntext\n\n<!-- b -->\none\n<!-- e -->\n"
    assert edit.merge(merged) == merged
    updated = block_edit(tmp_path / "AGENTS.md", "<!-- b -->", "<!-- e -->", "two").merge(merged)
    assert updated.count("<!-- b -->") == 1 and "two" in updated and "one" not in updated
    assert edit.unmerge(merged + "later\n") == "# Title\n\ntext\nlater\n"


def test_a_shell_block_goes_right_after_the_shebang_so_a_final_exit_cannot_skip_it(tmp_path: Path) -> None:
    edit = block_edit(tmp_path / "pre-commit", "# b", "# e", "check || exit $?", after_first_line=True)
    hook = "#!/bin/sh\necho mine\nexit 0\n"
    merged = edit.merge(hook)
    assert merged.splitlines()[:4] == ["#!/bin/sh", "# b", "check || exit $?", "# e"]
    assert edit.unmerge(merged) == hook


def test_toml_table_is_appended_and_a_table_the_user_wrote_is_left_alone(tmp_path: Path) -> None:
    edit = toml_table_edit(tmp_path / "config.toml", "mcp_servers.huddle", {"url": "http://h/mcp"})
    merged = edit.merge('[mcp_servers.other]\ncommand = "x"\n')
    assert tomllib.loads(merged)["mcp_servers"] == {"other": {"command": "x"}, "huddle": {"url": "http://h/mcp"}}
    mine = '[mcp_servers.huddle]\nurl = "http://mine/mcp"\n'
    assert edit.merge(mine) == mine
    with pytest.raises(WiringError, match="not valid TOML"):
        edit.merge("[broken")


def test_manifest_restores_bytes_removes_created_files_and_keeps_later_edits(tmp_path: Path) -> None:
    (tmp_path / "mcp.json").write_text('{"mcpServers": {"a": {"command": "x"}}}')
    (tmp_path / "later.json").write_text("{}")
    edits = [
        server_entry_edit(tmp_path / "mcp.json", "mcpServers", {"url": "u"}),
        server_entry_edit(tmp_path / "later.json", "mcpServers", {"url": "u"}),
        server_entry_edit(tmp_path / "sub" / "new.json", "servers", {"url": "u"}),
    ]
    manifest = Manifest(tmp_path)
    assert [manifest.apply(e) for e in edits] == ["updated", "updated", "created"]
    manifest.save()
    later = json.loads((tmp_path / "later.json").read_text())
    later["mine"] = 1
    (tmp_path / "later.json").write_text(json.dumps(later))
    again = Manifest(tmp_path)
    done = again.revert({again.key(e.path): e for e in edits})
    again.save()
    assert (tmp_path / "mcp.json").read_text() == '{"mcpServers": {"a": {"command": "x"}}}'
    assert json.loads((tmp_path / "later.json").read_text()) == {"mine": 1}
    assert not (tmp_path / "sub").exists() and not (tmp_path / ".huddle").exists()
    assert any("your later edits kept" in line for line in done)


def test_invalid_json_config_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "mcp.json").write_text("{oops")
    manifest = Manifest(tmp_path)
    with pytest.raises(WiringError, match="not valid JSON"):
        manifest.apply(server_entry_edit(tmp_path / "mcp.json", "mcpServers", {"url": "u"}))
    assert (tmp_path / "mcp.json").read_text() == "{oops"
