"""Configuration of the memory mechanism that MemXLNet adds on top of a transformers XLNet."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models.fields import setting

# A random-init XLNet small enough to train on a laptop CPU in a few minutes. No dropout: it
# trains for a few thousand steps on generated data, where dropout only slows learning down.
TINY_XLNET = {"d_model": 64, "n_layer": 2, "n_head": 4, "d_inner": 128, "dropout": 0.0, "mem_len": None}

MEMORY_INITS = ("learned", "zeros")

#: The flat names the memory fields had before they nested under `qa.memory` (a model folder
#: saved then uses them; the qa stage's config names them in its error for an old key).
FLAT_NAMES = {"memory_num_tokens": "num_tokens", "memory_update": "update", "memory_init": "init",
              "use_differentiable_memory": "differentiable", "memory_slots": "slots",
              "num_memory_heads": "heads", "memory_sharpness": "sharpness",
              "enable_usage_tracking": "usage_tracking", "enable_temporal_links": "temporal_links"}


@dataclass
class MemoryConfig:
    """How memory flows from one segment of a document to the next: the `qa` stage's `memory.*` keys.

    ``num_tokens`` N adds ``[MEM_READ_i]`` and ``[MEM_WRITE_i]`` (i < N) to the vocabulary; N=0 is
    plain XLNet. ``update`` names a registered memory variant (``models.memxlnet.memory.MEMORY_VARIANTS``);
    ``differentiable`` selects the slot memory with content addressing instead. The token ids are
    filled in by whoever adds the tokens to the tokenizer (`derived`: not a stage key).
    """

    num_tokens: int = setting(0, "memory tokens N ([MEM_READ_i]/[MEM_WRITE_i]); 0 = plain XLNet", ge=0)
    update: str = setting("gated", "memory variant (models/memxlnet/memory.py registry): gated (a gate blends the "
                                "write states into memory), replace (write states become memory), none (memory "
                                "keeps its initial value)")
    init: str = setting("learned", "initial memory", choices=MEMORY_INITS)
    extends_segment: bool = setting(False, "add the 2N memory tokens to the segment length instead of taking them from "
                                        "the context window, so that variants with and without memory read the "
                                        "same windows")
    differentiable: bool = setting(False, "slot memory with content addressing instead of token memory")
    slots: int = setting(16, "slots of the differentiable memory", ge=1)
    heads: int = setting(1, "addressing heads of the differentiable memory", ge=1, le=8)
    sharpness: float = setting(1.0, "softmax temperature factor of content addressing", gt=0)
    usage_tracking: bool = setting(False, "differentiable memory: prefer little-used slots when writing")
    temporal_links: bool = setting(False, "differentiable memory: follow write order when reading")
    read_token_ids: list[int] = setting([], "ids of [MEM_READ_i]", derived=True)
    write_token_ids: list[int] = setting([], "ids of [MEM_WRITE_i]", derived=True)

    @property
    def variant(self) -> str:
        """The registered memory variant this config builds."""
        return "differentiable" if self.differentiable else self.update

    def validate(self) -> None:
        """Raise ValueError naming the bad field and the fix (the one place memory settings are checked)."""
        from models.memxlnet.memory import MEMORY_VARIANTS

        updates = sorted(k for k in MEMORY_VARIANTS if k != "differentiable")
        if self.num_tokens < 0:
            raise ValueError(f"num_tokens: {self.num_tokens} < 0; use 0 (no memory) or more")
        if self.update not in updates:
            raise ValueError(f"update: {self.update!r} unknown; use one of {updates}")
        if self.init not in MEMORY_INITS:
            raise ValueError(f"init: {self.init!r} unknown; use one of {MEMORY_INITS}")
        if self.differentiable and self.num_tokens == 0:
            raise ValueError("differentiable: needs num_tokens > 0; set memory.num_tokens")
        if not 1 <= self.heads <= 8:
            raise ValueError(f"heads: {self.heads} outside 1..8; pick a value in 1..8")
        if self.slots < 1:
            raise ValueError(f"slots: {self.slots} < 1; use at least 1 slot")
        if self.sharpness <= 0:
            raise ValueError(f"sharpness: {self.sharpness} <= 0; use a positive value")
        if len(self.read_token_ids) != len(self.write_token_ids):
            raise ValueError("read_token_ids/write_token_ids: lists differ in length; re-add the memory tokens")

    def with_tokens(self, read_ids: list[int], write_ids: list[int]) -> MemoryConfig:
        """This config with the ids of the memory tokens added to the tokenizer."""
        return dataclasses.replace(self, read_token_ids=list(read_ids), write_token_ids=list(write_ids))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MemoryConfig:
        """Inverse of `to_dict`; also reads a folder saved under the earlier flat names."""
        if data.get("memory_read_scale", "raw") != "raw":
            raise ValueError("memory config: saved with memory_read_scale=embedding, which this version no longer "
                             "has; load it with the version that trained it")
        data = {FLAT_NAMES.get(key, key): value for key, value in data.items() if key != "memory_read_scale"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"memory config: unknown keys {unknown}; was it written by another version?")
        return cls(**data)
