"""Settings are values: every section is frozen and `source` is set when they are built.

A component keeps the section it was handed; nobody can change it underneath (a running mode and
a test that "tweaks" the daemon's settings used to share one mutable object). Variants are made
with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent import config
from agent.config import Settings, parse_settings

pytestmark = pytest.mark.unit


def _sections(obj: object) -> list[object]:
    out = [obj]
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += _sections(value)
        elif isinstance(value, tuple):  # a list of sections (tools.mcp)
            out += [x for v in value if dataclasses.is_dataclass(v) for x in _sections(v)]
    return out


def test_every_section_is_frozen() -> None:
    s = parse_settings("mode: pipeline\nvoice: {family: cosyvoice}\n"
                       "tools: {mcp: [{name: ha, url: 'http://ha.local:8123/api/mcp'}]}\n")
    sections = _sections(s)
    defined = {cls for cls in vars(config).values()
               if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == config.__name__}
    assert {type(section) for section in sections} == defined  # every section is reached
    for section in sections:
        name = dataclasses.fields(section)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, name, getattr(section, name))


def test_source_is_set_at_construction_and_kept_by_replace() -> None:
    s = parse_settings("log: {level: debug}\n", "kiosk.yaml")
    assert s.source == "kiosk.yaml"
    quieter = dataclasses.replace(s, log=dataclasses.replace(s.log, level="warning"))
    assert (quieter.source, quieter.log.level, s.log.level) == ("kiosk.yaml", "warning", "debug")
    assert Settings().source == "<defaults>"
