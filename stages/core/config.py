"""Typed stage configs: defaults, then preset, then `key=value` overrides, then validation.

A stage config is a plain `@dataclass`. Each field is declared with `knob`, which records
its help text, whether it changes the stage's output (and so belongs in the artifact
signature), and its allowed values. OmegaConf does the parsing and type checking; this
module turns its errors into one-line messages that name the key and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
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


def knob(default: Any, help: str = "", *, signature: bool | str = True, choices: tuple | None = None):
    """Declare a config field.

    `signature=False` marks fields that do not change the stage's output (worker counts,
    logging, paths): they are left out of the artifact signature so a rerun is a cache hit.
    `signature=WHEN_SET` is for a knob added to a stage whose artifacts exist: at its default it
    does what the stage did before it existed, so it is left out of the signature there and
    those artifacts stay reachable; set, it is part of the signature like any other field.
    """
    metadata = {"help": help, "signature": signature, "choices": tuple(choices) if choices else None}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """What `--help` shows about one config key."""

    name: str
    type_name: str
    default: Any
    help: str
    choices: tuple | None
    signature: bool | str


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def describe(cls: type) -> list[FieldInfo]:
    """List a config class's keys with type, default, help and choices."""
    hints = typing.get_type_hints(cls)
    infos = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        infos.append(
            FieldInfo(
                name=f.name,
                type_name=_type_name(hints.get(f.name, f.type)),
                default=default,
                help=f.metadata.get("help", ""),
                choices=f.metadata.get("choices"),
                signature=f.metadata.get("signature", True),
            )
        )
    return infos


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def did_you_mean(word: str, candidates: list[str]) -> str:
    """' (did you mean `x`?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def unknown_key_error(key: str, where: str, candidates: list[str]) -> ConfigError:
    hint = did_you_mean(key, candidates)
    if not hint:
        ordered = sorted(candidates)
        more = f", ... ({len(ordered) - 40} more; `python jobs/submit.py --help` lists them all)"
        hint = f"; valid keys: {', '.join(ordered[:40])}{more if len(ordered) > 40 else ''}"
    return ConfigError(f"unknown key `{key}` for {where}{hint}")


def _merge_one(base, key: str, value: Any, where: str):
    """Merge one override, parsing CLI strings the way OmegaConf's dotlist does."""
    try:
        if isinstance(value, str):
            try:
                patch = OmegaConf.from_dotlist([f"{key}={value}"])
            except yaml.YAMLError:  # `@x`, `` `x ``, `%x`, `!!python/...`: not YAML, so the literal text
                patch = OmegaConf.create({key: literal(value)})
        else:
            patch = OmegaConf.create({key: value})
        return OmegaConf.merge(base, patch)
    except OmegaConfBaseException as err:
        expected = OmegaConf.get_type(base, key)
        expected_name = _type_name(expected) if expected is not None else "another type"
        detail = str(err).splitlines()[0]
        raise ConfigError(
            f"{where} key `{key}`: cannot use {value!r} (expected {expected_name}): {detail}"
        ) from None


def resolve(cls: type, overrides: Mapping[str, Any] | None = None, where: str | None = None):
    """Build a validated config instance: defaults -> preset -> overrides -> validation."""
    overrides = dict(overrides or {})
    where = where or cls.__name__
    names = field_names(cls)
    for key in overrides:
        if key not in names:
            raise unknown_key_error(key, where, names)
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
    cfg = OmegaConf.to_object(base)
    check_choices(cfg, where)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        try:
            validate()
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: {err}") from None
    return cfg


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


def from_dict(cls: type, recorded: Mapping[str, Any]):
    """The config instance a recorded config dict describes (e.g. an upstream manifest's `config`).

    The record is already resolved, so no preset is applied again: recorded fields keep their
    values, fields the record lacks (an artifact older than the field) take the class default,
    and keys the class no longer has are dropped. Readers of an upstream artifact use this (via
    `Artifact.typed_config`) instead of `dict.get(key, fallback)`, so no reader carries a second
    copy of a default.
    """
    names = set(field_names(cls))
    known = {k: literal(v) for k, v in recorded.items() if k in names}  # data, never interpolated
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(known)))
    except OmegaConfBaseException as err:
        raise ConfigError(f"recorded {cls.__name__} does not fit its class: {str(err).splitlines()[0]}") from None


def check_choices(cfg: Any, where: str) -> None:
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if not choices:
            continue
        value = getattr(cfg, f.name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v not in choices:
                raise ConfigError(
                    f"{where} key `{f.name}`: {v!r} is not allowed; choose one of {', '.join(map(str, choices))}"
                )


def to_dict(cfg: Any) -> dict:
    """Plain JSON-serialisable dict of a config instance."""
    return dataclasses.asdict(cfg)


def signature_dict(cfg: Any) -> dict:
    """The fields that change the stage's output, for the artifact signature."""
    kept = {}
    for f in dataclasses.fields(cfg):
        kind, value = f.metadata.get("signature", True), getattr(cfg, f.name)
        if kind == WHEN_SET:
            kind = value != (f.default_factory() if f.default is dataclasses.MISSING else f.default)
        if kind is True:
            kept[f.name] = value
    return kept
