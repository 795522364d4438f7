"""What an agent pays before its first call: the size of `tools/list` per toolset selection.

    python benchmarks/tool_surface.py          # default, all, and each toolset on its own
    python benchmarks/tool_surface.py --quick  # default and all only

Bytes are the compact JSON of the tools/list result as the official MCP client receives it;
tokens are estimated as bytes / 4. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio
from mcp import Client

from _harness import huddle_server, machine

TOOLSETS = ("core", "threads", "files", "locks", "messages", "context", "tasks", "push")


async def listing(mcp_url: str) -> dict[str, Any]:
    async with Client(mcp_url) as client:
        tools = (await client.list_tools()).tools
    data = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    size = len(json.dumps({"tools": data}, separators=(",", ":"), ensure_ascii=False))
    return {"tools": len(tools), "bytes": size, "est_tokens": size // 4}


def measure(selection: str) -> dict[str, Any]:
    with huddle_server("--tools", selection, "--mqtt-broker", "off") as server:
        return anyio.run(listing, server.mcp_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="default and all only")
    args = parser.parse_args()
    selections = ["default", "all"] + ([] if args.quick else list(TOOLSETS))
    results = {selection: measure(selection) for selection in selections}
    print(
        json.dumps(
            {"benchmark": "tool_surface", "machine": machine(), "quick": args.quick, "results": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
