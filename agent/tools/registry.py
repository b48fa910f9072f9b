"""The one place both modes get their tools from: merged specs, routed calls, counters.

Sources (the built-ins, each MCP server) are merged in order; a name already taken by an
earlier source is offered as `<source>_<name>`, so two servers that both have `turn_on` stay
callable and the model sees unique names. A call never raises into a mode: malformed JSON
arguments, an unknown name, a source error or a timeout (`tools.timeout_s`) all come back as
`ToolResult(is_error=True)`, because the model has to be told the call failed to say so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.tools.spec import ToolResult, ToolSource, ToolSpec

log = logging.getLogger("voice-agent.tools")

MAX_RESULT_CHARS = 4000  # a tool's answer is read aloud by the model; a page of it is plenty


def _publish_nothing(event: str, **fields: Any) -> None:
    """No event stream attached (the `tools` command, unit tests)."""


class ToolRegistry:
    """Merged tool specs of several sources and the router for calls (see module docstring)."""

    def __init__(
        self,
        sources: Sequence[ToolSource],
        timeout_s: float = 10.0,
        publish: Callable[..., None] = _publish_nothing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = list(sources)
        self.timeout_s = timeout_s
        self.publish = publish
        self.clock = clock
        self.calls = 0
        self.errors = 0
        # Called as every call starts, with (name, arguments as published); each returns what
        # takes the call's result. Memory keeps the result in short (SPEC §11), which the `tool`
        # event (SPEC §12, fixed fields) does not carry, under the turn the call was made in:
        # a result that comes after a barge-in ended that turn must not land in the next one.
        self.on_call: list[Callable[[str, Any], Callable[[ToolResult], None]]] = []
        # Called when a source's tools appear or vanish (an MCP server came up or went down), so
        # a realtime session already open is offered what there is now.
        self.on_change: list[Callable[[], None]] = []
        for source in self.sources:
            hooks = getattr(source, "on_change", None)
            if isinstance(hooks, list):
                hooks.append(self._source_changed)

    # --- what the model is offered ------------------------------------------------------------

    def _routes(self) -> list[tuple[ToolSpec, ToolSource, str]]:
        """(offered spec, its source, the source-local name) for every tool, in source order."""
        taken: set[str] = set()
        routes: list[tuple[ToolSpec, ToolSource, str]] = []
        for source in self.sources:
            try:
                specs = source.specs()
            except Exception as e:  # a broken source offers nothing; it never hides the others
                log.warning("tools: %s cannot list its tools: %s", source.name, e)
                continue
            for spec in specs:
                offered = spec.name
                if offered in taken:
                    offered = f"{source.name}_{spec.name}"[:64]
                if offered in taken:
                    log.warning("tools: %s offers %s twice; the second is left out", source.name, spec.name)
                    continue
                taken.add(offered)
                routes.append((ToolSpec(offered, spec.description, spec.parameters), source, spec.name))
        return routes

    def specs(self) -> list[ToolSpec]:
        """Exactly what the model is offered (`voice-agent tools` prints this list)."""
        return [spec for spec, _, _ in self._routes()]

    def status(self) -> dict[str, Any]:
        """SPEC §6 `tools`: calls, errors, and every MCP server's up/down."""
        servers = {s.name: s.status() for s in self.sources if s.name != "builtin"}
        return {"calls": self.calls, "errors": self.errors, "mcp_servers": servers}

    def _source_changed(self) -> None:
        for hook in self.on_change:
            try:
                hook()
            except Exception:  # a listener's bug never breaks a source
                log.exception("tools: a change listener failed")

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every source at once; one that fails to start is logged and shows as down."""

        async def one(source: ToolSource) -> None:
            try:
                await source.start()
            except Exception as e:
                log.warning("tools: %s did not start: %s", source.name, e)

        await asyncio.gather(*(one(s) for s in self.sources))

    async def stop(self) -> None:
        for source in self.sources:
            try:
                await source.stop()
            except Exception as e:
                log.warning("tools: stopping %s: %s", source.name, e)

    # --- calls ---------------------------------------------------------------------------------

    async def call(self, name: str, arguments: str | dict[str, Any] | None) -> ToolResult:
        """Run tool `name` with the model's `arguments` (a JSON object text); never raises."""
        started = self.clock()
        self.calls += 1
        parsed = parse_arguments(arguments)
        shown = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        # SPEC §12 `tool` event: the arguments as an object (as the model's text if not JSON)
        published = shown if isinstance(parsed, ToolResult) else parsed
        takers = self._takers(name, published)
        result = parsed if isinstance(parsed, ToolResult) else await self._call(name, parsed)
        if result.is_error:
            self.errors += 1
            if not result.text.lower().startswith("error"):  # the model sees only the text
                result = ToolResult(f"error: {result.text}", True)
        if len(result.text) > MAX_RESULT_CHARS:
            result = ToolResult(result.text[:MAX_RESULT_CHARS] + "…", result.is_error)
        ms = round((self.clock() - started) * 1000.0, 1)
        log.info("tool %s(%s) -> %s%s (%.0f ms)", name, shown[:200],
                 "error: " if result.is_error else "", result.text[:200], ms)
        for take in takers:
            try:
                take(result)
            except Exception:  # a listener's bug never fails the call
                log.exception("tools: a result listener failed on %s", name)
        self.publish("tool", name=name, arguments=published, ok=not result.is_error, ms=ms)
        return result

    def _takers(self, name: str, published: Any) -> list[Callable[[ToolResult], None]]:
        """The `on_call` hooks' result takers for a call starting now (a failing hook is skipped)."""
        takers = []
        for hook in self.on_call:
            try:
                takers.append(hook(name, published))
            except Exception:  # a listener's bug never fails the call
                log.exception("tools: a call listener failed on %s", name)
        return takers

    async def _call(self, name: str, args: dict[str, Any]) -> ToolResult:
        route = next(((src, local) for spec, src, local in self._routes() if spec.name == name), None)
        if route is None:
            return ToolResult(f"error: there is no tool named {name!r}", True)
        source, local = route
        try:
            result = await asyncio.wait_for(source.call(local, args), self.timeout_s)
            if not isinstance(result, ToolResult):  # a source's bug is the call's error, not ours
                return ToolResult(f"error: {name} returned {type(result).__name__}, not a result", True)
            return result
        except asyncio.TimeoutError:
            return ToolResult(f"error: {name} did not answer within {self.timeout_s:g} s", True)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("tool %s failed: %s: %s", name, type(e).__name__, e)
            return ToolResult(f"error: {name} failed: {e or type(e).__name__}", True)


def parse_arguments(arguments: str | dict[str, Any] | None) -> dict[str, Any] | ToolResult:
    """The model's argument text as a dict, or the error result that tells it what was wrong."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return ToolResult(f"error: the arguments are not valid JSON: {arguments[:100]!r}", True)
    if not isinstance(value, dict):
        return ToolResult(f"error: the arguments must be a JSON object, got {arguments[:100]!r}", True)
    return value
