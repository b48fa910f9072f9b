"""The checks that need no network: config, API key, state dir, audio devices/files, echo mode."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from agent.audio.wav import WavError, wav_info
from agent.check.result import INPUT_RATE, OUTPUT_RATE, CheckResult, failed, passed
from agent.config import ConfigError, Settings, StreamSettings, validate
from agent.secrets import CREDENTIAL_NAME, resolve_api_key
from agent.statedir import open_state_dir
from agent.voices.plan import VoicePlan, plan_voice


def check_config(settings: Settings) -> tuple[CheckResult, VoicePlan | None]:
    try:
        validate(settings)
        plan = plan_voice(settings)
    except ConfigError as e:
        return failed("config", str(e), f"edit {settings.source} as the message says"), None
    detail = f"{settings.source} is valid (mode {settings.mode}, region {settings.dashscope.region})"
    return passed("config", detail), plan


def key_origin(settings: Settings) -> str:
    """Where `resolve_api_key` takes the key from (same order), for the checklist."""
    ds = settings.dashscope
    if ds.api_key:
        return f"dashscope.api_key in {settings.source}"
    if os.environ.get("DASHSCOPE_API_KEY"):
        return "$DASHSCOPE_API_KEY"
    if ds.api_key_file:
        return f"dashscope.api_key_file ({ds.api_key_file})"
    return f"systemd credential {CREDENTIAL_NAME} ($CREDENTIALS_DIRECTORY)"


def check_key(settings: Settings) -> tuple[CheckResult, str | None]:
    try:
        key = resolve_api_key(settings, required=True)
    except ConfigError as e:
        fix = (
            "put the key in /etc/voice-agent/dashscope-api-key (system unit: LoadCredential), "
            "or set $DASHSCOPE_API_KEY, dashscope.api_key_file or dashscope.api_key"
        )
        return failed("API key", str(e), fix), None
    return passed("API key", f"present, from {key_origin(settings)}"), key


def check_state_dir(settings: Settings) -> CheckResult:
    try:
        path = open_state_dir(settings)
    except ConfigError as e:
        return failed(
            "state dir",
            str(e),
            "make it writable by the daemon's user (chown/chmod 700) or set state_dir",
        )
    return passed("state dir", f"{path} is writable")


# --- audio -------------------------------------------------------------------------------------


def _check_file_input(st: StreamSettings) -> CheckResult:
    name = "audio input"
    path = Path(st.path or "").expanduser()
    try:
        info = wav_info(path)
    except OSError as e:
        return failed(name, f"cannot read {path}: {e.strerror or e}", "set audio.input.path to a readable WAV file")
    except WavError as e:
        return failed(name, f"{path}: {e}", "convert it to WAV, e.g. `sox in.mp3 -b 16 out.wav`")
    return passed(name, f"file {path}: WAV {info.rate} Hz, {info.channels} ch, {info.seconds:.1f} s")


def _check_file_output(st: StreamSettings) -> CheckResult:
    name = "audio output"
    path = Path(st.path or "").expanduser()
    parent = path.parent
    fix = "set audio.output.path to a file in a directory the daemon can write"
    if path.is_dir():
        return failed(name, f"{path} is a directory", fix)
    if not parent.is_dir():
        return failed(name, f"directory {parent} does not exist", fix)
    if path.exists() and not os.access(path, os.W_OK):
        return failed(name, f"{path} is not writable", fix)
    try:
        fd, probe = tempfile.mkstemp(prefix=".voice-agent-check-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return failed(name, f"cannot write in {parent}: {e.strerror or e}", fix)
    return passed(name, f"file {path} (24 kHz mono WAV) is writable")


def _check_sounddevice(kind: str, device: int | str | None, rate: int) -> CheckResult:
    """Find the configured device the way the audio engine does (`agent.audio.devices`) and
    negotiate its rate the way the engine does (`portaudio.negotiate_rate`: `rate`, else the
    device's own default rate, which the daemon resamples from, SPEC §5.5), then ask PortAudio
    whether it opens at that rate."""
    from agent.audio.backend import AudioConfigError
    from agent.audio.devices import DeviceNotFoundError, load_portaudio, resolve_device

    name = f"audio {kind}"
    fix_pick = f"run `voice-agent devices` and set audio.{kind}.device to an index or a name substring"
    try:
        pa = load_portaudio()
        rows = pa.query()
        idx = resolve_device(device, kind, rows)
    except DeviceNotFoundError as e:
        return failed(name, str(e), fix_pick)
    except AudioConfigError as e:
        return failed(name, str(e), "install PortAudio (apt install libportaudio2) or use backend file/null")
    if idx is None:
        default = [r for r in rows if (r.default_input if kind == "input" else r.default_output)]
        if not default:
            return failed(
                name,
                f"no default {kind} device",
                f"connect one; check that the daemon's user is in the audio group; or {fix_pick}",
            )
        row = default[0]
    else:
        row = next(r for r in rows if r.index == idx)
    label = f"{row.name} (#{row.index})"
    try:
        got = pa.negotiate_rate(row.index, kind, rate)
        problem = pa.open_problem(row.index, kind, got)
    except Exception as e:  # PortAudio's errors vary by host API; any of them means "cannot open"
        problem = str(e) or type(e).__name__
    if problem is None:
        how = f"opens at {rate} Hz" if got == rate else f"opens at {got} Hz (resampled to/from {rate} Hz)"
        return passed(name, f"{label} {how}")
    return failed(
        name,
        f"{label} cannot be opened: {problem}",
        "is another program holding it? is the daemon's user in the audio group? "
        f"or {fix_pick}",
    )


async def check_audio(settings: Settings) -> list[CheckResult]:
    out: list[CheckResult] = []
    for kind, rate in (("input", INPUT_RATE), ("output", OUTPUT_RATE)):
        st: StreamSettings = getattr(settings.audio, kind)
        if st.backend == "null":
            out.append(passed(f"audio {kind}", "null backend (no audio)"))
        elif st.backend == "file":
            out.append(_check_file_input(st) if kind == "input" else _check_file_output(st))
        else:
            out.append(await asyncio.to_thread(_check_sounddevice, kind, st.device, rate))
    out.append(check_echo(settings))
    out.append(check_listen(settings))
    return out


ECHO_MODES = {
    "none": "none (the hardware or the sound server cancels the echo)",
    "half_duplex": "half_duplex (microphone closed while the speaker plays; no barge-in by voice)",
    "gate": "gate (energy gate; barge-in when louder than the echo)",
}


def check_echo(settings: Settings) -> CheckResult:
    """Can `audio.echo` run here? Only `aec` needs something extra (docs/echo.md)."""
    mode = settings.audio.echo
    if mode != "aec":
        return passed("echo", ECHO_MODES.get(mode, mode))
    from agent.echo import INSTALL_HINT, aec_problem

    why = aec_problem()
    if why is not None:
        return failed("echo", f"aec: {why}", f"{INSTALL_HINT}; or set audio.echo: gate")
    return passed("echo", "aec (WebRTC AEC3 echo canceller installed)")


def check_tools(settings: Settings) -> CheckResult:
    """Does the configured model take tools (SPEC §11)? Never a failure: without function
    calling the daemon runs without tools, and the line says so."""
    from agent.tools.factory import model_takes_tools

    t = settings.tools
    takes, why = model_takes_tools(settings)
    if not t.builtin and not t.mcp:
        return passed("tools", "none configured (tools.builtin and tools.mcp are empty)")
    if not takes:
        return passed("tools", f"not offered: {why}")
    offered = ", ".join(t.builtin) or "no built-ins"
    servers = f"; MCP servers: {', '.join(m.name for m in t.mcp)}" if t.mcp else ""
    return passed("tools", f"{offered}{servers} (voice-agent tools lists them)")
def check_listen(settings: Settings) -> CheckResult:
    """Can the listening front end run (SPEC §10)? Loads the wake-word model and the VAD."""
    from agent.listen.errors import ListenConfigError
    from agent.listen.runtime import effective_mode, load_engines

    mode = effective_mode(settings)
    try:
        detector, gate, end_turn = load_engines(settings)
    except ListenConfigError as e:
        return failed("listen", f"{e.key}: {e.message}",
                      "fix the key, or pip install 'voice-agent[listen]'")
    parts = [f"mode {mode}"]
    if detector is not None:
        from agent.listen.wakeword import BUILTIN_WAKE_WORDS

        spec = settings.listen.wake_word
        model = "built-in model" if spec in BUILTIN_WAKE_WORDS else f"model {spec}"
        parts.append(f"wake word {detector.word} (microWakeWord, {model}, "
                     f"cut-off {detector.threshold:.2f})")
        detector.close()
    if gate is not None:
        parts.append("local VAD pymicro-vad")
    if end_turn is not None:
        parts.append("end of turn local (WebRTC VAD + smart-turn v3.2)")
        end_turn.close()
    return passed("listen", ", ".join(parts))
