"""Configuration of the memory mechanism that MemXLNet adds on top of a transformers XLNet."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# A random-init XLNet small enough to train on a laptop CPU in about a minute.
TINY_XLNET = {"d_model": 64, "n_layer": 2, "n_head": 4, "d_inner": 128, "dropout": 0.1, "mem_len": None}

MEMORY_UPDATES = ("gated", "none")
MEMORY_INITS = ("learned", "zeros")


@dataclass
class MemoryConfig:
    """How memory flows from one segment of a document to the next.

    ``num_tokens`` N adds ``[MEM_READ_i]`` and ``[MEM_WRITE_i]`` (i < N) to the vocabulary. The read
    tokens' embeddings are replaced by the memory state; the write tokens' final hidden states become
    the next segment's memory. N=0 is plain XLNet. With ``differentiable`` the write states are written
    into a slot memory with content addressing and the read tokens read from it.
    """

    num_tokens: int = 0
    update: str = "gated"
    init: str = "learned"
    differentiable: bool = False
    slots: int = 16
    heads: int = 1
    sharpness: float = 1.0
    usage_tracking: bool = False
    temporal_links: bool = False
    read_token_ids: list[int] = field(default_factory=list)
    write_token_ids: list[int] = field(default_factory=list)

    def validate(self) -> None:
        """Raise ValueError naming the bad field and the fix."""
        if self.num_tokens < 0:
            raise ValueError(f"memory_num_tokens: {self.num_tokens} < 0; use 0 (no memory) or more")
        if self.update not in MEMORY_UPDATES:
            raise ValueError(f"memory_update: {self.update!r} unknown; use one of {MEMORY_UPDATES}")
        if self.init not in MEMORY_INITS:
            raise ValueError(f"memory_init: {self.init!r} unknown; use one of {MEMORY_INITS}")
        if self.differentiable and self.num_tokens == 0:
            raise ValueError("use_differentiable_memory: needs memory_num_tokens > 0; set memory_num_tokens")
        if not 1 <= self.heads <= 8:
            raise ValueError(f"num_memory_heads: {self.heads} outside 1..8; pick a value in 1..8")
        if self.slots < 1:
            raise ValueError(f"memory_slots: {self.slots} < 1; use at least 1 slot")
        if self.sharpness <= 0:
            raise ValueError(f"memory_sharpness: {self.sharpness} <= 0; use a positive value")
        if len(self.read_token_ids) != len(self.write_token_ids):
            raise ValueError("memory token ids: read and write lists differ in length; re-add the memory tokens")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MemoryConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"memory config: unknown keys {unknown}; was it written by a newer version?")
        return cls(**data)
