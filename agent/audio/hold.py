"""The start hold: how long after a response's first chunk the Player waits before playing it.

Why a *time* hold and not a quantity prebuffer (reference/playout-buffering.md §5.5): a player
that starts `H` after the first chunk and then plays without pause is gap-free iff `H >= D*`,
the response's largest lateness `(a_k - a_0) - S_k`. A quantity rule ("start once Q ms are
buffered") only ever starts when a chunk arrives, so with 100 ms deltas it is quantised to whole
deltas, and after one early stall the only gap-free Q is "everything before the stall", which
then makes every later response wait for its own post-stall chunk (hundreds of ms) even when
40 ms of hold would do. Learning D* itself and holding that long is what the clairvoyant
oracle does, minus the clairvoyance.

Learning across responses (NetEq/PJSIP vocabulary, reference §1.6):

* **raise at once** — `observe()` is fed the running D* of the current response at every chunk;
  the hold jumps to it (a later start of this response, if it has not started yet, and of the
  next ones);
* **lower slowly, let outliers age out** — after a response without a gap the hold moves halfway
  down towards the largest D* of the last `window` responses. One bad response therefore keeps
  the hold up for `window` responses and no longer; a recurring one keeps it up for good;
* clamped to `[0, max_ms]`: unlike the quantity target there is no floor, because a source
  that is never late needs no hold at all (the Player still never starts on less than
  `jitter.min_ms` of audio unless the response is complete).

The D* fed here is quantised to the device block (`LatenessTracker.hold_ms`): the callback hands
whole blocks to the device, so a chunk is needed one block earlier than its sample position
alone says.

What it cannot do (proved in docs/audio.md, "What no online player can do"): a hold learned from
past responses is blind to the *size* of the next stall, so on a trace whose early stalls are
drawn at random the first response with a larger stall than any recent one still gaps; and for
a source slower than real time the needed hold grows with the response's (unknown) length.
"""

from __future__ import annotations

from agent.audio.jitter import AdaptiveTarget


class StartHold(AdaptiveTarget):
    """Fast-attack / slow-decay start hold in milliseconds, learned from per-response D*.

    The same learning rule as the rebuffer target, with its own settings: no floor (a source
    that is never late needs no hold), a longer memory (8 responses) and a full step down to the
    recent maximum after a clean response.
    """

    def __init__(self, initial_ms: float, max_ms: float, *, window: int = 8, decay: float = 1.0) -> None:
        super().__init__(initial_ms, 0.0, max_ms, window=window, decay=decay)
