"""A pretend light switch as an MCP stdio server, written with the `mcp` SDK (the tests' server).

Tools: `light_set(on)`, `light_get()`, `slow()` (never answers: the timeout test) and `crash()`
(the process exits at once). With `LIGHT_EXIT_ONCE=<marker file>` the first process to start
creates the marker and exits after half a second by itself (the supervisor test); later ones
serve normally. It says hello on stderr (the daemon logs it under the server's name).
"""

import asyncio
import os
import sys
import threading

from mcp.server.mcpserver import MCPServer

server = MCPServer("light")
state = {"on": False}


@server.tool()
def light_set(on: bool) -> str:
    """Switch the light on or off."""
    state["on"] = on
    return f"the light is {'on' if on else 'off'}"


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
