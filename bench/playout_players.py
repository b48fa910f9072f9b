"""The players bench/playout.py races, and the sound card's timing they all share.

(a) the vendor sample's player, (b) ours (the real `agent.audio.Player`) and its hinted variants,
(c) the clairvoyant oracle and (d) the online bound; see bench/playout.py for the method and the
metrics. Payload samples encode (response, position), so `decode` reads any player's tape back.
Split from bench/playout.py to keep each file to one job: these are the contestants, that is
the race and its report.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from traces import RATE, Trace

from agent.audio.playout import Player
from agent.audio.virtual import VirtualClock
from agent.config import JitterSettings

BLOCK = 240  # T_p = 10 ms
T_P = BLOCK / RATE
T_D = 0.020
PHASE = 0.0037
FADE_MS = 10.0
VENDOR_CHUNK = 2400  # 100 ms, the sample's default chunk_size_ms
VENDOR_HOST = 2 * BLOCK  # PortAudio's blocking-write buffer in front of the device
JITTER = JitterSettings()  # (b)'s audio.jitter settings: the defaults unless --max-ms

# -------------------------------------------------------------------------- payload encoding

_BASE, _SPAN = 1000, 3500


def payload(k: int, start: int, n: int) -> np.ndarray:
    """Samples start..start+n of response k: sign and magnitude band encode k % 16."""
    j = np.arange(start, start + n) % _SPAN
    sign = 1 if (k // 8) % 2 == 0 else -1
    return (sign * (_BASE + (k % 8) * _SPAN + j)).astype(np.int16)


def decode(tape: np.ndarray) -> np.ndarray:
    """Per tape sample: k % 16 of the response it came from, or -1 for silence.

    Faded samples (scaled) do not decode; they take the label of the nearest clean neighbour.
    A sample is clean when it continues the position counter of an adjacent sample.
    """
    a = np.abs(tape.astype(np.int32))
    ok = (a >= _BASE) & (a < _BASE + 8 * _SPAN)
    lab = np.where(ok, (a - _BASE) // _SPAN + 8 * (tape < 0), -1)
    cnt = (a - _BASE) % _SPAN
    nxt = np.zeros(tape.shape[0], bool)
    nxt[:-1] = (lab[:-1] == lab[1:]) & ((cnt[:-1] + 1) % _SPAN == cnt[1:]) & ok[:-1]
    clean = nxt.copy()
    clean[1:] |= nxt[:-1]
    out = np.where(clean, lab, -1)
    nonzero = tape != 0
    # forward-fill clean labels into faded samples, then back-fill leading ones
    idx = np.where(clean, np.arange(tape.shape[0]), -1)
    ff = np.maximum.accumulate(idx)
    fill = np.where(ff >= 0, out[np.maximum(ff, 0)], -1)
    rev = np.where(clean, np.arange(tape.shape[0]), tape.shape[0])
    bf = np.minimum.accumulate(rev[::-1])[::-1]
    back = np.where(bf < tape.shape[0], out[np.minimum(bf, tape.shape[0] - 1)], -1)
    res = np.where(clean, out, np.where(nonzero, np.where(fill >= 0, fill, back), -1))
    return res


# -------------------------------------------------------------------------- players


class _Loop:
    """Stands in for the asyncio loop the callback wakes (rarely) via call_soon_threadsafe."""

    def __init__(self) -> None:
        self.ready: list = []

    def call_soon_threadsafe(self, cb) -> None:
        self.ready.append(cb)

    def run_ready(self) -> None:
        ready, self.ready = self.ready, []
        for cb in ready:
            cb()


class Ours:
    name = "(b) ours"

    def __init__(self, trace: Trace) -> None:
        self.clock = VirtualClock()
        self.p = Player(JITTER, fade_ms=FADE_MS, clock=self.clock)
        self.loop = _Loop()
        self.p.attach_loop(self.loop)  # type: ignore[arg-type]
        # Audio that did not fit the ring yet (TCP back-pressure): (rid, frames, started?);
        # frames None = the response's "done" queued behind its audio.
        self.pending: deque[tuple[str, np.ndarray | None, bool]] = deque()

    def audio(self, t: float, k: int, pcm: np.ndarray) -> None:
        self.clock.t = t
        if self.pending:
            self.pending.append((str(k), pcm, False))
            return
        rest = self.p.feed_nowait(str(k), pcm)
        if rest is not None and rest.shape[0]:
            self.pending.append((str(k), rest, True))

    def done(self, t: float, k: int) -> None:
        self.clock.t = t
        if self.pending:
            self.pending.append((str(k), None, False))
        else:
            self.p.end(str(k))

    def bargein(self, t: float, k: int) -> None:
        self.clock.t = t
        self.pending.clear()
        self.p.flush()

    def render(self, out: np.ndarray, t: float) -> None:
        self.clock.t = t
        self.p.render(out, t, T_D)
        self.loop.run_ready()  # the daemon's loop dispatches events only when woken
        while self.pending:
            rid, data, started = self.pending[0]
            if data is None:
                self.p.end(rid)
            else:
                rest = self.p.resume_feed(rid, data) if started else self.p.feed_nowait(rid, data)
                if rest is not None and rest.shape[0]:
                    self.pending[0] = (rid, rest, True)
                    break
            self.pending.popleft()


HINTED = ("slow", "steady")  # families (b+) runs on: where a hint matters, and one where it must not hurt
HINT_FACTOR = 1.25  # the length hint errs long (agent/tts/duration.py is an upper estimate)


class OursHinted(Ours):
    """(b) with a length hint before each response's first audio, as pipeline mode gives from
    the text it sends to CosyVoice: the true length × HINT_FACTOR."""

    name = "(b+) ours, length hint"

    def __init__(self, trace: Trace) -> None:
        super().__init__(trace)
        self.length_s: dict[int, float] = {}
        for e in trace.events:
            if e["kind"] == "audio":
                self.length_s[e["resp"]] = self.length_s.get(e["resp"], 0.0) + e["frames"] / RATE
        self.hinted: set[int] = set()

    def audio(self, t: float, k: int, pcm: np.ndarray) -> None:
        if k not in self.hinted:
            self.hinted.add(k)
            self.p.expect(str(k), self.length_s[k] * HINT_FACTOR)
        super().audio(t, k, pcm)


TRANSCRIPT_LEAD = 1  # chunks the omni transcript runs ahead of the audio (the emulator's interleaving)


class OursTranscript(Ours):
    """(b) given omni mode's only length signal: a running hint from the transcript deltas
    (`response.audio_transcript.delta`), which arrive interleaved with the audio and run ahead
    of it by about TRANSCRIPT_LEAD chunks (agent/emulator/realtime_response.py; DashScope's
    order of events, reference/dashscope-protocol.md §5). The text's length is estimated long
    as pipeline mode's is (× HINT_FACTOR): at chunk k the hint is the audio up to chunk
    k + TRANSCRIPT_LEAD × HINT_FACTOR."""

    name = "(b~) ours, running transcript hint"

    def __init__(self, trace: Trace) -> None:
        super().__init__(trace)
        self.chunks: dict[int, list[int]] = {}
        for e in trace.sorted_events():
            if e["kind"] == "audio":
                self.chunks.setdefault(e["resp"], []).append(e["frames"])
        self.seen: dict[int, int] = {}

    def audio(self, t: float, k: int, pcm: np.ndarray) -> None:
        j = self.seen.get(k, 0)
        self.seen[k] = j + 1
        ahead = sum(self.chunks[k][: j + 1 + TRANSCRIPT_LEAD])
        self.p.expect(str(k), ahead / RATE * HINT_FACTOR)
        super().audio(t, k, pcm)


class Vendor:
    name = "(a) vendor"

    def __init__(self, trace: Trace) -> None:
        self.queue: list[np.ndarray] = []  # raw_audio_buffer of 100 ms chunks
        self.writing: np.ndarray | None = None  # the chunk inside a blocking write()
        self.host: list[np.ndarray] = []  # PortAudio's buffer (list of arrays, like the sample)
        self.host_frames = 0

    def audio(self, t: float, k: int, pcm: np.ndarray) -> None:
        for i in range(0, pcm.shape[0], VENDOR_CHUNK):  # decoder_loop
            self.queue.append(pcm[i : i + VENDOR_CHUNK].copy())
        self._pump()

    def done(self, t: float, k: int) -> None:
        pass

    def bargein(self, t: float, k: int) -> None:
        self.queue.clear()  # cancel_playing(): the write() in progress is not interrupted

    def _pump(self) -> None:  # player_loop: blocking write, chunk by chunk
        while True:
            if self.writing is None:
                if not self.queue:
                    return
                self.writing = self.queue.pop(0)
            room = VENDOR_HOST - self.host_frames
            if room <= 0:
                return
            part, self.writing = self.writing[:room], self.writing[room:]
            self.host.append(part)
            self.host_frames += part.shape[0]
            if self.writing.shape[0] == 0:
                self.writing = None

    def render(self, out: np.ndarray, t: float) -> None:
        n, o = out.shape[0], 0
        while o < n and self.host:
            a = self.host[0]
            m = min(n - o, a.shape[0])
            out[o : o + m] = a[:m]
            o += m
            if m == a.shape[0]:
                self.host.pop(0)
            else:
                self.host[0] = a[m:]
        self.host_frames -= o
        out[o:] = 0
        self._pump()


class Oracle:
    name = "(c) oracle"

    def __init__(self, trace: Trace) -> None:
        # Earliest start per response that never starves at block granularity (clairvoyant).
        self.start: dict[int, float] = {}
        self.total: dict[int, int] = {}
        recv: dict[int, int] = {}
        need: dict[int, float] = {}
        for e in trace.sorted_events():
            k = e["resp"]
            if e["kind"] == "audio":
                s = recv.get(k, 0)
                # sample s is output by the block starting floor(s / BLOCK) periods after start
                need[k] = max(need.get(k, -1e9), e["t"] - (s // BLOCK) * T_P)
                recv[k] = s + e["frames"]
        self.need = need
        self.recv = recv
        self.bufs: dict[int, deque[np.ndarray]] = {}
        self.order: deque[int] = deque()
        self.cur: int | None = None
        self.played = 0  # frames of the current response played
        self.off = 0  # offset into the front array of the current response
        self.cancelled: set[int] = set()

    def audio(self, t: float, k: int, pcm: np.ndarray) -> None:
        if k in self.cancelled:
            return
        if k not in self.bufs:
            self.bufs[k] = deque()
            self.order.append(k)
        self.bufs[k].append(pcm)

    def done(self, t: float, k: int) -> None:
        pass

    def bargein(self, t: float, k: int) -> None:
        self.cancelled.update(self.order)
        if self.cur is not None:
            self.cancelled.add(self.cur)
        self.order.clear()
        self.cur = None

    def render(self, out: np.ndarray, t: float) -> None:
        n, o = out.shape[0], 0
        while o < n:
            if self.cur is None:
                if not self.order or t < self.need[self.order[0]] - 1e-9:
                    break
                self.cur = self.order.popleft()
                self.played = self.off = 0
            k = self.cur
            q = self.bufs[k]
            if not q:
                if self.played >= self.recv[k]:
                    del self.bufs[k]
                    self.cur = None
                    continue
                break  # cannot happen with a clairvoyant start
            a = q[0]
            m = min(a.shape[0] - self.off, n - o)
            out[o : o + m] = a[self.off : self.off + m]
            self.off += m
            self.played += m
            o += m
            if self.off == a.shape[0]:
                q.popleft()
                self.off = 0
        out[o:] = 0


def _need(arrivals: list[tuple[float, int]]) -> float:
    """Earliest start that never starves at block granularity (the oracle's D*)."""
    need, s = -1e9, 0
    for t, frames in arrivals:
        need = max(need, t - (s // BLOCK) * T_P)
        s += frames
    return need


class OnlineBound(Oracle):
    """(d) The best any online player can do on a family whose gap-free hold is unknowable.

    For each response the trace gives the worst alternative its family allows with the same
    beginning (traces.Trace.alts). Until the two diverge (t_div: the first arrival, or the
    response.done, that differs) no online player can tell them apart, so to be gap-free on
    both it must start at max(need_actual, min(need_alt, t_div)) — this player starts exactly
    there (clairvoyant about the rest). Its start latency is a lower bound for every online
    player that is gap-free on the family; where it exceeds the oracle's by more than the
    SPEC's 20 ms, that target is out of any online player's reach.
    """

    name = "(d) online bound"

    def __init__(self, trace: Trace) -> None:
        super().__init__(trace)
        actual: dict[int, list[tuple[float, int]]] = {}
        done: dict[int, float] = {}
        for e in trace.sorted_events():
            if e["kind"] == "audio":
                actual.setdefault(e["resp"], []).append((e["t"], e["frames"]))
            else:
                done.setdefault(e["resp"], e["t"])
        for k, alts in self._alternatives(trace).items():
            act = actual.get(k)
            if not act:
                continue
            for alt in alts:
                t_div = float("inf")
                for j in range(max(len(act), len(alt))):
                    a = act[j] if j < len(act) else None
                    b = alt[j] if j < len(alt) else None
                    if a != b:
                        t_div = min(a[0] if a else done.get(k, float("inf")), b[0] if b else float("inf"))
                        break
                self.need[k] = max(self.need[k], min(_need(alt), t_div))

    @staticmethod
    def _alternatives(trace: Trace) -> dict[int, list[list[tuple[float, int]]]]:
        return {k: [alt] for k, alt in trace.alts.items()}


class OnlineBoundAny(OnlineBound):
    """(d′) Like (d), but gap-free on every worst case the family allows (traces.Trace.alts_any),
    not only on the one that shares the actual response's hidden choices. On bursty (d) knows
    after which delta the early stall will come and only not how long it is; a real player knows
    neither, so it must also cover a 300 ms stall after every delta where one may still come."""

    name = "(d′) online bound, place unknown too"

    @staticmethod
    def _alternatives(trace: Trace) -> dict[int, list[list[tuple[float, int]]]]:
        return trace.alts_any
