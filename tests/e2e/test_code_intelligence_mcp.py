"""Through the official MCP client: a git intent without files, and symbols in the evidence."""

from __future__ import annotations

from mcp import Client

from helpers import call, call_error


async def test_a_rebase_announced_over_mcp_with_no_files_concerns_the_agent_editing_that_branch(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
        await call(alice, "register_agent", name="alice", branch="feature")
        await call(bob, "register_agent", name="bob")
        await call(alice, "log_file_edit", agent_id="alice", path="src/auth.py", ranges=[[3, 9]])
        result = await call(
            bob, "announce_work", agent_id="bob", subject="rebase feature", kind="git_rebase", branch="feature"
        )
        assert result["verdict"] == "consult"
        evidence = result["impacts"][0]["evidence"][0]
        assert (evidence["layer"], evidence["score"], evidence["branch"]) == ("5", 90, "feature")


async def test_an_edit_announced_over_mcp_without_files_is_refused_naming_the_field(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as bob:
        await call(bob, "register_agent", name="bob")
        message = await call_error(bob, "announce_work", agent_id="bob", subject="edit")
        assert "target_files" in message
