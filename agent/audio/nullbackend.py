"""The null backend: a speaker that discards at real-time pace, a microphone that hears silence.

It still runs the player's and microphone's callbacks on the shared pacing thread, so a
headless daemon (text-only kiosk, CI) behaves exactly like one with a sound card: responses take
real time to "play", barge-in fades, statistics count.
"""

from __future__ import annotations

from agent.audio.backend import CaptureFn, RenderFn
from agent.audio.microphone import MIC_RATE
from agent.audio.pacer import PacedInput, PacedOutput, Pacer
from agent.audio.playout import SOURCE_RATE


def open_null_output(pacer: Pacer, render: RenderFn) -> PacedOutput:
    return PacedOutput(pacer, render, SOURCE_RATE, "null")


def open_null_input(pacer: Pacer, capture: CaptureFn) -> PacedInput:
    # PacedInput without a source delivers its zero-initialised block forever.
    return PacedInput(pacer, capture, MIC_RATE, "null")
