"""Bad configuration: whatever the file holds, loading it gives Settings or one ConfigError.

SPEC §3/§9: a bad config exits 78 with one clear message naming the key or file; systemd's
`RestartPreventExitStatus=78` relies on it (any other exit code means a restart loop on a config
that can never work). So no other exception may come out of `parse_settings` / `load_settings`,
for random documents, for the shipped example with fields mutated, or for plain garbage.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from agent.config import ConfigError, Settings, load_settings, parse_settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE: dict[str, Any] = yaml.safe_load((ROOT / "config" / "voice-agent.yaml").read_text())
SOURCE = "fuzz.yaml"

scalars = (
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
    | st.sampled_from(["${VOICE_AGENT_FUZZ_UNSET}", "${HOME}", "${VOICE_AGENT_FUZZ_UNSET:-x}", "~",
                       "~nosuchuser/sample.wav", "/dev/null", ".", "", "omni", "pipeline", "file",
                       "null", "sounddevice", "preset", "cosyvoice", "qwen", "Tina", "0", "1e9",
                       "ws://x", "http://127.0.0.1:1", "oss://a/b", "a\x00b", "é", "-1"])
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    return out


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    """The shipped example with a few keys replaced, deleted, misspelt or added."""
    doc = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from([p for p in _paths(doc) if p]))
        parent: Any = doc
        for k in path[:-1]:
            parent = parent[k]
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        action = draw(st.sampled_from(["replace", "replace", "delete", "misspell", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "misspell":
            parent[path[-1] + draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(path[-1])
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return yaml.safe_dump(doc, allow_unicode=True)


def load(text: str) -> Settings | ConfigError:
    """What the CLI does with the text: Settings, or the ConfigError it turns into exit 78."""
    try:
        return parse_settings(text, SOURCE)
    except ConfigError as e:
        message = str(e)
        assert message.startswith(SOURCE), f"the message names the file: {message!r}"
        assert len(message) > len(SOURCE) + 5, "the message says what is wrong"
        return e


@given(mutated_example())
@example(yaml.safe_dump({"voice": {"family": "qwen", "sample": "~nosuchuser/me.wav"}}))
@example(yaml.safe_dump({"audio": {"jitter": {"min_ms": float("nan")}}}))
@example(yaml.safe_dump({"omni": {"session_max_minutes": float("inf")}}))
def test_a_mutated_example_config_loads_or_is_rejected_clearly(text: str) -> None:
    load(text)


@given(st.text(max_size=300))
@example("[" * 10_000)  # nesting deeper than the YAML parser's recursion limit
@example("a: &x [*x]")  # a recursive alias
@example("? [a, b]\n: 1")  # an unhashable key
@example("mode: !!python/object/apply:os.system ['true']")
@example("\tmode: omni")
@example("mode: omni\nmode: pipeline")
@example("audio: {input: {backend: file, path: \"\\0\"}}")
@example("dashscope: {api_key: ${VOICE_AGENT_FUZZ_UNSET}}")
def test_any_text_loads_or_is_rejected_clearly(text: str) -> None:
    load(text)


@given(st.dictionaries(st.sampled_from(list(EXAMPLE) + ["mdoe", "audio_", ""]), values, max_size=5))
def test_random_documents_load_or_are_rejected_clearly(doc: dict[str, Any]) -> None:
    load(yaml.safe_dump(doc, allow_unicode=True))


@pytest.mark.parametrize("data", [b"\xff\xfe\x00garbage", b"mode: omni\x00\n", b"\x80\x81"])
def test_unreadable_config_files_are_config_errors(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    try:
        load_settings(path)
    except ConfigError as e:
        assert str(path) in str(e)


@pytest.mark.parametrize(("text", "names"), [
    ("[" * 10_000, "invalid YAML"),
    ("voice: {family: qwen, sample: '~nosuchuser/me.wav'}", "voice.sample"),
])
def test_what_the_fuzzer_found_is_a_config_error(text: str, names: str) -> None:
    """Found by the fuzzer: deep nesting made PyYAML raise RecursionError, and a sample path
    under an unknown user's home made `expanduser` raise RuntimeError — both escaped as
    tracebacks (exit 1, so systemd restarted the daemon forever) instead of exit 78."""
    with pytest.raises(ConfigError, match=names):
        parse_settings(text, SOURCE)
