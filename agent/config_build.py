"""Typed settings from YAML mappings: frozen dataclasses built field by field, strictly.

Why strict: a device running unattended must fail at start with one clear line (exit 78)
rather than misbehave later. An unknown key is rejected with the closest valid name, and a
wrong type names the key and the file; `${NAME}` / `${NAME:-default}` in a value is expanded
from the environment (an unset variable without a default is an error). Generic over the
dataclasses, so `agent.config` holds only the sections, their defaults and the checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import yaml


class ConfigError(Exception):
    """A configuration problem the operator must fix; the CLI exits 78 with this message."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, where: str) -> str:
    """Expand `${NAME}` and `${NAME:-default}`; an unset variable without a default is an error."""

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(f"{where}: environment variable ${{{name}}} is not set")
            return default
        return value

    return _ENV_REF.sub(repl, text)


def _public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def build(
    cls: type, raw: Any, prefix: str, source: str, internal: dict[str, Any] | None = None
) -> Any:
    """`cls` from a mapping; `internal` sets fields that are not config keys (`Settings.source`)."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_type_name(raw)}")
    fields = {f.name: f for f in _public_fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        key_s = str(key)
        if key_s not in fields:
            candidates = [prefix + n for n in fields]
            close = difflib.get_close_matches(prefix + key_s, candidates, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys here: {', '.join(fields)}"
            raise ConfigError(f"{source}: unknown key '{prefix}{key_s}'{hint}")
        kwargs[key_s] = _coerce(hints[key_s], value, prefix + key_s, source)
    return cls(**kwargs, **(internal or {}))


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key, source)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        names = " or ".join(_describe(a) for a in args)
        raise ConfigError(f"{source}: {key}: expected {names}, got {_type_name(value)} {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value is None and "none" in allowed:
            return "none"
        if value not in allowed:
            raise ConfigError(
                f"{source}: {key}: must be one of {', '.join(map(str, allowed))}; got {value!r}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        if value is None:
            return tp()
        return build(tp, value, key + ".", source)
    if origin is tuple:  # a YAML list: `tuple[X, ...]` keeps the settings immutable
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list, got {_type_name(value)} {value!r}")
        item = get_args(tp)[0]
        return tuple(_coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {_type_name(value)} {value!r}")
        kt, vt = get_args(tp)
        return {_coerce(kt, k, f"{key}.{k}", source): _coerce(vt, v, f"{key}.{k}", source)
                for k, v in value.items()}
    if isinstance(value, str) and tp is not str:
        value = expand_env(value, f"{source}: {key}")
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            pass
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str and isinstance(value, str):
        return expand_env(value, f"{source}: {key}")
    if tp is str and is_number:
        return str(value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and is_number and isinstance(value, int):
        return value
    if tp is float and is_number:
        return float(value)
    raise ConfigError(f"{source}: {key}: expected {_describe(tp)}, got {_type_name(value)} {value!r}")


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "null"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )
