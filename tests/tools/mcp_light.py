"""A pretend light switch as an MCP stdio server, written with the `mcp` SDK (the tests' server).

Tools: `light_set(on)`, `light_get()`, `slow()` (never answers: the timeout test) and `crash()`
(the process exits at once). With `LIGHT_EXIT_ONCE=<marker file>` the first process to start
creates the marker and exits after half a second by itself (the supervisor test); later ones
serve normally. With `LIGHT_STATE=<file>` every switch is written there as JSON
({"on": ..., "calls": n}), so a test in another process sees what the server was asked; with
`LIGHT_HANG=1` `light_set` notes the call ("hanging": true) and never answers (a server that
hangs). It says hello on stderr (the daemon logs it under the server's name).
"""

import asyncio
import json
import os
import sys
import threading

from mcp.server.mcpserver import MCPServer

server = MCPServer("light")
state = {"on": False}


calls = {"n": 0}


@server.tool()
async def light_set(on: bool) -> str:
    """Switch the light on or off."""
    calls["n"] += 1
    if os.environ.get("LIGHT_HANG"):
        _save({"on": state["on"], "calls": calls["n"], "hanging": True})
        await asyncio.sleep(3600)
    state["on"] = on
    _save({"on": on, "calls": calls["n"]})
    return f"the light is {'on' if on else 'off'}"


def _save(doc: dict) -> None:
    saved = os.environ.get("LIGHT_STATE")
    if saved:
        with open(saved + ".tmp", "w") as f:
            json.dump(doc, f)
        os.replace(saved + ".tmp", saved)


@server.tool()
def light_get() -> str:
    """Whether the light is on."""
    return "on" if state["on"] else "off"


@server.tool()
async def slow() -> str:
    """A tool that never answers."""
    await asyncio.sleep(3600)
    return "late"


@server.tool()
def crash() -> str:
    """The server process dies."""
    os._exit(3)


marker = os.environ.get("LIGHT_EXIT_ONCE")
if marker and not os.path.exists(marker):
    open(marker, "w").close()
    threading.Timer(0.5, lambda: os._exit(4)).start()
    print("light server starting (will exit soon)", file=sys.stderr, flush=True)
else:
    print("light server starting", file=sys.stderr, flush=True)
server.run()
