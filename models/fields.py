"""Fields of the model configs that stage configs nest as components (`pretrain.model.*`, `qa.memory.*`).

The model packages cannot import `stages` (imports run jobs -> stages -> models), so their config
fields carry the metadata of `stages.core.config.knob` through this one helper: `help`, and
optionally `choices`, the ranges `ge`/`gt`/`le`/`lt`, `signature` and `derived` (filled in by
the stage, not a key).
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


def setting(default: Any, help: str, **metadata: Any):
    """A dataclass field with a help text and the knob metadata; mutable defaults are copied."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})
