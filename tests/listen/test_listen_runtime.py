"""The listening runtime's pure parts: earcons through the real Player, the effective mode."""

from __future__ import annotations

import numpy as np
import pytest

from agent.audio.playout import Player
from agent.listen.earcons import earcon
from agent.listen.runtime import play_earcon

pytestmark = pytest.mark.unit


def test_an_earcon_plays_as_its_own_response_when_the_speaker_is_free() -> None:
    player = Player()
    length = play_earcon(player, "wake")
    assert length == pytest.approx(len(earcon("wake")) / 24000)
    assert player.current_response is None, "the earcon is complete at once (ended)"
    assert player.buffered_ms == pytest.approx(length * 1000, abs=15)


def test_an_earcon_never_cuts_an_answer_that_is_still_streaming() -> None:
    player = Player()
    player.begin("answer-1")
    player.feed("answer-1", np.zeros(2400, np.int16).tobytes())
    assert play_earcon(player, "timer") == 0.0
    assert player.current_response == "answer-1", "the answer keeps streaming"
