"""Tools the assistant may call (SPEC §11).

`spec.py` holds the shapes every tool source shares (a declared tool, a call's
result, the source protocol); built-in tools, MCP servers and the registry that
merges them plug into it, and both modes read the registry to declare tools
and to run calls.
"""
