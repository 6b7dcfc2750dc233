"""MemXLNet: memory-augmented XLNet for long-document question answering.

The torch and transformers modules are imported on first use: the qa stage's config nests
`MemoryConfig`, and `python jobs/submit.py --help` or a dry run must not pay for them.
"""

from __future__ import annotations

import importlib

from .config import TINY_XLNET, MemoryConfig

_LAZY = {
    "global_softmax_loss": "losses", "segment_local_loss": "losses",
    "add_memory_tokens": "memory_tokens", "memory_token_names": "memory_tokens",
    "MemXLNetForQA": "modeling", "SegmentOutput": "modeling",
    "TimeStepMajorRunner": "runner", "place_steps": "runner",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TINY_XLNET", "MemXLNetForQA", "MemoryConfig", "SegmentOutput", "TimeStepMajorRunner", "add_memory_tokens",
    "global_softmax_loss", "memory_token_names", "place_steps", "segment_local_loss",
]
