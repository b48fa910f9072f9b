"""`voice-agent tools`: exactly what the model is offered, and which MCP servers answered.

It builds the same registry the daemon builds (`build_registry`), starts its sources for at
most `tools.timeout_s` (an MCP server that does not answer by then is shown down, as the
daemon's status would), prints the offered tools and stops them again. Timers are not touched:
no state dir is given, so nothing is loaded, scheduled or written.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from typing import Any, TextIO

from agent.config import Settings
from agent.tools.factory import build_registry, model_takes_tools


async def offered(settings: Settings) -> dict[str, Any]:
    """{"model", "takes_tools", "why", "tools": [{name, description}], "mcp_servers": {name: up/down}}."""
    takes, why = model_takes_tools(settings)
    registry = build_registry(settings)
    try:
        await asyncio.wait_for(registry.start(), settings.tools.timeout_s)
        # An MCP source's start() returns at once; wait for each one's first attempt instead.
        waits = [s.settled(settings.tools.timeout_s) for s in registry.sources if hasattr(s, "settled")]
        await asyncio.gather(*waits)
    except asyncio.TimeoutError:
        pass  # whoever has not answered yet shows as down
    try:
        specs = registry.specs() if takes else []
        servers = registry.status()["mcp_servers"]
    finally:
        await registry.stop()
    model = settings.omni.model if settings.mode == "omni" else settings.pipeline.llm_model
    return {"mode": settings.mode, "model": model, "takes_tools": takes, "why": why,
            "tools": [{"name": s.name, "description": s.description} for s in specs],
            "mcp_servers": servers}


def format_offered(doc: dict[str, Any], out: TextIO) -> None:
    print(f"Tools offered to {doc['model']} ({doc['mode']} mode):", file=out)
    if not doc["takes_tools"]:
        print(f"  none: {doc['why']}", file=out)
    elif not doc["tools"]:
        print("  none (tools.builtin is empty and no MCP server offers any)", file=out)
    width = max((len(t["name"]) for t in doc["tools"]), default=0)
    for t in doc["tools"]:
        lines = textwrap.wrap(t["description"], 96 - width) or [""]
        print(f"  {t['name']:<{width}}  {lines[0]}", file=out)
        for line in lines[1:]:
            print(f"  {'':<{width}}  {line}", file=out)
    if not doc["mcp_servers"]:
        print("MCP servers: none configured (tools.mcp)", file=out)
        return
    print("MCP servers:", file=out)
    for name, state in doc["mcp_servers"].items():
        print(f"  {name}: {'answered' if state == 'up' else 'did not answer (down)'}", file=out)


def tools_command(settings: Settings, as_json: bool = False, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    doc = asyncio.run(offered(settings))
    if as_json:
        print(json.dumps(doc, indent=2), file=out)
    else:
        format_offered(doc, out)
    return 0
