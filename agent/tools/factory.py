"""Building the daemon's `ToolRegistry` from `tools` settings, and whether the model takes tools.

Every `tools.mcp` entry becomes an `agent.tools.mcp.McpSource` (one `McpServerSettings`),
appended after the built-ins so built-in names win a clash. When the `mcp` SDK is missing each
entry is an `UnavailableSource` (the daemon's preflight refuses that with exit 78 naming
`tools.mcp`; `voice-agent tools` still lists it): down, offering no tools, never blocking a turn.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.capabilities import lookup, omni_series
from agent.config import McpServerSettings, Settings
from agent.tools.builtin import BuiltinSource
from agent.tools.registry import ToolRegistry
from agent.tools.spec import ToolResult, ToolSource, ToolSpec
from agent.tools.timers import Timers, TimerStore

log = logging.getLogger("voice-agent.tools")


class UnavailableSource:
    """An MCP server that cannot be served by this installation (shown as down, says why)."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why

    async def start(self) -> None:
        log.warning("tools: MCP server %s is unavailable: %s", self.name, self.why)

    async def stop(self) -> None:
        pass

    def specs(self) -> list[ToolSpec]:
        return []

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(f"error: MCP server {self.name} is unavailable: {self.why}", True)

    def status(self) -> str:
        return "down"


def mcp_sources(entries: tuple[McpServerSettings, ...], timeout_s: float = 10.0) -> list[ToolSource]:
    """One source per `tools.mcp` entry (the MCP seam; see the module docstring)."""
    if not entries:
        return []
    try:
        from agent.tools.mcp import McpSource  # type: ignore[import-not-found,unused-ignore]
    except ImportError as e:
        return [UnavailableSource(m.name, f"MCP support is not installed ({e})") for m in entries]
    return [McpSource(m, timeout_s=timeout_s) for m in entries]


def build_registry(
    settings: Settings,
    *,
    state_dir: Path | None = None,
    volume: Callable[[int | None], int] | None = None,
    on_timer_due: Callable[[str], Awaitable[Any]] | None = None,
    publish: Callable[..., None] | None = None,
) -> ToolRegistry:
    """The registry the daemon (and `voice-agent tools`) uses; sources are not started yet."""
    t = settings.tools
    sources: list[ToolSource] = []
    if t.builtin:
        timers = None
        if "timer" in t.builtin:
            timers = Timers(TimerStore(state_dir) if state_dir is not None else None, on_timer_due)
        sources.append(BuiltinSource(t.builtin, timers=timers, volume=volume))
    sources.extend(mcp_sources(t.mcp, t.timeout_s))
    registry = ToolRegistry(sources, t.timeout_s)
    if publish is not None:
        registry.publish = publish
    return registry


def model_takes_tools(settings: Settings) -> tuple[bool, str]:
    """(can the configured model call functions, why not). Pipeline LLMs all can; omni models
    per the capability table (`function_calling` row); an unknown model is given the benefit."""
    if settings.mode == "pipeline":
        return True, ""
    model = settings.omni.model
    row = lookup("function_calling", settings.dashscope.region, omni_series(model))
    if row is not None and row.support == "no":
        return False, (f"{model} has no function calling (function-calling.md §1.1); the daemon "
                       "runs without tools; use omni.model: qwen3.5-omni-flash-realtime for tools")
    return True, ""
