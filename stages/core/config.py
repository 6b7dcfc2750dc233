"""Typed stage configs: defaults, then preset, then `key=value` overrides, then validation.

A stage config is a plain `@dataclass`. Each field is declared with `knob`, which records
its help text, whether it changes the stage's output (and so belongs in the artifact
signature), its allowed values and its range. A field whose type is itself a dataclass is a
*component*: its keys nest under the field's name (`memory.num_tokens`, `packing.strategy`), and
the component's class lives next to the code it configures. Components in `models/` cannot import
this module, so they declare the same metadata with `dataclasses.field(metadata=...)`: the keys
`help`, `signature`, `choices`, `ge`, `gt`, `le`, `lt` and `derived` (a value the stage fills in,
e.g. token ids: not a key, not in the signature). OmegaConf does the parsing and type checking;
this module turns its errors into one-line messages that name the key and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A bad user-supplied config value or key; its message is one line, fit for a CLI."""


def parse_bool(key: str, value: Any) -> bool:
    """A command-line boolean; anything but true/false/1/0/yes/no is an error naming the key."""
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"`{key}` must be true or false, got {value!r}")
    return text in ("true", "1", "yes")


#: `knob(signature=WHEN_SET)`: the field joins the signature only when it differs from its default.
WHEN_SET = "when_set"


def knob(default: Any, help: str = "", *, signature: bool | str = True, choices: tuple | None = None,
         ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None):
    """Declare a config field.

    `signature=False` marks fields that do not change the stage's output (worker counts,
    logging, paths): they are left out of the artifact signature so a rerun is a cache hit.
    `signature=WHEN_SET` is for a knob added to a stage whose artifacts exist: at its default it
    does what the stage did before it existed, so it is left out of the signature there and
    those artifacts stay reachable; set, it is part of the signature like any other field.
    `ge`/`gt`/`le`/`lt` bound a number (each element of a list); every float must be finite.
    A dataclass instance as `default` makes the field a component with those defaults.
    """
    metadata = {"help": help, "signature": signature, "choices": tuple(choices) if choices else None}
    metadata.update({name: bound for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt))
                     if bound is not None})
    if isinstance(default, (list, dict, set)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """What `--help` shows about one config key (`name` is dotted inside a component)."""

    name: str
    type_name: str
    default: Any
    help: str
    choices: tuple | None
    signature: bool | str
    bounds: str = ""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


@functools.cache
def components(cls: type) -> dict[str, type]:
    """The fields of `cls` that are components (dataclass-typed), by name (computed once per class)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints.get(f.name), type) and dataclasses.is_dataclass(hints[f.name])}


def _leaves(cls: type, instance: Any, prefix: str = ""):
    """(dotted name, field, type hint, default value) of every key of `cls`, components expanded."""
    hints = typing.get_type_hints(cls)
    nested = components(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("derived"):
            continue
        value = getattr(instance, f.name)
        if f.name in nested:
            yield from _leaves(nested[f.name], value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, hints.get(f.name, f.type), value


def describe(cls: type) -> list[FieldInfo]:
    """List a config class's keys (components' keys dotted) with type, default, help and choices."""
    return [FieldInfo(name=name, type_name=_type_name(tp), default=default, help=f.metadata.get("help", ""),
                      choices=f.metadata.get("choices"), signature=f.metadata.get("signature", True),
                      bounds=" ".join(f"{sign}{f.metadata[key]}" for key, (_, sign) in _BOUNDS.items()
                                      if key in f.metadata))
            for name, f, tp, default in _leaves(cls, cls())]


@functools.cache
def field_names(cls: type) -> tuple[str, ...]:
    """Every key of `cls`; a component's keys are dotted (`memory.num_tokens`). Computed once per
    class: the planner asks for every key of the command line and every stage."""
    return tuple(name for name, *_ in _leaves(cls, cls()))


def renamed(cls: type) -> dict[str, str]:
    """{old flat key: its dotted name} of the keys that moved into a component."""
    return dict(getattr(cls, "RENAMED", {}) or {})


def did_you_mean(word: str, candidates: list[str]) -> str:
    """' (did you mean `x`?)' when a close match exists, else ''; a dotted candidate also matches
    by its last part (`stratgy` -> `packing.strategy`)."""
    options = {c: c for c in candidates}
    if "." not in word:
        options.update({c.rsplit(".", 1)[-1]: c for c in candidates if "." in c and c.rsplit(".", 1)[-1] not in options})
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean `{options[close[0]]}`?)" if close else ""


def unknown_key_error(key: str, where: str, candidates: list[str]) -> ConfigError:
    hint = did_you_mean(key, candidates)
    if not hint:
        ordered = sorted(candidates)
        more = f", ... ({len(ordered) - 40} more; `python jobs/submit.py --help` lists them all)"
        hint = f"; valid keys: {', '.join(ordered[:40])}{more if len(ordered) > 40 else ''}"
    return ConfigError(f"unknown key `{key}` for {where}{hint}")


def moved_key_error(key: str, new: str, where: str) -> ConfigError:
    return ConfigError(f"key `{key}` of {where} is now `{new}`: write `{new}=...`")


def check_key(cls: type, key: str, where: str, names: list[str] | None = None) -> None:
    """Raise the one-line error for a key `cls` does not have: moved (naming its new name) or unknown."""
    names = field_names(cls) if names is None else names
    if key in names:
        return
    moved = renamed(cls)
    if key in moved:
        raise moved_key_error(key, moved[key], where)
    if key in derived_names(cls):
        raise ConfigError(f"{where} key `{key}` is filled in by the stage, not set: leave it out")
    raise unknown_key_error(key, where, names)


def derived_names(cls: type, prefix: str = "") -> set[str]:
    """The dotted names of the fields the stage fills in (`derived`): not keys a user sets."""
    nested = components(cls)
    names = set()
    for f in dataclasses.fields(cls):
        if f.name in nested:
            names |= derived_names(nested[f.name], f"{prefix}{f.name}.")
        elif f.metadata.get("derived"):
            names.add(f"{prefix}{f.name}")
    return names


def _nest(key: str, value: Any) -> dict:
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def _merge_one(base, key: str, value: Any, where: str):
    """Merge one override, parsing CLI strings the way OmegaConf's dotlist does."""
    try:
        if isinstance(value, str):
            try:
                patch = OmegaConf.from_dotlist([f"{key}={value}"])
            except yaml.YAMLError:  # `@x`, `` `x ``, `%x`, `!!python/...`: not YAML, so the literal text
                patch = OmegaConf.create(_nest(key, literal(value)))
        else:
            patch = OmegaConf.create(_nest(key, value))
        return OmegaConf.merge(base, patch)
    except OmegaConfBaseException as err:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(base, parent) if parent else base
        expected = OmegaConf.get_type(node, leaf) if node is not None and leaf in node else None
        expected_name = _type_name(expected) if expected is not None else "another type"
        detail = str(err).splitlines()[0]
        raise ConfigError(
            f"{where} key `{key}`: cannot use {value!r} (expected {expected_name}): {detail}"
        ) from None


def resolve(cls: type, overrides: Mapping[str, Any] | None = None, where: str | None = None):
    """Build a validated config instance: defaults -> preset -> overrides -> validation.

    Keys of components are dotted (`memory.num_tokens=4`). Each component's `validate()` runs
    before its parent's, so a parent's `validate()` keeps only the rules that span components."""
    overrides = dict(overrides or {})
    where = where or cls.__name__
    names = field_names(cls)
    for key in overrides:
        check_key(cls, key, where, names)
    base = OmegaConf.structured(cls)
    presets: dict[str, dict] = getattr(cls, "PRESETS", {}) or {}
    if presets and "preset" in names:
        preset = str(overrides.get("preset", base.preset))
        if preset not in presets:
            raise ConfigError(f"{where} key `preset`: unknown preset {preset!r}; choose one of {sorted(presets)}")
        for key, value in presets[preset].items():
            base = _merge_one(base, key, value, where)
    for key, value in overrides.items():
        base = _merge_one(base, key, value, where)
    try:
        cfg = OmegaConf.to_object(base)
    except (ValueError, TypeError) as err:  # a component's __post_init__ refused its values
        raise ConfigError(f"{where}: {err}") from None
    _check(cfg, where)
    return cfg


def _check(cfg: Any, where: str, prefix: str = "") -> None:
    """Declared choices and ranges, then `validate()`, components first."""
    nested = components(type(cfg))
    for f in dataclasses.fields(cfg):
        if f.name in nested:
            _check(getattr(cfg, f.name), where, f"{prefix}{f.name}.")
        elif not f.metadata.get("derived"):
            _check_declared(f, getattr(cfg, f.name), f"{where} key `{prefix}{f.name}`")
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        try:
            validate()
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {prefix}{err}") from None


_BOUNDS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
           "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


def _check_declared(f: dataclasses.Field, value: Any, what: str) -> None:
    choices = f.metadata.get("choices")
    for v in value if isinstance(value, list) else [value]:
        if choices and v not in choices:
            raise ConfigError(f"{what}: {v!r} is not allowed; choose one of {', '.join(map(str, choices))}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{what}: {v} is not a finite number")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            for name, (holds, sign) in _BOUNDS.items():
                bound = f.metadata.get(name)
                if bound is not None and not holds(v, bound):
                    raise ConfigError(f"{what}: {v} must be {sign} {bound}")


_INTERPOLATION = re.compile(r"(\\*)\$\{")


def literal(value: Any) -> Any:
    """`value` with every `${...}` in its strings escaped, so OmegaConf keeps the text as it is
    instead of resolving it (`${oc.env:X}` in a recorded config must not read the reader's
    environment). Lists and dicts are escaped throughout."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group(1) * 2 + "\\${", value)
    if isinstance(value, list):
        return [literal(v) for v in value]
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    return value


def _known(cls: type, recorded: Mapping[str, Any]) -> dict:
    """The part of a recorded config dict that `cls` knows, old flat keys moved into their component."""
    recorded = dict(recorded)
    for old, new in renamed(cls).items():
        if old in recorded:
            head, _, rest = new.partition(".")
            recorded.setdefault(head, {}).setdefault(rest, recorded.pop(old))
    names = {f.name for f in dataclasses.fields(cls)}
    nested = components(cls)
    known = {}
    for key, value in recorded.items():
        if key in nested and isinstance(value, Mapping):
            known[key] = _known(nested[key], value)
        elif key in names and key not in nested:
            known[key] = literal(value)  # data, never interpolated
    return known


def from_dict(cls: type, recorded: Mapping[str, Any]):
    """The config instance a recorded config dict describes (e.g. an upstream manifest's `config`).

    The record is already resolved, so no preset is applied again: recorded fields keep their
    values, fields the record lacks (an artifact older than the field) take the class default,
    keys the class no longer has are dropped, and flat keys that moved into a component are read
    under their new name. Readers of an upstream artifact use this (via `Artifact.typed_config`)
    instead of `dict.get(key, fallback)`, so no reader carries a second copy of a default.
    """
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(_known(cls, recorded))))
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        raise ConfigError(f"recorded {cls.__name__} does not fit its class: {str(err).splitlines()[0]}") from None


def to_dict(cfg: Any) -> dict:
    """Plain JSON-serialisable dict of a config instance (components as nested dicts)."""
    return dataclasses.asdict(cfg)


def signature_dict(cfg: Any) -> dict:
    """The fields that change the stage's output, for the artifact signature (components nested)."""
    nested = components(type(cfg))
    kept = {}
    for f in dataclasses.fields(cfg):
        kind, value = f.metadata.get("signature", True), getattr(cfg, f.name)
        if f.metadata.get("derived"):
            continue
        if f.name in nested:
            kept[f.name] = signature_dict(value)
            continue
        if kind == WHEN_SET:
            kind = value != (f.default_factory() if f.default is dataclasses.MISSING else f.default)
        if kind is True:
            kept[f.name] = value
    return kept
