"""The listening front end as the uplink runs it (SPEC §10): engines, front end, earcons, counts.

`Listener` owns one `ListenFrontend` plus the engines its mode needs (the wake-word detector in
`wake_word` mode, the local VAD in `always` + `vad` and in `push_to_talk`, where it ends a
`listen` turn). The uplink calls `chunk()` once per microphone chunk with the raw chunk (the wake
word is detected there, before any echo handling, so it works as a stop word in half-duplex) and
the chunk it would send upstream; everything else (service events, control commands) is queued
with `post()` and applied by the uplink before the next chunk, so the front end is only ever
touched by the uplink's task and its decisions stay in capture order.

Side effects that are not about the uplink are done here: a log line and a `wake` event per
detection, earcons through the player (only when nothing else is playing: the player's `begin`
would end a response still streaming), the status `listen` mapping, and the state: `idle` while
the uplink is closed, `listening` while it is open.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from agent.config import ListenSettings, Settings
from agent.listen.earcons import RATE as EARCON_RATE
from agent.listen.earcons import earcon
from agent.listen.frontend import (
    Action,
    FrontendConfig,
    ListenFrontend,
    Mode,
    PlayEarcon,
    Wake,
)
from agent.status import AgentState, Status

if TYPE_CHECKING:
    from agent.listen.endturn import LocalEndOfTurn

log = logging.getLogger("voice-agent.listen")

Command = Callable[[ListenFrontend, float], list[Action]]
_earcon_ids = itertools.count(1)
EARCON_PREFIX = "earcon-"  # the response id of every earcon: `answer_audible` tells them from answers


class EarconPlayer(Protocol):
    """What playing an earcon needs from the Player."""

    @property
    def current_response(self) -> str | None: ...

    def begin(self, response_id: str) -> None: ...

    def feed(self, response_id: str, pcm: bytes) -> int: ...

    def end(self, response_id: str) -> None: ...


def play_earcon(player: EarconPlayer, kind: str) -> float:
    """Play earcon `kind` (wake, end, error, timer) if the speaker is free; its length in s.

    Returns 0.0 without playing while a response is current: starting another response would end
    that one (an answer still streaming would lose its rest). Callers: the listener, and the
    timer tool when a timer is due (`if settings.listen.earcons: play_earcon(player, "timer")`).
    """
    if player.current_response is not None:
        return 0.0
    pcm = earcon(kind)
    rid = f"{EARCON_PREFIX}{kind}-{next(_earcon_ids)}"
    player.begin(rid)
    player.feed(rid, pcm.tobytes())
    player.end(rid)
    return len(pcm) / EARCON_RATE


def effective_mode(settings: Settings) -> Mode:
    """`listen.mode`, except that omni without turn detection is push-to-talk: nothing else
    could end its turns (SPEC §10: the daemon commits them)."""
    mode: Mode = settings.listen.mode
    if settings.mode == "omni" and settings.omni.turn_detection.type == "none" and mode == "always":
        return "push_to_talk"
    return mode


def manual_turns(settings: Settings) -> bool:
    """Whether the session runs without server VAD (`turn_detection: null`) and we commit:
    push-to-talk, or `listen.end_of_turn: local` (the local decider ends the turns)."""
    return effective_mode(settings) == "push_to_talk" or settings.listen.end_of_turn == "local"


def frontend_config(settings: Settings) -> FrontendConfig:
    ls = settings.listen
    return FrontendConfig(
        mode=effective_mode(settings), vad=ls.vad, preroll_ms=ls.preroll_ms,
        follow_up_s=ls.follow_up_s, earcons=ls.earcons,
        trailing_ms=settings.omni.turn_detection.silence_duration_ms + 300,
        hold_wake=effective_mode(settings) == "wake_word" and ls.end_of_turn == "local",
    )


def load_engines(settings: Settings) -> tuple[Any, Any, Any]:
    """(wake-word detector or None, VAD gate or None, local end of turn or None) for the
    configured mode and `listen.end_of_turn`.

    Raises ListenConfigError (exit 78 naming the key) for an unusable model or a missing engine
    the mode needs. In push_to_talk the VAD only ends `listen` turns: without it they end by the
    no-speech timeout, so its absence is logged rather than refused.
    """
    ls: ListenSettings = settings.listen
    mode = effective_mode(settings)
    detector = gate = None
    if mode == "wake_word":
        from agent.listen.wakeword import load_wake_word

        detector = load_wake_word(ls.wake_word, ls.wake_threshold)
    if mode == "always" and ls.vad:
        from agent.listen.vad import VadGate

        gate = VadGate()
    elif mode == "push_to_talk":
        from agent.listen.errors import ListenConfigError
        from agent.listen.vad import VadGate

        try:
            gate = VadGate()
        except ListenConfigError as e:
            log.warning("push_to_talk: %s; a `listen` turn ends only by its time-out", e.message)
    end_turn = None
    if ls.end_of_turn == "local":
        from agent.listen.endturn import load_local_end_of_turn

        end_turn = load_local_end_of_turn()
    return detector, gate, end_turn


class Listener:
    """Front end + engines + side effects for one uplink; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        player: EarconPlayer,
        status: Status,
        engines: tuple[Any, ...] | None = None,
    ) -> None:
        self.settings = settings
        self.mode = effective_mode(settings)
        self.detector, self.gate, *rest = engines if engines is not None else load_engines(settings)
        self.end_turn: LocalEndOfTurn | None = rest[0] if rest else None
        self.wake_cut = self.end_turn.wake_cut if self.end_turn is not None else None
        config = frontend_config(settings)
        if self.wake_cut is None:
            config = replace(config, hold_wake=False)  # nothing would release a held turn
        self.frontend = ListenFrontend(config)
        self.player = player
        self._status = status
        status.listen_status = self.status  # SPEC §6 status `listen`
        self._posted: list[Command] = []
        self.earcon_until = float("-inf")  # the last earcon is audible until about then

    def status(self) -> dict[str, Any]:
        """SPEC §6 status `listen`."""
        fe = self.frontend
        st: dict[str, Any] = {
            "mode": self.mode,
            "wake_word": self.settings.listen.wake_word if self.mode == "wake_word" else None,
            "wakes": fe.wakes,
            "uplink_open": fe.uplink_open,
            "sent_s": round(fe.sent_s, 2),
        }
        if self.end_turn is not None:  # listen.end_of_turn: local only
            st["end_of_turn"] = self.end_turn.status()
            if self.frontend.config.hold_wake and self.wake_cut is not None:
                st["end_of_turn"]["wake_cuts"] = dict(self.wake_cut.cuts)
        return st

    @property
    def in_turn(self) -> bool:
        """A listening turn is open (wake word, `listen`, push-to-talk, follow-up): its audio
        is in the session's buffer, so the session must not be rotated now."""
        return self.frontend.turn not in (None, "waiting")

    def start(self) -> list[Action]:
        return self.frontend.start()

    def post(self, command: Command) -> None:
        """Queue an input (a service event, a control command) for the uplink's next chunk."""
        self._posted.append(command)

    def chunk(self, raw: bytes, upstream: bytes, t_end: float, speaking: bool) -> list[Action]:
        """One microphone chunk: posted inputs, the VAD on `upstream`, the wake word on `raw`."""
        fe = self.frontend
        actions: list[Action] = []
        while self._posted:
            actions += self._posted.pop(0)(fe, t_end)
        voiced = self.gate.process(upstream) if self.gate is not None else None
        actions += fe.chunk(upstream, t_end, speaking, voiced)
        if self.detector is not None:
            for det in self.detector.process(raw):
                actions += fe.wake(det)
        if self.wake_cut is not None and fe.holding is not None:
            actions += self.wake_cut.chunk(fe)  # a held wake turn: where its question starts
        if not fe.uplink_open and self._status.state is AgentState.LISTENING:
            self._status.set_state(AgentState.IDLE)  # e.g. after an answer, nothing is sent
        return actions

    def side_effects(self, action: Action, now: float) -> None:
        """Carry out the actions that are not the uplink's (wake report, earcons)."""
        if isinstance(action, Wake):
            log.info("wake word %s heard (score %.3f)", action.word, action.score)
            self._status.publish("wake", word=action.word, score=round(action.score, 3))
        elif isinstance(action, PlayEarcon):
            length = play_earcon(self.player, action.kind)
            if length:
                self.earcon_until = now + length

    def uplink_changed(self, is_open: bool) -> None:
        """The state follows the uplink where it can close (an LED ring shows "listening" only
        while audio goes upstream): listening while open, idle once closed."""
        state = self._status.state
        if is_open and state in (AgentState.IDLE, AgentState.LISTENING):
            self._status.set_state(AgentState.LISTENING)
        elif not is_open and state is AgentState.LISTENING:
            self._status.set_state(AgentState.IDLE)

    def earcon(self, kind: str) -> None:
        """Play earcon `kind` when `listen.earcons` is on (a failed turn: "error")."""
        if self.settings.listen.earcons:
            play_earcon(self.player, kind)

    def close(self) -> None:
        if self.end_turn is not None:
            self.end_turn.close()
        if self.detector is not None:
            self.detector.close()


# Control commands as front-end inputs (posted to the uplink, applied before its next chunk).
COMMANDS: dict[str, Command] = {
    "listen": lambda fe, now: fe.listen(now),
    "talk_start": lambda fe, now: fe.talk_start(now),
    "talk_stop": lambda fe, now: fe.talk_stop(now),
}


EARCON_TAIL_S = 0.5  # after an earcon ends, its last samples may still be in the device buffers


def answer_audible(player: Any, listener: Listener | None, now: float, answering: bool) -> bool:
    """Output a barge-in would cut: an answer, not a wake earcon alone.

    The user talking over the wake sound is the turn the wake word opened; treating it as a
    barge-in would count every wake in `barge_ins`. `answering`: the mode has an answer in
    progress (then any audible output is the answer's).
    """
    current = player.current_response
    if current is not None and current.startswith(EARCON_PREFIX):
        return False
    if (listener is not None and current is None and not answering
            and now < listener.earcon_until + EARCON_TAIL_S):
        return False
    return bool(player.activity.busy(now))
