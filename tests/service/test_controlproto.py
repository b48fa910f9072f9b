"""The request protocol's new commands (SPEC §6): `volume` levels and `subscribe`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.controlproto import RequestError, parse_command, parse_request

pytestmark = pytest.mark.unit


def line(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_volume_without_level_reads_with_level_sets() -> None:
    assert parse_command(line({"cmd": "volume"})) == ("volume", None, None)
    assert parse_command(line({"cmd": "volume", "level": None})) == ("volume", None, None)
    assert parse_command(line({"cmd": "volume", "level": 0})) == ("volume", None, 0)
    assert parse_command(line({"cmd": "volume", "level": 100})) == ("volume", None, 100)
    assert parse_request(line({"cmd": "volume", "level": 7})) == ("volume", None)


def test_subscribe_is_a_command() -> None:
    assert parse_command(line({"cmd": "subscribe"})) == ("subscribe", None, None)


@given(st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=5), st.booleans(),
                 st.lists(st.integers(), max_size=2)))
def test_any_level_is_accepted_only_as_an_integer_0_to_100(level: object) -> None:
    try:
        _, _, got = parse_command(line({"cmd": "volume", "level": level}))
    except RequestError as e:
        assert "0-100" in str(e) and "\n" not in str(e)
        assert not (type(level) is int and 0 <= level <= 100)
        return
    assert type(level) is int and got == level and 0 <= got <= 100
