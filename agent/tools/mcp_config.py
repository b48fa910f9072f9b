"""One `tools.mcp` entry, checked, and how MCP tools are shown to DashScope. Pure: no I/O.

Split from the source (`agent.tools.mcp`) so config validation and the name and schema rules
can be tested and reused (the registry, `voice-agent tools`) without the `mcp` package.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.config import ConfigError

# The MCP Python SDK major version this code is written for: v1 and v2 differ (reference
# function-calling.md §3: v2 has `mcp.Client`, snake_case fields and `httpx2`).
MCP_MAJOR = 2
MCP_REQUIREMENT = "mcp>=2.3,<3"
INSTALL_HINT = "pip install 'voice-agent[mcp]'"

_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_TOOL_NAME = 64  # DashScope: letters, digits, `_`, `-`, at most 64 (reference §3.3)
MAX_RESULT_CHARS = 4000  # of a tool result handed back to the model


def mcp_missing() -> str | None:
    """Why MCP servers cannot run here (None: the right `mcp` is installed)."""
    try:
        version = importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        return f"tools.mcp: MCP servers are configured but the 'mcp' package is not installed; {INSTALL_HINT}"
    major = version.split(".", 1)[0]
    if major != str(MCP_MAJOR):
        return (f"tools.mcp: needs {MCP_REQUIREMENT}, found mcp {version}; {INSTALL_HINT}")
    return None


@dataclass(frozen=True)
class McpServerConfig:
    """A stdio server (`command`, `env`) or an HTTP one (`url`, `token_file`); `allow` limits
    which of its tools the model is offered (None: all)."""

    name: str
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    token_file: str | None = None
    allow: tuple[str, ...] | None = None

    @property
    def kind(self) -> str:
        return "http" if self.url else "stdio"

    @classmethod
    def parse(cls, entry: Any, key: str = "tools.mcp") -> McpServerConfig:
        """From a config mapping (or an object with those attributes); ConfigError naming `key`."""
        raw = _as_mapping(entry, key)
        known = {"name", "command", "env", "url", "token_file", "allow"}
        for k in raw:
            if k not in known:
                raise ConfigError(f"{key}: unknown key '{k}'; valid keys: {', '.join(sorted(known))}")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{key}.name: 1-32 letters, digits, '_' or '-' (got {name!r})")
        command, url = raw.get("command"), raw.get("url")
        if bool(command) == bool(url):
            raise ConfigError(f"{key}: give either 'command' (a stdio server) or 'url' (HTTP), not both")
        if command:
            if isinstance(command, str):
                command = [command]
            if not isinstance(command, (list, tuple)) or not all(isinstance(c, str) and c for c in command):
                raise ConfigError(f"{key}.command: a list of strings, e.g. [python3, server.py]")
            if raw.get("token_file"):
                raise ConfigError(f"{key}.token_file: only for HTTP servers (with 'url')")
        if url is not None and (not isinstance(url, str) or not re.match(r"https?://", url)):
            raise ConfigError(f"{key}.url: must start with http:// or https:// (got {url!r})")
        env = raw.get("env") or {}
        if not isinstance(env, Mapping) or not all(isinstance(k, str) for k in env):
            raise ConfigError(f"{key}.env: a mapping of variable names to values")
        if url and env:
            raise ConfigError(f"{key}.env: only for stdio servers (with 'command')")
        token_file = raw.get("token_file")
        if token_file is not None and not isinstance(token_file, str):
            raise ConfigError(f"{key}.token_file: a file path")
        allow = raw.get("allow")
        if allow is not None:
            if not isinstance(allow, (list, tuple)) or not all(isinstance(a, str) for a in allow):
                raise ConfigError(f"{key}.allow: a list of tool names")
            allow = tuple(allow)
        return cls(name, tuple(command or ()), {k: str(v) for k, v in env.items()},
                   url, token_file, allow)


def _as_mapping(entry: Any, key: str) -> Mapping[str, Any]:
    if isinstance(entry, Mapping):
        return entry
    fields = ("name", "command", "env", "url", "token_file", "allow")
    if hasattr(entry, "name"):
        return {f: getattr(entry, f) for f in fields if getattr(entry, f, None) is not None}
    raise ConfigError(f"{key}: each server is a mapping like {{name: light, command: [...]}}")


def tool_name(name: str) -> str:
    """An MCP tool name as DashScope accepts it (`.` and other characters become `_`)."""
    return _UNSAFE.sub("_", name)[:MAX_TOOL_NAME] or "tool"


def tool_parameters(schema: Any) -> dict[str, Any]:
    """An MCP `inputSchema` as function `parameters`: always an object schema."""
    params = dict(schema) if isinstance(schema, Mapping) else {}
    params.pop("$schema", None)
    params["type"] = "object"
    params.setdefault("properties", {})
    return params


def result_text(content: Any, structured: Any) -> str:
    """A `CallToolResult` as the one string the model gets back (text blocks joined)."""
    parts: list[str] = []
    for block in content or ():
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    text = "\n".join(parts).strip()
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False, default=str)
    if len(text) > MAX_RESULT_CHARS:
        text = text[: MAX_RESULT_CHARS - 1] + "…"
    return text or "(no result)"
