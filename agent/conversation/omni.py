"""Omni mode's conversation rules as a Sans-I/O reducer: server events in, actions out.

`OmniConversation` is to `agent.omni.OmniMode` what websockets' `Protocol` is to its
`Connection`: every rule about turns, barge-in, late audio of a cancelled response, heard-ms,
latency and "is it quiet enough to rotate" lives here, and the driver only executes the returned
actions (play, flush, send, report) and runs the timers. Time comes in as `now`; the state of
the output device (busy, what a flush interrupted, what came out of the speaker) comes in as
arguments. Nothing here awaits, sleeps, reads a clock or touches a socket, so the rules are
tested by replaying event sequences in milliseconds (tests/omni/test_omni_conversation.py).

The one response registry is `ResponseRegistry` (which response is active, which are dropped,
whether the user speaks) plus the turn each response answers.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from agent.conversation.actions import BargeIn, Begin, End, ErrorEarcon, Feed, Flush, SetState
from agent.conversation.omni_actions import (
    Action,
    AskSettled,
    Caption,
    ClearErrorIf,
    CountTurn,
    Fail,
    FinishTurn,
    Log,
    PublishTurn,
    RecordHeard,
    RecordLatency,
    RunTool,
    Send,
    SetHeardMs,
    Warn,
)
from agent.conversation.omni_asks import PendingAsk, PendingAsks
from agent.conversation.tool_calls import ToolCalls
from agent.modes import Turn
from agent.realtime import protocol as p
from agent.status import AgentState

QUIET_BEFORE_ROTATION_S = 2.0  # the speaker must have been silent this long before a rotation
DROPPED_IDS_KEPT = 64  # a long session cancels many responses; the newest ids are enough
# A finished answer shows "listening" only over these: a turn a lost session ended finishes
# while the status says "reconnecting", and must not hide that.
SERVING_STATES = frozenset({AgentState.IDLE, AgentState.LISTENING, AgentState.THINKING, AgentState.SPEAKING})

# The actions (agent.conversation.omni_actions) are re-exported: the driver and tests say `c.Send`.
__all__ = ["Action", "AskSettled", "BargeIn", "Begin", "Caption", "ClearErrorIf", "CountTurn",
           "End", "ErrorEarcon", "Fail", "Feed", "FinishTurn", "Flush", "Log", "OmniConversation", "PendingAsk",
           "PublishTurn", "RecordHeard", "RecordLatency", "ResponseRegistry", "RunTool", "Send",
           "SetHeardMs", "SetState", "Warn"]


# --- the registry ----------------------------------------------------------------------------


class ResponseRegistry:
    """What the server has told us: the session, the active response, cancelled responses.

    Only one response is active at a time (reference §7). Audio of a cancelled or interrupted
    response is discarded by id, because deltas already in flight keep arriving after a cancel.
    """

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.voice: str | None = None
        self.active_response: str | None = None
        self.last_user_item: str | None = None
        self.user_speaking = False
        self._dropped: deque[str] = deque(maxlen=DROPPED_IDS_KEPT)

    @property
    def response_in_progress(self) -> bool:
        return self.active_response is not None

    def receive(self, event: p.ServerEvent) -> p.ServerEvent:
        """Update the registry from one server event and return it."""
        if isinstance(event, p.SessionCreated):
            self.session_id = event.session_id
            self.voice = event.voice
        elif isinstance(event, p.SessionUpdated):
            self.voice = event.voice or self.voice
        elif isinstance(event, p.ResponseCreated):
            self.active_response = event.response_id
        elif isinstance(event, p.ResponseDone):
            if self.active_response == event.response_id or not event.response_id:
                self.active_response = None
        elif isinstance(event, p.SpeechStarted):
            self.user_speaking = True
            self.last_user_item = event.item_id or self.last_user_item
        elif isinstance(event, p.SpeechStopped):
            self.user_speaking = False
        return event

    def is_dropped(self, response_id: str) -> bool:
        return response_id in self._dropped

    def drop(self, response_id: str | None) -> None:
        """Discard any further audio of this response (barge-in, cancel)."""
        if response_id and response_id not in self._dropped:
            self._dropped.append(response_id)

    def cancel(self) -> list[dict[str, Any]]:
        """Barge-in: drop the active response's audio; `response.cancel` only if one is in progress."""
        if self.active_response is None:
            return []
        self.drop(self.active_response)
        return [p.response_cancel()]

    def reset(self) -> None:
        """A new connection starts a new session; nothing of the old one is active any more."""
        dropped = self._dropped
        self.__init__()  # type: ignore[misc]
        self._dropped = dropped


# --- the conversation ------------------------------------------------------------------------


class OmniConversation:
    """Turns, barge-in, heard-ms and latency of omni mode; see the module docstring."""

    def __init__(self, *, log_transcripts: bool = False) -> None:
        self.log_transcripts = log_transcripts
        self.registry = ResponseRegistry()
        self.current: Turn | None = None  # the turn the next response answers
        self.by_response: dict[str, Turn] = {}
        self.session_started = 0.0
        self.last_speech_started_at: float | None = None
        self._stale_error: str | None = None  # the error shown when the session (re)connected
        self._failed_error: str | None = None  # the status error of the last failed response
        self._barging: str | None = None  # the active response when the flush was asked for
        self.asks = PendingAsks()  # `ask` text turns the server has not taken yet
        self.tool_calls = ToolCalls()
        self._calling: dict[str, Turn] = {}  # response with calls → the turn its answer finishes
        self._requested = False  # we sent `response.create` for `current`; no response began yet

    # --- views -------------------------------------------------------------------------------

    @property
    def user_speaking(self) -> bool:
        return self.registry.user_speaking

    @property
    def response_in_progress(self) -> bool:
        return self.registry.response_in_progress

    def rotation_due(self, now: float, *, max_age_s: float, output_busy: bool,
                     output_quiet_since: float) -> bool:
        """The session is `max_age_s` old and nobody speaks: rotating now cuts no utterance."""
        quiet = (not self.user_speaking and not self.response_in_progress and not output_busy
                 and not self.tool_calls.pending() and not self._requested
                 and now - output_quiet_since > QUIET_BEFORE_ROTATION_S)
        return now - self.session_started >= max_age_s and quiet

    def quiet_for_announcement(self, output_response: str | None) -> bool:
        """No Omni answer is streaming into the player and the user is not speaking."""
        return not self.response_in_progress and not self.user_speaking and output_response is None

    # --- session lifecycle -------------------------------------------------------------------

    def session_opened(self, now: float, last_error: str | None) -> list[Action]:
        """A configured session: a fresh registry (dropped ids survive), and `last_error` is
        remembered so that the first answer can clear it."""
        self.registry.reset()
        self.tool_calls.drop()  # results of calls of the old session have nowhere to go
        self._calling.clear()
        self._requested = False
        self.session_started = now
        self._stale_error = last_error
        return [*self.asks.settle_all("the session was replaced"), SetState(AgentState.LISTENING, "connected")]

    def session_lost(self) -> list[Action]:
        """The session is gone: an answer still streaming gets no more audio, a pending ask fails,
        and a turn in progress ends as failed (`_abandon`)."""
        rid = self.registry.active_response
        actions: list[Action] = [*self.asks.settle_all("the realtime session was lost"),
                                 *([End(rid)] if rid else [])]
        return actions + self._abandon(rid, "the realtime session was lost")

    def _abandon(self, rid: str | None, why: str) -> list[Action]:
        """End every turn still waiting for the service (its answer streaming, its tools
        running, or its answer asked for and not begun) as failed: counted, published, and
        the error earcon, once. A turn waiting only for the server's VAD to answer (a few
        hundred ms) is not one: the server might never have answered it (noise)."""
        turns: list[tuple[Turn, str]] = []
        cut: list[Action] = []  # a turn the user had already cut off ends as interrupted only
        if rid and (turn := self.by_response.pop(rid, None)):
            if self.registry.is_dropped(rid):
                turn.interrupted = True
                cut = [CountTurn(), FinishTurn(turn, rid)]
            else:
                turns.append((turn, rid))
        turns += [(turn, r) for r, turn in self._calling.items()]
        self._calling.clear()
        self.tool_calls.drop()
        if self._requested and self.current is not None and all(t is not self.current for t, _ in turns):
            turns.append((self.current, ""))
        self._requested = False
        self.registry.reset()  # a second report of the same loss finds nothing in progress
        self.current = None
        actions: list[Action] = []
        for turn, r in turns:
            turn.interrupted, turn.error = True, why
            actions += [CountTurn(), FinishTurn(turn, r)]
        if not turns:
            return cut
        return [*cut, *actions, Log(f"{why}: the turn in progress failed"), ErrorEarcon()]

    # --- server events -----------------------------------------------------------------------

    def receive(self, event: p.ServerEvent, now: float, *, output_busy: bool = False) -> list[Action]:
        """One server event; `output_busy`: the player has a response queued or audible."""
        self.registry.receive(event)
        if isinstance(event, p.AudioDelta):
            if self.registry.is_dropped(event.response_id):
                return []  # in flight when we cancelled it
            return [Feed(event.response_id, event.pcm), SetState(AgentState.SPEAKING)]
        if isinstance(event, p.SpeechStarted):
            self.last_speech_started_at = now
            return self.interrupt(output_busy=output_busy)
        if isinstance(event, p.SpeechStopped):
            self._new_turn().speech_end_at = now
            return [SetState(AgentState.THINKING)]
        if isinstance(event, p.TranscriptionCompleted):
            (self.current or self._new_turn()).heard = event.transcript
            caption: list[Action] = [Caption("user", event.transcript, True)]
            return [Log(f"heard: {event.transcript}"), *caption] if self.log_transcripts else caption
        if isinstance(event, p.ResponseCreated):
            self._requested = False
            turn = self.current or self._new_turn()
            turn.response_id = event.response_id
            self.by_response[event.response_id] = turn
            return [Begin(event.response_id)]
        if isinstance(event, p.TranscriptDelta):
            turn = self.by_response.get(event.response_id)
            if turn is not None and not self.registry.is_dropped(event.response_id):
                turn.answered += event.delta
                return [Caption("assistant", turn.answered, False)]
            return []
        if isinstance(event, p.TranscriptDone):
            turn = self.by_response.get(event.response_id)
            if turn is not None and event.transcript:
                turn.answered = event.transcript
            if turn is not None and not self.registry.is_dropped(event.response_id):
                return [Caption("assistant", turn.answered, True)]
            return []
        if isinstance(event, p.ResponseDone):
            return self._response_done(event)
        if isinstance(event, p.ItemCreated):
            return self._item_created(event)
        if isinstance(event, (p.FunctionCall, p.FunctionCallArgumentsDelta)):
            return self._function_call(event)
        if isinstance(event, p.ErrorEvent):
            text = f"server error {event.code or event.error_type}: {event.message}"
            if event.fatal:
                return [*self.asks.settle_all(text), Fail(text)]
            # It may have refused the answer asked for: stop waiting for it (rotation, `_abandon`).
            self._requested = False
            refused = self.asks.refused(event)
            return refused if refused is not None else [Log(f"{text} (tolerated)")]  # e.g. a cancel that raced the natural end
        return []

    def _item_created(self, event: p.ItemCreated) -> list[Action]:
        """The server confirmed a user text item: now (and only now) ask for the answer."""
        ask = self.asks.confirmed(event)
        return [] if ask is None else self._answer(ask)

    def _answer(self, ask: PendingAsk) -> list[Action]:
        """The ask's turn begins: its text is the user's words, and its answer is asked for."""
        turn = self._new_turn()
        turn.heard = ask.text
        turn.speech_end_at = ask.asked_at
        self._requested = True
        return [Caption("user", ask.text, True), Send(p.response_create()), AskSettled(ask.event_id, None)]

    def _function_call(self, event: p.FunctionCall | p.FunctionCallArgumentsDelta) -> list[Action]:
        rid = event.response_id or (self.registry.active_response or "")
        if self.registry.is_dropped(rid):
            return []  # a call of a cancelled response is never run
        if isinstance(event, p.FunctionCallArgumentsDelta):
            self.tool_calls.delta(rid, event.call_id, event.delta)
            return []
        if not event.complete:
            self.tool_calls.announce(rid, event.call_id, event.name)
            return []
        call = self.tool_calls.complete(rid, event.call_id, event.name, event.arguments)
        return [] if call is None else self._run(call.call_id, call.name, call.arguments or "")

    def _run(self, call_id: str, name: str, arguments: str) -> list[Action]:
        return [SetState(AgentState.THINKING, f"calling {name}"), RunTool(call_id, name, arguments)]

    def tool_result(self, call_id: str, text: str) -> list[Action]:
        """A tool finished. Once every call of its response has answered (and the response is
        done), the results go back followed by one `response.create`; a result of a call that
        a barge-in dropped is not sent, so it is never spoken."""
        call = self.tool_calls.result(call_id, text)
        if call is None:
            return [Log(f"tool result for {call_id} dropped (the call was cancelled)")]
        return self._answer_calls(call.response_id)

    def _answer_calls(self, rid: str) -> list[Action]:
        calls = self.tool_calls.ready(rid)
        if not calls:
            return []
        turn = self._calling.pop(rid, None)
        if turn is not None:
            self.current = turn  # the answer to the results finishes the same turn
            self._requested = True
        return [*(Send(p.function_call_output(c.call_id, c.result or "")) for c in calls),
                Send(p.response_create()), SetState(AgentState.THINKING)]

    def _response_done(self, event: p.ResponseDone) -> list[Action]:
        rid = event.response_id
        actions: list[Action] = [End(rid)]
        ran: list[str] = []  # calls of a failed response that had started before it failed
        if self.registry.is_dropped(rid) or event.status != "completed":
            ran = [c.name for c in self.tool_calls.drop(rid) if c.started]
        else:
            for call in self.tool_calls.response_done(rid, event.calls):
                actions += self._run(call.call_id, call.name, call.arguments or "")
            if self.tool_calls.has(rid):  # the turn goes on with the answer to the results
                turn = self.by_response.pop(rid, None)
                if turn is not None:
                    self._calling[rid] = turn
                    if self.current is turn:
                        self.current = None
                return actions + self._answer_calls(rid)
        turn = self.by_response.pop(rid, None)
        if turn is None:
            return actions
        if not turn.answered and event.text:
            turn.answered = event.text  # text output without streamed transcript deltas
        if event.status == "failed" and not self.registry.is_dropped(rid):
            # shown in the status until an answer completes (the session itself is fine)
            why = "the service failed the response" + (f" ({event.reason})" if event.reason else "")
            turn.error = self._failed_error = why
            late = f"; {', '.join(ran)} ran, its result will not be spoken" if ran else ""
            actions += [Log(f"response {rid} failed: the turn gets no more of its answer{late}"),
                        Warn(why), ErrorEarcon()]
        if event.status != "completed":
            turn.interrupted = True
        else:
            actions.append(ClearErrorIf(self._stale_error))
            if self._failed_error is not None:
                actions.append(ClearErrorIf(self._failed_error))
                self._failed_error = None
        actions.append(CountTurn())
        if self.log_transcripts and turn.answered:
            actions.append(Log(f"answered{' (interrupted)' if turn.interrupted else ''}: {turn.answered}"))
        actions.append(FinishTurn(turn, rid))
        if self.current is turn:
            self.current = None
        return actions

    # --- control inputs and reports from the driver --------------------------------------------

    def interrupt(self, *, output_busy: bool) -> list[Action]:
        """Barge-in (the user spoke, or `interrupt` from software): silence first, then `flushed`."""
        actions: list[Action] = [SetState(AgentState.LISTENING)]
        self._barging = self.registry.active_response
        dropped = self._drop_calls()
        if self._barging is None and not output_busy:
            return [*actions, *dropped, *([BargeIn()] if dropped else [])]
        return [*actions, *dropped, Flush()]  # `flushed()` counts the barge-in

    def _drop_calls(self) -> list[Action]:
        """Barge-in while tools run: their results will not be answered; their turn ends here."""
        actions: list[Action] = []
        for rid in self.tool_calls.responses():
            names = ", ".join(c.name for c in self.tool_calls.drop(rid))
            actions.append(Log(f"barge-in during a tool call ({names}): its result will not be spoken"))
            if (turn := self._calling.pop(rid, None)) is not None:
                turn.interrupted = True
                actions += [CountTurn(), FinishTurn(turn, rid)]
        return actions

    def flushed(self, flushed_rid: str | None) -> list[Action]:
        """The output was flushed (it was playing `flushed_rid`): cancel on the server, drop the
        deltas still in flight, and measure how much of the answer was heard."""
        interrupted = self._barging or flushed_rid
        self._barging = None
        cancel = self.registry.cancel()
        self.registry.drop(interrupted)
        self.tool_calls.drop(interrupted)
        turn = self.by_response.get(interrupted or "")
        if turn is not None:
            turn.interrupted = True
        actions: list[Action] = [BargeIn(), *(Send(ev, best_effort=True) for ev in cancel)]
        if interrupted:
            actions.append(RecordHeard(interrupted))
        return actions

    def heard(self, rid: str, heard_ms: float) -> list[Action]:
        """The flush of `rid` reached the output after `heard_ms` of the answer had played."""
        return [SetHeardMs(round(heard_ms, 1)),
                Log(f"barge-in: the user interrupted after {heard_ms:.0f} ms of the answer")]

    def output_finished(self, turn: Turn, *, found: bool, interrupted: bool = False,
                        first_audible: float | None = None,
                        heard_ms: float | None = None) -> list[Action]:
        """The answer of `turn` left the speaker (`found`: the player knew the response):
        latency is end of user speech → first audible sample; then the turn is published."""
        actions: list[Action] = []
        if found and interrupted:
            turn.interrupted = True  # flushed at the output, even if the server had finished
        if turn.interrupted and heard_ms is not None:
            turn.heard_ms = round(heard_ms, 1)
        if found and first_audible is not None and turn.speech_end_at is not None:
            turn.latency_ms = (first_audible - turn.speech_end_at) * 1000.0
            actions.append(RecordLatency(turn.latency_ms))
        if not self.response_in_progress and not self.user_speaking:
            actions.append(SetState(AgentState.LISTENING, only_from=SERVING_STATES))
        actions.append(PublishTurn(turn))
        return actions

    def ask(self, text: str, now: float, event_id: str) -> list[Action]:
        """A user turn given as text (`agent.conversation.omni_asks`: confirmed, then answered).
        An answer still playing is not cut off: the server's next response begins after it."""
        return self.asks.send(text, now, event_id)

    def ask_expired(self, event_id: str, after_s: float) -> list[Action]:
        """Neither a confirmation nor an error within `after_s`. A refusal comes as an `error`
        (OMNI-SE), so silence is not one: ask for the answer anyway and say so in the log (be
        liberal in what we accept: a service that stops echoing `conversation.item.created`
        must not make every `ask` fail). A late confirmation is then ignored."""
        ask = self.asks.expired(event_id)
        if ask is None:
            return []
        return [Log(f"the service did not confirm the text turn within {after_s:g} s; "
                    "asking for the answer anyway"), *self._answer(ask)]

    def commit(self, now: float) -> list[Action]:
        """End a user turn the service does not detect (push-to-talk, `turn_detection: null`):
        commit the appended audio and ask for the answer; the latency counts from now."""
        self._new_turn().speech_end_at = now
        self._requested = True
        return [SetState(AgentState.THINKING), Send(p.audio_commit()), Send(p.response_create())]

    def _new_turn(self) -> Turn:
        self.current = Turn()
        return self.current
