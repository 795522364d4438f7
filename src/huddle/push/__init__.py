"""Push channels: every committed event fans out, after commit, to MQTT, SSE and MCP subscribers.

Push is a hint; `get_updates` (the event log) is the truth. See docs/push.md.
"""
