"""The generic engine behind :mod:`jedi_core.config`: typed fields, overrides, validation, (de)serialisation.

Nothing here knows JEDI. A config is a tree of frozen dataclasses whose leaves are declared with
:func:`option` (a default, and optionally the allowed ``choices`` or an inclusive ``low``/``high`` range).
On that tree this module offers:

* :func:`apply_overrides`: ``dotted.key=value`` strings from a command line, each parsed by its field's
  type hint, with a "did you mean" for a misspelt key or choice;
* :func:`validate`: every field checked against its type, choices and range, then the section's own
  ``validate()`` method for rules that tie fields together;
* :func:`to_dict` / :func:`from_dict`: plain JSON-ready data and back (unknown keys are errors);
* :func:`describe`: one ``key = value  # help`` line per field.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import field
from typing import Any, TypeVar

#: Any dataclass config tree (the engine is generic; ``jedi_core.config.Config`` is the one the project uses).
ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A config key or value that is not allowed; the message says which and what is."""


def option(default: Any, *, choices: Sequence[Any] | None = None, low: float | None = None,
           high: float | None = None, help: str = "") -> Any:
    """A dataclass field with its allowed values (``choices``) or inclusive range (``low``/``high``)."""
    meta = {"choices": tuple(choices) if choices is not None else None, "low": low, "high": high,
            "help": help}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults so configs stay immutable")
    return field(default=default, metadata=meta)


def apply_overrides(cfg: ConfigT, overrides: Sequence[str]) -> ConfigT:
    """Return a copy of ``cfg`` with each ``dotted.key=value`` applied (values parsed per field type)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value, e.g. env.game=Pong")
        cfg = _set(cfg, key.strip().split("."), raw.strip(), prefix="")
    return cfg


def validate(cfg: object, prefix: str = "") -> None:
    """Check every field of a config tree against its type, choices and range, then its own rules."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            validate(value, name + ".")
            continue
        _check_type(name, value, hints[f.name])
        choices = f.metadata.get("choices")
        low = f.metadata.get("low")
        high = f.metadata.get("high")
        if choices is not None and value not in choices:
            allowed = ", ".join(map(str, choices))
            raise ConfigError(f"{name}: {value!r} is not allowed; choose one of: {allowed}"
                              + did_you_mean(str(value), [str(c) for c in choices]))
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name}: {value!r} is out of range; allowed: "
                              f"{low if low is not None else '-inf'} <= {f.name} <= "
                              f"{high if high is not None else 'inf'}")
    if hasattr(cfg, "validate"):
        cfg.validate()


def to_dict(cfg: object) -> dict[str, Any]:
    """The config as plain JSON-ready data (tuples become lists)."""
    return dataclasses.asdict(cfg)


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted keys whose values differ between two :func:`to_dict` trees (a key in one only counts)."""
    differences = set()
    for key in set(saved) | set(current):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences |= config_differences(a, b, prefix + key + ".")
        elif a != b:
            differences.add(prefix + key)
    return differences


def from_dict(data: dict[str, Any], cls: type[ConfigT]) -> ConfigT:
    """Rebuild a ``cls`` config from :func:`to_dict` output and validate it; unknown keys are errors.

    A key that is missing takes its default, so a run saved before a section was added still loads.
    """
    cfg = _build(data, cls)
    validate(cfg)
    return cfg


def describe(cfg: object, prefix: str = "") -> list[str]:
    """One line per field, ``key = value  # help``, for ``--help`` texts and printing a run's config."""
    hints = typing.get_type_hints(type(cfg))
    lines = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            lines += describe(value, prefix + f.name + ".")
        else:
            note = f.metadata.get("help", "")
            lines.append(f"{prefix + f.name} = {value!r}" + (f"  # {note}" if note else ""))
    return lines


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ----------------------------------------------------------------------------------------------
# Helpers


def _build(data: dict[str, Any], cls: type[ConfigT]) -> ConfigT:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)} for {cls.__name__}; valid: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        kwargs[name] = _build(value, hint) if dataclasses.is_dataclass(hint) else _coerce_data(value, hint)
    return cls(**kwargs)


def _set(cfg: ConfigT, path: list[str], raw: str, prefix: str) -> ConfigT:
    names = [f.name for f in dataclasses.fields(cfg)]
    head = path[0]
    if head not in names:
        where = f" in {prefix[:-1]}" if prefix else ""
        raise ConfigError(f"unknown config key {prefix + head!r}{did_you_mean(head, names)}; "
                          f"valid keys{where}: {', '.join(names)}")
    hint = typing.get_type_hints(type(cfg))[head]
    current = getattr(cfg, head)
    if dataclasses.is_dataclass(hint):
        if len(path) == 1:
            raise ConfigError(f"{prefix + head!r} is a section; set one of its keys, e.g. "
                              f"{prefix + head}.{dataclasses.fields(current)[0].name}=...")
        return dataclasses.replace(cfg, **{head: _set(current, path[1:], raw, prefix + head + ".")})
    if len(path) > 1:
        raise ConfigError(f"{prefix + head!r} is a value, not a section: drop '.{'.'.join(path[1:])}'")
    return dataclasses.replace(cfg, **{head: _parse(prefix + head, raw, hint)})


def _parse(name: str, raw: str, hint: Any) -> Any:
    """Turn command-line text into a value of the field's type, or say what was expected."""
    try:
        if hint is str:
            return raw
        if hint is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(raw.replace("_", ""))
        if hint is float:
            return float(raw)
        if typing.get_origin(hint) is tuple:
            text = raw.strip()
            items = ast.literal_eval(text if text[:1] in "([" else f"({text},)")
            return _coerce_data(list(items) if isinstance(items, (list, tuple)) else [items], hint)
    except (ValueError, SyntaxError, TypeError):
        pass
    hint_text = ""
    if hint is int:
        try:  # 1e5 is a float to Python; say how to write the integer it means
            as_float = float(raw)
            if as_float.is_integer():
                hint_text = f" (write {int(as_float)} or {int(as_float):_})"
        except ValueError:
            pass
    raise ConfigError(f"{name}: cannot read {raw!r} as {_type_name(hint)}{hint_text}")


def _coerce_data(value: Any, hint: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a sequence for {_type_name(hint)}, got {value!r}")
        return tuple(float(v) if item_type is float and isinstance(v, int) and not isinstance(v, bool) else v
                     for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_type(name: str, value: Any, hint: Any) -> None:
    ok: bool
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        ok = isinstance(value, tuple) and len(item_types) == len(value) and all(
            _is_instance(v, t) for v, t in zip(value, item_types, strict=True))
    elif isinstance(hint, type):
        ok = isinstance(value, hint)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{name}: {value!r} is not {_type_name(hint)}")


def _is_instance(value: Any, hint: Any) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {args[0].__name__} (e.g. 0.1,0.1,0.1,0.7)"
        return f"a list of {len(args)} values ({', '.join(a.__name__ for a in args)})"
    if isinstance(hint, types.UnionType):
        return str(hint)
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(hint, str(hint))
