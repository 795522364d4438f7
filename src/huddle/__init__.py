"""Huddle: the coordination server parallel AI coding agents talk to over MCP."""

__version__ = "0.1.0"
