"""Contender (b): the vendor's own client code, driven like the vendor's samples.

    python bench/baseline_sdk.py --url URL --user user.wav --out speaker.wav --report r.json
                                 --window START END [--device-only]
    python bench/baseline_sdk.py --mode pipeline --scenario scenario.json ...

What "the vendor's client" is here: the official `dashscope` SDK class
`dashscope.audio.qwen_omni.OmniRealtimeConversation`, driven exactly like the vendor sample
`aliyun/alibabacloud-bailian-speech-demo: samples/conversation/omni/python/run_server_vad.py`:

* the main thread reads the microphone in `read(3200)` calls (PyAudio counts *frames*: 200 ms
  at 16 kHz) and sends each as `append_audio(base64)`;
* the SDK's callback (on the websocket-client thread) hands every `response.audio.delta` to the
  sample's `B64PCMPlayer.add_data()` and calls `cancel_playing()` on `speech_started` (server
  VAD; the sample sends no `response.cancel`);
* `B64PCMPlayer` (samples/conversation/omni/python/B64PCMPlayer.py) — re-implemented below with
  the same structure: a decoder thread and a player thread joined by queues, 100 ms chunks,
  each chunk written to the output stream as soon as it is decoded, no prebuffer, no fade;
  cancelling clears both queues.

The sample's `print()` chatter is left out (it would only add console cost). The session uses
the daemon's VAD settings (threshold 0.5) and transcription model so the emulator sees the same
session on both sides.

The sound card is emulated with the *same* paced file devices the daemon's file backends use
(`agent.audio.pacer.Pacer`, 10 ms blocks, every sample written to a 24 kHz WAV on the wall-clock
timeline), wrapped in PyAudio's blocking-stream semantics: `write()` returns once all frames are
in the host buffer (2 × PyAudio's default 1024-frame buffer ≈ 85 ms, `--host-buffer-frames`);
audio already handed over cannot be recalled — exactly why the sample notes that the chunk
size "will effect cancel latency". `read(n)` blocks until n frames were captured.

Pipeline mode (`--mode pipeline`) is the vendor sample
`samples/speech-synthesizer/synthesize_speech_from_llm_by_streaming_mode/python/run.py`: for
each question a new `SpeechSynthesizer` (cosyvoice-v3-flash), `Generation.call(stream=True,
incremental_output=True)`, every LLM chunk handed to `synthesizer.streaming_call()` as it
arrives, then `streaming_complete()`; `on_data` hands the audio to the player. The sample plays
MP3 through ffmpeg; here the format is PCM 24 kHz (what the daemon plays) and the player is the
same two-thread, 100 ms-chunk player fed raw bytes. Questions come at the scenario's times, as
the daemon's come as `ask`s.

`--device-only` runs just the emulated devices (no SDK, no player) for the same window: the
CPU floor of the emulation itself, common to both contenders.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import queue
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchkit import IN_RATE, OUT_RATE, CpuWindow, read_json, write_json

from agent.audio.filebackend import WavSource
from agent.audio.pacer import PacedInput, PacedOutput, Pacer
from agent.audio.wav import WavWriter, read_wav_mono

PYAUDIO_FRAMES_PER_BUFFER = 1024  # pyaudio.PyAudio.open() default


class BlockingOutput:
    """A PyAudio-style blocking output stream on the paced file device.

    `write()` copies into a bounded host buffer, blocking while it is full; the pacing thread
    takes one 10 ms block per tick (silence when the buffer is empty) and writes it to the WAV.
    """

    def __init__(self, pacer: Pacer, path: Path, host_frames: int) -> None:
        self.writer = WavWriter(path, OUT_RATE)
        self._buf = np.zeros(host_frames, dtype=np.int16)
        self._r = 0
        self._w = 0
        self._cond = threading.Condition()
        self.underflow_blocks = 0
        self.stream = PacedOutput(pacer, self._render, OUT_RATE, f"file:{path}", sink=self.writer.write)

    def write(self, data: bytes) -> None:
        pcm = np.frombuffer(data, dtype="<i2")
        cap = self._buf.shape[0]
        done = 0
        while done < pcm.shape[0]:
            with self._cond:
                while self._w - self._r >= cap:
                    self._cond.wait()
                n = min(cap - (self._w - self._r), pcm.shape[0] - done)
                i = self._w % cap
                k = min(n, cap - i)
                self._buf[i : i + k] = pcm[done : done + k]
                self._buf[: n - k] = pcm[done + k : done + n]
                self._w += n
            done += n

    def _render(self, out: np.ndarray, now: float, latency: float, underflow: bool) -> None:
        with self._cond:
            cap = self._buf.shape[0]
            n = min(self._w - self._r, out.shape[0])
            i = self._r % cap
            k = min(n, cap - i)
            out[:k] = self._buf[i : i + k]
            out[k:n] = self._buf[: n - k]
            self._r += n
            self._cond.notify_all()
        if n < out.shape[0]:
            out[n:] = 0
            if n:
                self.underflow_blocks += 1

    def close(self) -> None:
        self.stream.close()
        self.writer.close()


class BlockingInput:
    """A PyAudio-style blocking input stream: the WAV "heard" in real time, read in frames."""

    def __init__(self, pacer: Pacer, path: Path, capacity_s: float = 5.0) -> None:
        self._buf = np.zeros(int(capacity_s * IN_RATE), dtype=np.int16)
        self._r = 0
        self._w = 0
        self._cond = threading.Condition()
        self.overflows = 0
        self.stream = PacedInput(pacer, self._capture, IN_RATE, f"file:{path}",
                                 source=WavSource(read_wav_mono(path, IN_RATE)))

    def _capture(self, block: np.ndarray, t_end: float, overflow: bool) -> None:
        with self._cond:
            cap = self._buf.shape[0]
            n = block.shape[0]
            if self._w + n - self._r > cap:
                self.overflows += 1
                self._r = self._w + n - cap  # PortAudio drops the oldest input
            i = self._w % cap
            k = min(n, cap - i)
            self._buf[i : i + k] = block[:k]
            self._buf[: n - k] = block[k:]
            self._w += n
            self._cond.notify_all()

    def read(self, frames: int, timeout: float = 2.0) -> bytes:
        with self._cond:
            if not self._cond.wait_for(lambda: self._w - self._r >= frames, timeout):
                raise TimeoutError("the emulated microphone stopped")
            cap = self._buf.shape[0]
            i = self._r % cap
            k = min(frames, cap - i)
            data = np.concatenate([self._buf[i : i + k], self._buf[: frames - k]])
            self._r += frames
        return data.tobytes()

    def close(self) -> None:
        self.stream.close()


class B64PCMPlayer:
    """The vendor sample's player: decoder thread + player thread, 100 ms chunks, no prebuffer."""

    def __init__(self, stream: BlockingOutput, sample_rate: int = OUT_RATE, chunk_size_ms: int = 100) -> None:
        self.player_stream = stream
        self.chunk_size_bytes = chunk_size_ms * sample_rate * 2 // 1000
        self.raw_audio_buffer: queue.Queue[bytes] = queue.Queue()
        self.b64_audio_buffer: queue.Queue[Any] = queue.Queue()
        self.status = "playing"
        self.decoder_thread = threading.Thread(target=self.decoder_loop, name="decoder")
        self.player_thread = threading.Thread(target=self.player_loop, name="player")
        self.decoder_thread.start()
        self.player_thread.start()

    def decoder_loop(self) -> None:
        while self.status != "stop":
            recv_audio_b64 = None
            with contextlib.suppress(queue.Empty):
                recv_audio_b64 = self.b64_audio_buffer.get(timeout=0.1)
            if recv_audio_b64 is None:
                continue
            recv_audio_raw = self.decode(recv_audio_b64)
            for i in range(0, len(recv_audio_raw), self.chunk_size_bytes):
                self.raw_audio_buffer.put(recv_audio_raw[i : i + self.chunk_size_bytes])

    def decode(self, data: Any) -> bytes:
        return base64.b64decode(data)

    def player_loop(self) -> None:
        while self.status != "stop":
            recv_audio_raw = None
            with contextlib.suppress(queue.Empty):
                recv_audio_raw = self.raw_audio_buffer.get(timeout=0.1)
            if recv_audio_raw is None:
                continue
            self.player_stream.write(recv_audio_raw)  # blocks until it is in the host buffer

    def cancel_playing(self) -> None:
        self.b64_audio_buffer.queue.clear()
        self.raw_audio_buffer.queue.clear()

    def add_data(self, data: Any) -> None:
        self.b64_audio_buffer.put(data)

    def shutdown(self) -> None:
        self.status = "stop"
        self.decoder_thread.join()
        self.player_thread.join()


class PCMPlayer(B64PCMPlayer):
    """The same player fed raw PCM bytes (CosyVoice's `on_data`), so nothing is decoded."""

    def decode(self, data: Any) -> bytes:
        return bytes(data)


def _meter(window: CpuWindow, start_at: float, end_at: float) -> threading.Thread:
    """Start/stop the CPU window at fixed timeline instants, from a thread of its own."""

    def run() -> None:
        time.sleep(max(0.0, start_at - time.monotonic()))
        window.start()
        time.sleep(max(0.0, end_at - time.monotonic()))
        window.stop()

    t = threading.Thread(target=run, name="bench-meter", daemon=True)
    t.start()
    return t


def run(args: argparse.Namespace) -> dict[str, Any]:
    pacer = Pacer()
    out = BlockingOutput(pacer, args.out, args.host_buffer_frames)
    mic = BlockingInput(pacer, args.user)
    out.stream.start()
    mic.stream.start()
    pacer.start()
    while pacer.t0 is None:
        time.sleep(0.001)
    t0 = pacer.t0
    window = CpuWindow()
    meter = _meter(window, t0 + args.window[0], t0 + args.window[1])
    end_at = t0 + args.window[1]
    extra: dict[str, Any] = {}
    if args.device_only:
        while time.monotonic() < end_at:
            mic.read(args.mic_frames)
    elif args.mode == "pipeline":
        extra = _llm_to_speech(args, out, t0, end_at)
    else:
        extra = _converse(args, out, mic, end_at)
    meter.join()
    pacer.stop()
    mic.close()
    out.close()
    return {
        "contender": "device-only" if args.device_only else "vendor-sdk",
        "mode": args.mode,
        "t0": t0,
        "window": [t0 + args.window[0], t0 + args.window[1]],
        "cpu": window.as_dict(),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "host_underflow_blocks": out.underflow_blocks,
        "mic_overflows": mic.overflows,
        **extra,
    }


def _converse(args: argparse.Namespace, out: BlockingOutput, mic: BlockingInput, end_at: float) -> dict[str, Any]:
    """The vendor sample's main program, pointed at the emulator."""
    import dashscope
    from dashscope.audio.qwen_omni import (
        AudioFormat,
        MultiModality,
        OmniRealtimeCallback,
        OmniRealtimeConversation,
    )

    dashscope.api_key = args.api_key
    holder: dict[str, B64PCMPlayer] = {}
    counts = {"deltas": 0, "speech_started": 0, "responses": 0}

    class Callback(OmniRealtimeCallback):
        def on_open(self) -> None:
            holder["player"] = B64PCMPlayer(out)

        def on_event(self, response: Any) -> None:
            try:
                kind = response["type"]
                if kind == "response.audio.delta":
                    counts["deltas"] += 1
                    holder["player"].add_data(response["delta"])
                elif kind == "input_audio_buffer.speech_started":
                    counts["speech_started"] += 1
                    holder["player"].cancel_playing()
                elif kind == "response.done":
                    counts["responses"] += 1
            except Exception as e:  # the sample prints and carries on
                print(f"[Error] {e}", file=sys.stderr)

    conversation = OmniRealtimeConversation(
        model=args.model, callback=Callback(), url=args.url.replace("http", "ws", 1) + "/api-ws/v1/realtime",
        api_key=args.api_key,
    )
    conversation.connect()
    conversation.update_session(
        output_modalities=[MultiModality.AUDIO, MultiModality.TEXT],
        voice="Tina",
        input_audio_format=AudioFormat.PCM_16000HZ_MONO_16BIT,
        output_audio_format=AudioFormat.PCM_24000HZ_MONO_16BIT,
        enable_input_audio_transcription=True,
        input_audio_transcription_model="qwen3-asr-flash-realtime",
        enable_turn_detection=True,
        turn_detection_type="server_vad",
        turn_detection_threshold=0.5,
    )
    while time.monotonic() < end_at:
        audio_data = mic.read(args.mic_frames)
        conversation.append_audio(base64.b64encode(audio_data).decode("ascii"))
    with contextlib.suppress(Exception):
        conversation.end_session(timeout=5)
    player = holder.get("player")
    if player is not None:
        player.shutdown()
    return {"events": counts}


def _llm_to_speech(args: argparse.Namespace, out: BlockingOutput, t0: float, end_at: float) -> dict[str, Any]:
    """The vendor's LLM → streaming-synthesis sample, once per scheduled question."""
    from http import HTTPStatus

    import dashscope
    from dashscope import Generation
    from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer

    from agent.config import PipelineSettings
    from agent.modes import cosyvoice_system_voice

    dashscope.api_key = args.api_key
    dashscope.base_http_api_url = args.url + "/api/v1"
    dashscope.base_websocket_api_url = args.url.replace("http", "ws", 1) + "/api-ws/v1/inference"
    system_text = PipelineSettings().system_prompt  # the same prompt the daemon sends
    player = PCMPlayer(out)
    counts = {"questions": 0, "llm_chunks": 0, "audio_chunks": 0, "errors": 0}

    class Callback(ResultCallback):
        def on_data(self, data: bytes) -> None:
            counts["audio_chunks"] += 1
            player.add_data(data)

        def on_error(self, message: Any) -> None:
            counts["errors"] += 1
            print(f"speech synthesis task failed, {message}", file=sys.stderr)

    def synthesize_speech_from_llm_by_streaming_mode(query_text: str) -> None:
        synthesizer = SpeechSynthesizer(model="cosyvoice-v3-flash", voice=cosyvoice_system_voice("cosyvoice-v3-flash"),
                                        format=AudioFormat.PCM_24000HZ_MONO_16BIT, callback=Callback())
        messages = [{"role": "system", "content": system_text}, {"role": "user", "content": query_text}]
        responses = Generation.call(model="qwen-plus", messages=messages, result_format="message",
                                    stream=True, incremental_output=True)
        for response in responses:
            if response.status_code == HTTPStatus.OK:
                counts["llm_chunks"] += 1
                synthesizer.streaming_call(response.output.choices[0]["message"]["content"])
            else:
                counts["errors"] += 1
        synthesizer.streaming_complete()

    for phrase in read_json(args.scenario)["phrases"]:
        at = t0 + phrase["at_s"]
        if at >= end_at:
            break
        time.sleep(max(0.0, at - time.monotonic()))
        counts["questions"] += 1
        synthesize_speech_from_llm_by_streaming_mode(phrase["text"])
    time.sleep(max(0.0, end_at - time.monotonic()))
    player.shutdown()
    return {"events": counts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="")
    ap.add_argument("--api-key", default="sk-emulator")
    ap.add_argument("--model", default="qwen-omni-turbo-realtime-latest")
    ap.add_argument("--user", type=Path, required=True, help="the microphone WAV (pipeline: silence)")
    ap.add_argument("--mode", choices=["omni", "pipeline"], default="omni")
    ap.add_argument("--scenario", type=Path, default=None, help="pipeline: when to ask what")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--window", type=float, nargs=2, required=True, metavar=("START", "END"))
    ap.add_argument("--mic-frames", type=int, default=3200, help="frames per mic read (sample: 3200)")
    ap.add_argument("--host-buffer-frames", type=int, default=2 * PYAUDIO_FRAMES_PER_BUFFER)
    ap.add_argument("--device-only", action="store_true", help="only the emulated devices")
    args = ap.parse_args(argv)
    if not args.device_only and not args.url:
        ap.error("--url is required unless --device-only")
    if args.mode == "pipeline" and not args.device_only and args.scenario is None:
        ap.error("--scenario is required in pipeline mode")
    write_json(args.report, run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
