"""What a tool looks like to the modes, whatever provides it.

Built-in tools and MCP servers are *sources*; the registry merges their specs
(prefixing clashing names with the source's name) and routes calls. Keeping
this module free of I/O and of the other tool modules is what lets each
source be written and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ToolSpec:
    """One tool as offered to the model: a name, what it does, a JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def as_realtime(self) -> dict[str, Any]:
        """The flat shape `session.update` takes in Qwen-Omni-Realtime."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }

    def as_chat(self) -> dict[str, Any]:
        """The nested shape of an OpenAI-compatible `tools` request entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class ToolResult:
    """What goes back to the model. Errors are results too, so it can say why."""

    text: str
    is_error: bool = False


@runtime_checkable
class ToolSource(Protocol):
    """A provider of tools: the built-ins, or one MCP server."""

    name: str

    async def start(self) -> None:
        """Begin serving; must not block on a server that is down."""

    async def stop(self) -> None:
        """Release processes and connections."""

    def specs(self) -> list[ToolSpec]:
        """The tools currently offered (empty while the source is down)."""

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Run one tool by its source-local name."""

    def status(self) -> str:
        """`up` or `down` (SPEC §6 `tools.mcp_servers`)."""
