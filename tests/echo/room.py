"""A speaker and a microphone in one room, on a virtual clock, for echo tests without a sound server.

The real `Player` and `Microphone` are driven like PortAudio would drive them: every `block_s`
the output callback renders a block (heard `out_latency` later) and the input callback delivers
the block captured during the last period (`in_latency` late, stamped with its capture time).
What the microphone hears is the played audio, `acoustic_s` later, through a room impulse
response (direct sound plus an exponentially decaying reverberation tail) times `echo_gain`,
plus whatever the "user" says and a little noise. Each 16 kHz chunk the microphone yields goes
through an echo filter; what the filter sends upstream is collected and judged by the emulator's
own server VAD (agent.emulator.vad), which is what would have interrupted the assistant.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agent.audio.microphone import Microphone
from agent.audio.playout import Player
from agent.audio.resample import StreamResampler
from agent.audio.virtual import VirtualClock
from agent.emulator.vad import EnergyVad

OUT_RATE = 24000
MIC_RATE = 16000


def room_response(rt60_s: float = 0.3, seed: int = 5, rate: int = MIC_RATE) -> np.ndarray:
    """Direct path + a decaying noise tail (RT60 `rt60_s`), like a small furnished room."""
    rng = np.random.default_rng(seed)
    n = int(rt60_s * rate)
    t = np.arange(n) / rate
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s) * 0.12
    h[0] = 1.0
    return h


class Room:
    def __init__(
        self,
        *,
        chunk_ms: int = 40,
        block_s: float = 0.01,
        out_latency: float = 0.04,
        in_latency: float = 0.03,
        acoustic_s: float = 0.004,
        echo_gain: float = 0.8,
        rir: np.ndarray | None = None,
        noise: float = 20.0,
        seed: int = 1,
        max_s: float = 60.0,
        reported_out_latency: float | None = None,
        stamp_jitter_s: float = 0.0,
        out_rate: int = OUT_RATE,
        jump: tuple[float, float] | None = None,
    ) -> None:
        """`reported_out_latency`: what the driver claims (default: the truth);
        `stamp_jitter_s`: random error of the microphone's capture timestamps;
        `jump`: (at_s, by_s): from `at_s` on the echo arrives `by_s` later (an xrun upstream)."""
        self.jump = jump
        self.clock = VirtualClock(0.0)
        self.player = Player(clock=self.clock, device_rate=out_rate)
        self.mic = Microphone(chunk_ms, clock=self.clock)
        self.block_s = block_s
        self.out_latency = out_latency
        self.reported_out_latency = out_latency if reported_out_latency is None else reported_out_latency
        self.stamp_jitter_s = stamp_jitter_s
        self.in_latency = in_latency
        self.acoustic_s = acoustic_s
        self.echo_gain = echo_gain
        self.rir = room_response() if rir is None else rir
        self._rir_rev = self.rir[::-1]
        self._fft_n = 1 << int(np.ceil(np.log2(self.rir.shape[0] + int(block_s * MIC_RATE) + 2)))
        self._rir_fft = np.fft.rfft(self.rir, self._fft_n)
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        n = int(max_s * MIC_RATE)
        self.air = np.zeros(n)  # what the speaker emits, 16 kHz, index = time heard × rate
        self.user = np.zeros(n)  # what the user says, 16 kHz, on the same timeline
        self.heard = np.zeros(n)  # what the microphone captured
        self._air_w = 0
        self._rs = StreamResampler(out_rate, MIC_RATE)
        self._out = np.zeros(int(round(block_s * out_rate)), dtype=np.int16)
        self._in_n = int(round(block_s * MIC_RATE))
        self._pending: deque[tuple[float, np.ndarray, float]] = deque()
        self._ticks = 0
        self.upstream: list[np.ndarray] = []  # what the filter sent, chunk by chunk
        self.chunk_times: list[float] = []  # capture end time of each chunk

    # -- scenario ---------------------------------------------------------------------------

    def say(self, t: float, pcm16k: np.ndarray, gain: float = 1.0) -> None:
        """The user speaks `pcm16k` starting at time `t` (seconds)."""
        i = int(t * MIC_RATE)
        seg = pcm16k.astype(np.float64)[: self.user.shape[0] - i] * gain
        self.user[i : i + seg.shape[0]] += seg

    def play(self, rid: str, pcm24k: np.ndarray) -> None:
        """The assistant answers (queued now, played as the jitter buffer allows)."""
        self.player.begin(rid)
        self.player.feed(rid, pcm24k)
        self.player.end(rid)

    # -- time -------------------------------------------------------------------------------

    def _tick(self) -> None:
        t = self._ticks * self.block_s
        self.clock.t = t
        self.player.render(self._out, t, self.reported_out_latency)
        self.player.dispatch_events()
        # The block is heard from t + out_latency on; keep the air timeline at 16 kHz.
        emitted = self._rs.process(self._out.copy())
        start = int(round((t + self.out_latency) * MIC_RATE)) if self._air_w == 0 else self._air_w
        self.air[start : start + emitted.shape[0]] = emitted
        self._air_w = start + emitted.shape[0]
        # The microphone block captured during [t, t + block).
        a = int(round(t * MIC_RATE))
        b = a + self._in_n
        late = self.jump[1] if self.jump is not None and t >= self.jump[0] else 0.0
        d = int(round((self.acoustic_s + late) * MIC_RATE))
        echo = self._echo(a - d, b - d)
        block = echo * self.echo_gain + self.user[a:b] + self.rng.standard_normal(b - a) * self.noise
        pcm = np.clip(np.round(block), -32768, 32767).astype(np.int16)
        self.heard[a:b] = pcm
        t_end = t + self.block_s
        stamp = t_end + (self.rng.uniform(-1, 1) * self.stamp_jitter_s if self.stamp_jitter_s else 0.0)
        self._pending.append((t_end + self.in_latency, pcm, stamp))
        self._ticks += 1

    def _echo(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) of the air timeline through the room response (FFT convolution)."""
        m = self._rir_rev.shape[0]
        out = np.zeros(b - a)
        lo = a - m + 1
        if b <= 0:
            return out
        pad = max(0, -lo)
        src = self.air[max(0, lo) : b]
        if pad:
            src = np.concatenate([np.zeros(pad), src])
        n = self._fft_n
        if src.shape[0] > n:
            raise ValueError("block longer than the FFT size")
        full = np.fft.irfft(np.fft.rfft(src, n) * self._rir_fft, n)
        return full[m - 1 : src.shape[0]]

    async def run(self, seconds: float, filt) -> None:
        """Advance the room by `seconds`, passing every microphone chunk through `filt`."""
        end = self._ticks + int(round(seconds / self.block_s))
        while self._ticks < end:
            self._tick()
            now = self._ticks * self.block_s
            self.clock.t = now
            while self._pending and self._pending[0][0] <= now + 1e-9:
                _, pcm, t_end = self._pending.popleft()
                self.mic.capture(pcm, t_end)
            while (frame := self.mic.read_frame_nowait()) is not None:
                out = await filt.process(frame.pcm, frame.t_end)
                self.upstream.append(np.frombuffer(out, dtype="<i2").copy())
                self.chunk_times.append(frame.t_end)

    # -- judging ----------------------------------------------------------------------------

    def sent(self) -> np.ndarray:
        return np.concatenate(self.upstream) if self.upstream else np.zeros(0, dtype=np.int16)

    def vad_starts(self) -> list[float]:
        """Where the server's VAD would have said `speech_started` (seconds of the timeline)."""
        vad = EnergyVad(MIC_RATE)
        first = (self.chunk_times[0] - len(self.upstream[0]) / MIC_RATE) if self.chunk_times else 0.0
        return [first + e.speech_ms / 1000.0 for e in vad.feed(self.sent()) if e.kind == "speech_started"]
