"""Configuration of the memory mechanism that MemXLNet adds on top of a transformers XLNet."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# A random-init XLNet small enough to train on a laptop CPU in a few minutes. No dropout: it
# trains for a few thousand steps on generated data, where dropout only slows learning down.
TINY_XLNET = {"d_model": 64, "n_layer": 2, "n_head": 4, "d_inner": 128, "dropout": 0.0, "mem_len": None}

MEMORY_INITS = ("learned", "zeros")
MEMORY_READ_SCALES = ("raw", "embedding")


@dataclass
class MemoryConfig:
    """How memory flows from one segment of a document to the next.

    The field names are the `qa` stage's keys, so the stage passes its values through unchanged
    and error messages name what the user typed. ``memory_num_tokens`` N adds ``[MEM_READ_i]`` and
    ``[MEM_WRITE_i]`` (i < N) to the vocabulary; N=0 is plain XLNet. ``memory_update`` names a
    registered memory variant (see ``models.memxlnet.memory.MEMORY_VARIANTS``): ``none`` keeps the
    initial memory, ``replace`` takes the write-token states, ``gated`` blends them with the old
    memory. ``use_differentiable_memory`` selects the slot memory with content addressing instead.
    ``memory_read_scale`` says how the memory enters in place of the read tokens' embeddings:
    ``raw`` as it is (MemXLNet's design; the default, so saved models load as they were trained),
    ``embedding`` rescaled to the word embeddings' RMS.
    """

    memory_num_tokens: int = 0
    memory_update: str = "gated"
    memory_init: str = "learned"
    use_differentiable_memory: bool = False
    memory_slots: int = 16
    num_memory_heads: int = 1
    memory_sharpness: float = 1.0
    enable_usage_tracking: bool = False
    enable_temporal_links: bool = False
    memory_read_scale: str = "raw"
    read_token_ids: list[int] = field(default_factory=list)
    write_token_ids: list[int] = field(default_factory=list)

    @property
    def variant(self) -> str:
        """The registered memory variant this config builds."""
        return "differentiable" if self.use_differentiable_memory else self.memory_update

    def validate(self) -> None:
        """Raise ValueError naming the bad field and the fix (the one place memory settings are checked)."""
        from models.memxlnet.memory import MEMORY_VARIANTS

        updates = sorted(k for k in MEMORY_VARIANTS if k != "differentiable")
        if self.memory_num_tokens < 0:
            raise ValueError(f"memory_num_tokens: {self.memory_num_tokens} < 0; use 0 (no memory) or more")
        if self.memory_update not in updates:
            raise ValueError(f"memory_update: {self.memory_update!r} unknown; use one of {updates}")
        if self.memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init: {self.memory_init!r} unknown; use one of {MEMORY_INITS}")
        if self.memory_read_scale not in MEMORY_READ_SCALES:
            raise ValueError(f"memory_read_scale: {self.memory_read_scale!r} unknown; use one of {MEMORY_READ_SCALES}")
        if self.use_differentiable_memory and self.memory_num_tokens == 0:
            raise ValueError("use_differentiable_memory: needs memory_num_tokens > 0; set memory_num_tokens")
        if not 1 <= self.num_memory_heads <= 8:
            raise ValueError(f"num_memory_heads: {self.num_memory_heads} outside 1..8; pick a value in 1..8")
        if self.memory_slots < 1:
            raise ValueError(f"memory_slots: {self.memory_slots} < 1; use at least 1 slot")
        if self.memory_sharpness <= 0:
            raise ValueError(f"memory_sharpness: {self.memory_sharpness} <= 0; use a positive value")
        if len(self.read_token_ids) != len(self.write_token_ids):
            raise ValueError("read_token_ids/write_token_ids: lists differ in length; re-add the memory tokens")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MemoryConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"memory config: unknown keys {unknown}; was it written by another version?")
        return cls(**data)

    @classmethod
    def stage_keys(cls) -> tuple[str, ...]:
        """The fields a stage config provides under the same names (all but the token ids)."""
        return tuple(f.name for f in dataclasses.fields(cls) if not f.name.endswith("_token_ids"))
