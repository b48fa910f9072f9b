"""The `voice-agent` command line (SPEC §3, fixed): argument parsing and dispatch only.

Each command's work lives in the module named for it; this file maps exit codes:
0 ok, 2 usage, 78 configuration error, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from agent import __version__
from agent.config import EX_CONFIG, ConfigError

EX_USAGE = 2

log = logging.getLogger("voice-agent")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $VOICE_AGENT_CONFIG, else /etc/voice-agent/config.yaml, "
        "else ./config/voice-agent.yaml)",
    )


def _add_socket(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--socket",
        metavar="PATH",
        help="control socket of the running daemon (default: $RUNTIME_DIRECTORY/control.sock, "
        "else <state_dir>/control.sock, as the daemon's config says)",
    )
    _add_config(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-agent",
        description="Always-on voice assistant daemon on Alibaba Cloud Model Studio (DashScope).",
    )
    parser.add_argument("--version", action="version", version=f"voice-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon", description="Run the voice-agent daemon.")
    _add_config(p)

    p = sub.add_parser(
        "demo",
        help="offline demo against the built-in emulator (no key, network or sound card)",
        description="Start the built-in DashScope emulator in-process, run the daemon against it "
        "with file audio (a spoken question in, demo-output.wav out), print each turn and exit.",
    )
    p.add_argument("--speakers", action="store_true", help="play through the sound card instead")
    p.add_argument("--mode", choices=["omni", "pipeline"], default="omni", help="mode to demo")
    p.add_argument("--output", metavar="WAV", default="demo-output.wav", help="output WAV path")
    p.add_argument("--wake-word", action="store_true",
                   help="listen.mode wake_word: background talk is ignored, 'okay nabu' opens the turn")

    p = sub.add_parser(
        "emulator",
        help="run the local DashScope-compatible server",
        description="Serve the DashScope HTTP and WebSocket protocols on one loopback port. "
        "Prints the base URL (http://HOST:PORT; ws:// on the same port) as the first line.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8700, help="port (0 picks a free one; default 8700)")
    p.add_argument(
        "--api-key",
        metavar="KEY",
        help="the one accepted API key (default: $DASHSCOPE_API_KEY, else sk-emulator)",
    )
    p.add_argument("--faults", metavar="SPEC", help="fault injection spec (see docs/emulator.md)")
    p.add_argument("--region", choices=["intl", "cn"], default=None,
                   help="refuse what the capability table says this region refuses (temporary "
                   "upload, CosyVoice design, v3.5 models, cancel directive); default: everything")

    p = sub.add_parser(
        "voices",
        help="manage cloned/designed voices",
        description="Manage the cloned or designed voices of the configured family.",
    )
    vsub = p.add_subparsers(dest="voices_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("list", "list the account's voices of the configured family"),
        ("ensure", "do what `run` does at start-up and print the voice id"),
        ("create", "create a voice from the configured sample or design prompt"),
    ):
        vp = vsub.add_parser(name, help=helptext, description=helptext)
        _add_config(vp)
        vp.add_argument("--json", action="store_true", help="machine-readable output")
    for name, helptext in (("show", "show one voice"), ("delete", "delete one voice")):
        vp = vsub.add_parser(name, help=helptext, description=helptext)
        vp.add_argument("voice_id", metavar="ID")
        _add_config(vp)
        vp.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser(
        "devices",
        help="list audio devices",
        description="List audio devices: index, name, channels, default sample rate.",
    )

    p = sub.add_parser(
        "check",
        help="validate config, secrets, devices and connectivity",
        description="Check the config, secrets, state dir, audio devices, network reach, the key "
        "and the voice; print a checklist; exit 0 only if all pass.",
    )
    _add_config(p)
    p.add_argument("--live", action="store_true",
                   help="also probe the real service (a few cents): key and region, a realtime "
                   "session's echoed configuration, a short synthesis, a short LLM stream")
    p.add_argument("--record", metavar="FILE",
                   help="with --live: write a redacted wire log (JSON lines, no key, audio as "
                   "length and digest) for a bug report")

    p = sub.add_parser(
        "tools",
        help="list the tools the assistant may call and which MCP servers answered",
        description="List exactly the tools the model is offered (built-in and MCP, with their "
        "descriptions) and which configured MCP servers answered.",
    )
    _add_config(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    for name, helptext in (
        ("status", "print the running daemon's status JSON"),
        ("interrupt", "barge in from software (stop the answer being spoken)"),
        ("mute", "stop sending microphone audio"),
        ("unmute", "resume sending microphone audio"),
        ("forget", "clear the conversation memory, in memory and on disk"),
        ("listen", "open one turn now, as if the wake word had been heard"),
    ):
        _add_socket(sub.add_parser(name, help=helptext, description=helptext))
    for name, helptext in (
        ("say", "speak TEXT verbatim"),
        ("ask", "run a turn as if the user had said TEXT"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("text", metavar="TEXT")
        _add_socket(p)
    helptext = "push-to-talk: start sends the microphone upstream, stop ends the turn"
    p = sub.add_parser("talk", help=helptext, description=helptext)
    p.add_argument("action", choices=["start", "stop"])
    _add_socket(p)
    helptext = "print the live event stream, one JSON line per event, until interrupted"
    _add_socket(sub.add_parser("events", help=helptext, description=helptext))
    helptext = "print the output volume (0-100), or set it to LEVEL"
    p = sub.add_parser("volume", help=helptext, description=helptext)
    p.add_argument("level", metavar="LEVEL", nargs="?", type=_level, help="0 (mute) to 100 (full)")
    _add_socket(p)
    return parser


def _level(text: str) -> int:
    try:
        level = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"LEVEL must be an integer 0-100, got {text!r}") from None
    if not 0 <= level <= 100:
        raise argparse.ArgumentTypeError(f"LEVEL must be 0-100, got {level}")
    return level


def cmd_emulator(args: argparse.Namespace) -> int:
    from agent.emulator.context import EmulatorOptions
    from agent.emulator.server import run

    return run(args.host, args.port, args.api_key, args.faults, EmulatorOptions(region=args.region))


def cmd_run(args: argparse.Namespace) -> int:
    from agent.daemon import Daemon, preflight
    from agent.logs import setup_logging

    settings = args.settings
    preflight(settings)
    setup_logging(settings.log.level, settings.log.format)
    return asyncio.run(Daemon(settings).run())


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import demo_command

    return demo_command(args.output, args.speakers, args.mode, args.wake_word)


def cmd_voices(args: argparse.Namespace) -> int:
    from agent.voices.cli import main_voices

    return main_voices(args)


def cmd_check(args: argparse.Namespace) -> int:
    from agent.check import check_command

    if args.record and not args.live:
        print("voice-agent: check: --record needs --live", file=sys.stderr)
        return EX_USAGE
    return check_command(args.settings, args.live, args.record)


def cmd_tools(args: argparse.Namespace) -> int:
    from agent.tools.cli import tools_command

    return tools_command(args.settings, args.json)


def cmd_control(args: argparse.Namespace) -> int:
    from agent.controlclient import control_command

    return control_command(args.command, getattr(args, "text", None), args.socket, args.config)


def cmd_talk(args: argparse.Namespace) -> int:
    from agent.controlclient import talk_command

    return talk_command(args.action, args.socket, args.config)


def cmd_events(args: argparse.Namespace) -> int:
    from agent.controlclient import events_command

    return events_command(args.socket, args.config)


def cmd_volume(args: argparse.Namespace) -> int:
    from agent.controlclient import volume_command

    return volume_command(args.level, args.socket, args.config)


def cmd_devices(_args: argparse.Namespace) -> int:
    from agent.audio.devices import devices_command

    return devices_command()


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "emulator": cmd_emulator,
    "run": cmd_run,
    "demo": cmd_demo,
    "voices": cmd_voices,
    "devices": cmd_devices,
    "check": cmd_check,
    "tools": cmd_tools,
    "status": cmd_control,
    "say": cmd_control,
    "ask": cmd_control,
    "interrupt": cmd_control,
    "mute": cmd_control,
    "unmute": cmd_control,
    "forget": cmd_control,
    "listen": cmd_control,
    "talk": cmd_talk,
    "events": cmd_events,
    "volume": cmd_volume,
}


# Commands that read the daemon's config; it is loaded and validated before they run.
CONFIG_FIRST = {"run", "voices", "check", "tools"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EX_USAGE
    try:
        if args.command in CONFIG_FIRST:
            # Parse → validate before anything else, so a bad config always exits 78 at once.
            # The config schema, then the start-up checks of the voice section (sample file,
            # design prompt), which belong to enrollment rather than to the schema.
            # `check` lists the region × model refusals as checklist items instead of exiting.
            from agent.config import load_settings
            from agent.voices.plan import check_voice_config, check_voice_sources

            args.settings = load_settings(args.config)
            (check_voice_sources if args.command == "check" else check_voice_config)(args.settings)
        return COMMANDS[args.command](args)
    except ConfigError as e:
        from agent.secrets import redact

        print(f"voice-agent: configuration error: {redact(str(e))}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 0
    except (BrokenPipeError, asyncio.CancelledError):
        return 1
