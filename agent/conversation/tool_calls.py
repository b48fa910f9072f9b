"""Function calls of realtime responses, assembled and answered (pure bookkeeping, no I/O).

A response may hold several calls (the live service put two in one response, reference
`realtime-recording-text-tools.md`). Each call is assembled by `call_id` from whichever events
arrive: argument deltas (optional: the service skipped them for the second call), then
`response.function_call_arguments.done`, `response.output_item.done` of a `function_call`, or
finally the `output` of `response.done`; whichever comes first with final arguments starts the
call, exactly once. The answer is asked for once per response: when the response is done *and*
every one of its calls has a result, the results go back in call order followed by a single
`response.create`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ARGUMENT_CHARS = 64 * 1024  # a runaway argument stream is cut (the call then gets an error)


@dataclass
class Call:
    call_id: str
    name: str
    response_id: str
    parts: list[str] = field(default_factory=list)  # streamed deltas until the final text
    arguments: str | None = None  # final
    result: str | None = None

    @property
    def started(self) -> bool:
        return self.arguments is not None


class ToolCalls:
    """Calls by id, grouped by response; see the module docstring."""

    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self._done: set[str] = set()  # responses whose response.done arrived

    def pending(self) -> bool:
        """Some call is running or waiting for its response to finish."""
        return bool(self.calls)

    def responses(self) -> set[str]:
        return {c.response_id for c in self.calls.values()}

    def has(self, response_id: str) -> bool:
        return any(c.response_id == response_id for c in self.calls.values())

    def announce(self, response_id: str, call_id: str, name: str) -> None:
        """`output_item.added`: the call exists (its arguments will follow)."""
        self._get(response_id, call_id, name)

    def delta(self, response_id: str, call_id: str, delta: str) -> None:
        call = self._get(response_id, call_id, "")
        if not call.started and sum(map(len, call.parts)) < MAX_ARGUMENT_CHARS:
            call.parts.append(delta)

    def complete(self, response_id: str, call_id: str, name: str, arguments: str) -> Call | None:
        """Final arguments of a call; returns the call if it must start now (the first time)."""
        call = self._get(response_id, call_id, name)
        if call.started:
            return None
        call.name = name or call.name
        call.arguments = arguments if arguments or not call.parts else "".join(call.parts)
        call.parts.clear()
        return call

    def response_done(self, response_id: str, calls: tuple[tuple[str, str, str], ...]) -> list[Call]:
        """`response.done`: calls listed only in its output start now (returned)."""
        started = [c for cid, name, args in calls
                   if (c := self.complete(response_id, cid, name, args)) is not None]
        for call in list(self.calls.values()):  # announced but never completed: use the deltas
            if call.response_id == response_id and not call.started:
                call.arguments = "".join(call.parts)
                started.append(call)
        if self.has(response_id):
            self._done.add(response_id)
        return started

    def result(self, call_id: str, text: str) -> Call | None:
        """A call's result; None if the call is no longer wanted (dropped by a barge-in)."""
        call = self.calls.get(call_id)
        if call is None or not call.started:
            return None
        call.result = text
        return call

    def ready(self, response_id: str) -> list[Call]:
        """Every call of a finished response has its result: take them, in call order."""
        calls = [c for c in self.calls.values() if c.response_id == response_id]
        if response_id not in self._done or not calls or any(c.result is None for c in calls):
            return []
        for c in calls:
            del self.calls[c.call_id]
        self._done.discard(response_id)
        return calls

    def drop(self, response_id: str | None = None) -> list[Call]:
        """Forget the calls of `response_id` (all when None); their results will be ignored."""
        gone = [c for c in self.calls.values() if response_id is None or c.response_id == response_id]
        for c in gone:
            del self.calls[c.call_id]
        if response_id is None:
            self._done.clear()
        else:
            self._done.discard(response_id)
        return gone

    def _get(self, response_id: str, call_id: str, name: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(call_id, name, response_id)
        return call
