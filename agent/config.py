"""Configuration: typed settings dataclasses, YAML loading with `${ENV}` expansion, validation.

Every key of SPEC §4 has a default here. Validation is strict because a device running unattended
must fail at start with one clear line (exit 78) rather than misbehave later: unknown keys are
rejected with the closest valid name, wrong types and out-of-range values name the key and file
(the generic YAML → dataclass building is `agent.config_build`, single-section checks are
`agent.config_checks`).
The sections are frozen: a component can keep the section it was given without another one
changing it underneath (tests derive variants with `dataclasses.replace`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agent.config_build import ConfigError, build
from agent.config_checks import (
    BUILTIN_TOOLS,
    check_idle_timeout,
    validate_listen,
    validate_tools,
)

MAX_MEMORY_TURNS = 200  # memory.turns: a bounded file and a bounded prompt
EX_CONFIG = 78  # sysexits.h EX_CONFIG; systemd's RestartPreventExitStatus=78 stops restart loops


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashScopeSettings:
    region: Literal["intl", "cn"] = "intl"
    api_key: str | None = None
    api_key_file: str | None = None
    workspace: str | None = None
    http_url: str | None = None
    ws_url: str | None = None


@dataclass(frozen=True)
class VoiceSettings:
    family: Literal["qwen", "cosyvoice", "preset"] = "qwen"
    name: str = "kiosk"
    sample: str | None = None
    sample_url: str | None = None
    design_prompt: str | None = None
    preset: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class TurnDetection:
    type: Literal["server_vad", "semantic_vad", "none"] = "server_vad"
    threshold: float = 0.5
    silence_duration_ms: int = 800
    prefix_padding_ms: int = 300


@dataclass(frozen=True)
class OmniSettings:
    model: str = "qwen3.5-omni-flash-realtime"
    instructions: str = "You are a helpful voice assistant."
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    session_max_minutes: float = 100
    # After an answer and this much user silence the model speaks unprompted (qwen3.5 + server
    # VAD only). None: never sent, so it never does (audit R3).
    idle_timeout_ms: int | None = None


@dataclass(frozen=True)
class PipelineSettings:
    input: Literal["mic", "text"] = "mic"
    asr_model: str = "qwen3-asr-flash-realtime"
    llm_model: str = "qwen-plus"
    tts_model: str = "cosyvoice-v3-flash"
    system_prompt: str = "You are a helpful voice assistant. Answer briefly."
    history_turns: int = 8


@dataclass(frozen=True)
class StreamSettings:
    backend: Literal["sounddevice", "file", "null"] = "sounddevice"
    device: int | str | None = None
    path: str | None = None


@dataclass(frozen=True)
class JitterSettings:
    target_ms: int = 80
    min_ms: int = 40
    max_ms: int = 400


@dataclass(frozen=True)
class AudioSettings:
    input: StreamSettings = field(default_factory=StreamSettings)
    output: StreamSettings = field(default_factory=StreamSettings)
    chunk_ms: int = 40
    jitter: JitterSettings = field(default_factory=JitterSettings)
    echo: Literal["none", "half_duplex", "gate", "aec"] = "half_duplex"


@dataclass(frozen=True)
class ControlSettings:
    socket: str | None = None


@dataclass(frozen=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    transcripts: bool = True


@dataclass(frozen=True)
class MetricsSettings:
    listen: str | None = None  # HOST:PORT for the Prometheus endpoint; None: off




@dataclass(frozen=True)
class McpServerSettings:
    """One `tools.mcp` entry: a stdio server (`command`, `env`) or an HTTP one (`url`, `token_file`).

    Only the shape is checked here; `agent.tools.mcp` connects to it."""

    name: str = ""
    command: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    token_file: str | None = None
    allow: tuple[str, ...] | None = None  # the tools the model may call (None: all)


@dataclass(frozen=True)
class ToolsSettings:
    builtin: tuple[str, ...] = BUILTIN_TOOLS
    mcp: tuple[McpServerSettings, ...] = ()
    timeout_s: float = 10.0


@dataclass(frozen=True)
class MemorySettings:
    turns: int = 20  # transcript turns kept and carried into new sessions (0 = off)
    persist: bool = True  # keep them in state_dir across restarts


@dataclass(frozen=True)
class ListenSettings:
    """SPEC §10: what microphone audio leaves the device (agent/listen)."""

    mode: Literal["always", "wake_word", "push_to_talk"] = "always"
    wake_word: str = "okay_nabu"  # built-in name (agent.listen.wakeword) or a model file path
    wake_threshold: float | None = None
    follow_up_s: float = 6.0
    preroll_ms: int = 400
    vad: bool = False
    end_of_turn: Literal["server", "local"] = "server"
    earcons: bool = True


@dataclass(frozen=True)
class Settings:
    mode: Literal["omni", "pipeline"] = "omni"
    dashscope: DashScopeSettings = field(default_factory=DashScopeSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    omni: OmniSettings = field(default_factory=OmniSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    state_dir: str | None = None
    control: ControlSettings = field(default_factory=ControlSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    tools: ToolsSettings = field(default_factory=ToolsSettings)
    # Where the settings came from, for messages; not a config key (set at construction).
    source: str = field(default="<defaults>", repr=False, compare=False, metadata={"internal": True})


# --- loading ----------------------------------------------------------------------------------

def default_config_path() -> Path:
    """SPEC §3: `$VOICE_AGENT_CONFIG`, else /etc/voice-agent/config.yaml, else ./config/voice-agent.yaml."""
    env = os.environ.get("VOICE_AGENT_CONFIG")
    if env:
        return Path(env)
    etc = Path("/etc/voice-agent/config.yaml")
    if etc.exists():
        return etc
    return Path("config/voice-agent.yaml")


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate a YAML config file; raise ConfigError naming the key and file."""
    p = Path(path) if path is not None else default_config_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read config file: {e.__class__.__name__}: {e}") from None
    return parse_settings(text, str(p))


def parse_settings(text: str, source: str = "<string>") -> Settings:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{at}: {problem}") from None
    except RecursionError:  # PyYAML's parser recurses per nesting level
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None
    if raw is None:
        raw = {}
    settings = settings_from_dict(raw, source)
    return settings


def settings_from_dict(raw: Any, source: str = "<dict>") -> Settings:
    settings = build(Settings, raw, "", source, internal={"source": source})
    validate(settings)
    return settings


_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def parse_listen(text: str) -> tuple[str, int]:
    """`metrics.listen` → (host, port): `127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464`,
    `myhost:9464`. Raises ValueError saying what is wrong (config validation shows it)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("metrics.listen: expected HOST:PORT, e.g. 127.0.0.1:9464")
    text = text.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"metrics.listen: {text!r}: an IPv6 address needs [ADDR]:PORT, e.g. [::1]:9464")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"metrics.listen: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"metrics.listen: {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
        if ":" in host:
            raise ValueError(f"metrics.listen: {text!r}: write an IPv6 address as [ADDR]:PORT")
        if not _HOSTNAME.match(host):
            raise ValueError(f"metrics.listen: {host!r} is not a host name or IP address")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"metrics.listen: port {port_text!r} must be a number 1-65535")
    return host, int(port_text)



def validate(s: Settings) -> None:
    """Cross-field and range checks the type system cannot express."""
    src = s.source

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{src}: {key}: {why}")

    j = s.audio.jitter
    if not 0 < j.min_ms <= j.target_ms <= j.max_ms <= 5000:
        raise bad("audio.jitter", f"need 0 < min_ms <= target_ms <= max_ms <= 5000 (got {j.min_ms}, {j.target_ms}, {j.max_ms})")
    if not 10 <= s.audio.chunk_ms <= 500:
        raise bad("audio.chunk_ms", f"must be between 10 and 500, got {s.audio.chunk_ms}")
    for name in ("input", "output"):
        st: StreamSettings = getattr(s.audio, name)
        if st.backend == "file" and not st.path:
            raise bad(f"audio.{name}.path", f"required when audio.{name}.backend is file")
        if st.backend == "file" and name == "input" and st.path and not Path(st.path).is_file():
            raise bad("audio.input.path", f"file not found: {st.path}")
    if s.metrics.listen is not None:
        try:
            parse_listen(s.metrics.listen)
        except ValueError as e:
            raise ConfigError(f"{src}: {e}") from None
    td = s.omni.turn_detection
    if not 0.0 <= td.threshold <= 1.0:
        raise bad("omni.turn_detection.threshold", f"must be between 0 and 1, got {td.threshold}")
    if not 200 <= td.silence_duration_ms <= 6000:
        raise bad("omni.turn_detection.silence_duration_ms", f"must be between 200 and 6000, got {td.silence_duration_ms}")
    check_idle_timeout(s.omni, bad)
    if not 1 <= s.omni.session_max_minutes <= 119:
        raise bad("omni.session_max_minutes", f"must be between 1 and 119 (the server closes at 120), got {s.omni.session_max_minutes}")
    if not 0 <= s.pipeline.history_turns <= 100:
        raise bad("pipeline.history_turns", f"must be between 0 and 100, got {s.pipeline.history_turns}")
    if not 0 <= s.memory.turns <= MAX_MEMORY_TURNS:
        raise bad("memory.turns", f"must be between 0 and {MAX_MEMORY_TURNS}, got {s.memory.turns}")
    if not s.voice.name or not re.fullmatch(r"[A-Za-z0-9_]{1,16}", s.voice.name):
        raise bad("voice.name", f"use 1-16 letters, digits or underscores, got {s.voice.name!r}")
    v = s.voice
    if v.family == "preset" and not v.preset:
        raise bad("voice.preset", "required when voice.family is preset (a system voice name, e.g. Tina)")
    if v.family != "preset" and sum(bool(x) for x in (v.sample, v.sample_url, v.design_prompt)) > 1:
        raise bad("voice.sample", "give only one of voice.sample, voice.sample_url, voice.design_prompt")
    if v.sample_url and not re.match(r"(https?|oss)://", v.sample_url):
        raise bad("voice.sample_url", f"must be an http(s):// or oss:// URL, got {v.sample_url!r}")
    if s.dashscope.workspace and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", s.dashscope.workspace):
        raise bad("dashscope.workspace", "must be a workspace id (letters, digits, '-', '_')")
    # Paths are expanded later (state dir, socket, sample…); "~user/…" for a user that does not
    # exist makes `expanduser` raise RuntimeError there, a traceback instead of exit 78.
    for key, value in (("state_dir", s.state_dir), ("control.socket", s.control.socket),
                       ("voice.sample", s.voice.sample),
                       ("dashscope.api_key_file", s.dashscope.api_key_file),
                       ("audio.input.path", s.audio.input.path),
                       ("audio.output.path", s.audio.output.path)):
        if value and value.startswith("~"):
            try:
                Path(value).expanduser()
            except RuntimeError:
                raise bad(key, f"cannot expand {value!r}: no such user (or no home directory)") from None
    for key in ("http_url", "ws_url"):
        url = getattr(s.dashscope, key)
        schemes = ("http://", "https://") if key == "http_url" else ("ws://", "wss://")
        if url and not url.startswith(schemes):
            raise bad(f"dashscope.{key}", f"must start with {' or '.join(schemes)}, got {url!r}")
    validate_tools(s.tools, bad)
    validate_listen(s.listen, bad)
    check_family_fits_mode(s)


# A voice is bound to the model that speaks with it, so the family must fit the mode. This is
# schema-level data; the checks that read files or know enrollment limits
# (`agent.voices.plan.check_voice_config`) run at start-up, called by the composition root.
FAMILIES_FOR_MODE: dict[str, tuple[str, ...]] = {
    "omni": ("qwen", "preset"),
    "pipeline": ("cosyvoice", "preset"),
}
_WHY_FAMILY = {
    "omni": "omni speaks through the Qwen-Omni model, which takes qwen voices",
    "pipeline": "pipeline speaks through CosyVoice, which takes cosyvoice voices",
}


def check_family_fits_mode(s: Settings) -> None:
    """ConfigError (exit 78) naming `voice.family` when the family cannot speak in `s.mode`."""
    fits = FAMILIES_FOR_MODE[s.mode]
    if s.voice.family not in fits:
        raise ConfigError(
            f"{s.source}: voice.family: '{s.voice.family}' does not fit mode '{s.mode}': "
            f"{_WHY_FAMILY[s.mode]}; use voice.family {' or '.join(fits)} "
            "(preset = a system voice in voice.preset)"
        )
