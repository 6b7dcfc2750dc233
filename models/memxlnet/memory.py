"""Memory modules: how write-token states become the next segment's read-token embeddings.

A memory state is a dict of tensors whose first dimension is the batch (one row per document),
so the time-step-major runner can select and scatter the rows of the documents still active.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from models.memxlnet.config import MemoryConfig

MemoryState = dict[str, torch.Tensor]


def select_rows(state: MemoryState, rows: torch.Tensor) -> MemoryState:
    """The memory rows of the given documents."""
    return {k: v.index_select(0, rows) for k, v in state.items()}


def scatter_rows(state: MemoryState, rows: torch.Tensor, update: MemoryState) -> MemoryState:
    """A new state equal to ``state`` with the given documents' rows replaced (out of place, autograd-safe)."""
    return {k: v.index_copy(0, rows, update[k].to(v.dtype)) for k, v in state.items()}


class Memory(Protocol):
    """What a memory variant provides (an ``nn.Module`` built as ``cls(cfg, d_model)``).

    ``read`` returns the read-token embeddings [B, N, D] for the coming segment and an info dict;
    ``write`` folds the write-token hidden states [B, N, D] into a new state and returns it with
    an info dict. Info keys follow MemXLNet: ``read_weights``, ``write_weights``, ``memory_state``,
    ``usage``, ``temporal_links`` (each where the variant has it).
    """

    def init_state(self, batch_size: int) -> MemoryState: ...

    def read(self, state: MemoryState) -> tuple[torch.Tensor, dict]: ...

    def write(self, state: MemoryState, written: torch.Tensor, read_info: dict) -> tuple[MemoryState, dict]: ...


#: name -> memory class; ``memory.update=<name>`` (or ``memory.differentiable``) selects one.
MEMORY_VARIANTS: dict[str, type[nn.Module]] = {}


def register_memory(name: str):
    """Class decorator: make a memory variant selectable by name."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MEMORY_VARIANTS:
            raise ValueError(f"memory variant {name!r} is registered twice")
        MEMORY_VARIANTS[name] = cls
        return cls

    return add


def build_memory(cfg: MemoryConfig, d_model: int) -> nn.Module | None:
    """The memory module of a config, or None without memory tokens."""
    if cfg.num_tokens == 0:
        return None
    if cfg.variant not in MEMORY_VARIANTS:
        raise ValueError(f"update: {cfg.variant!r} unknown; use one of {sorted(MEMORY_VARIANTS)}")
    return MEMORY_VARIANTS[cfg.variant](cfg, d_model)


class TokenMemory(nn.Module):
    """Memory = N vectors, one per memory token pair; starts from a learned (or zero) value."""

    def __init__(self, cfg: MemoryConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        learned = cfg.init == "learned"
        initial = torch.randn(cfg.num_tokens, d_model) * 0.02 if learned else torch.zeros(cfg.num_tokens, d_model)
        self.initial = nn.Parameter(initial, requires_grad=learned)

    def init_state(self, batch_size: int) -> MemoryState:
        return {"memory": self.initial.unsqueeze(0).expand(batch_size, -1, -1)}

    def read(self, state: MemoryState) -> tuple[torch.Tensor, dict]:
        return state["memory"], {}

    def update(self, old: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def write(self, state: MemoryState, written: torch.Tensor, read_info: dict) -> tuple[MemoryState, dict]:
        new = self.update(state["memory"], written)
        return {"memory": new}, {"memory_state": new}


@register_memory("none")
class FixedMemory(TokenMemory):
    """No update: every segment reads the initial memory (MemXLNet's no-update baseline)."""

    def update(self, old: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        return old


@register_memory("replace")
class ReplaceMemory(TokenMemory):
    """Ungated: the next segment reads this segment's write-token states."""

    def update(self, old: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        return written


@register_memory("gated")
class GatedMemory(TokenMemory):
    """A learned sigmoid gate per dimension blends the write-token states into the old memory."""

    def __init__(self, cfg: MemoryConfig, d_model: int):
        super().__init__(cfg, d_model)
        self.gate = nn.Linear(2 * d_model, d_model)

    def update(self, old: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(torch.cat([old, written], dim=-1)))
        return gate * written + (1 - gate) * old


@register_memory("differentiable")
class DifferentiableMemory(nn.Module):
    """A slot memory [S, D] written and read by multi-head content addressing.

    Writing: each write-token state emits a key, an erase vector and a value; its address is a softmax
    over slots of ``sharpness * cosine(key, slot)`` averaged over heads, optionally blended with an
    allocation weighting towards little-used slots (usage tracking). Reading: each read token's key is
    computed from the previous segment's write states; with temporal links the read address also
    follows the order in which slots were written.
    """

    def __init__(self, cfg: MemoryConfig, d_model: int):
        super().__init__()
        if d_model % cfg.heads:
            raise ValueError(f"heads: {cfg.heads} does not divide d_model={d_model}; pick a divisor")
        self.cfg = cfg
        self.heads = cfg.heads
        n, s = cfg.num_tokens, cfg.slots
        learned = cfg.init == "learned"
        self.initial_slots = nn.Parameter(torch.randn(s, d_model) * 0.02 if learned else torch.zeros(s, d_model),
                                          requires_grad=learned)
        self.initial_read = nn.Parameter(torch.randn(n, d_model) * 0.02 if learned else torch.zeros(n, d_model),
                                         requires_grad=learned)
        self.write_key = nn.Linear(d_model, d_model)
        self.erase = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.read_key = nn.Linear(d_model, d_model)
        self.read_out = nn.Linear(d_model, d_model)
        self.alloc_gate = nn.Linear(d_model, 1) if cfg.usage_tracking else None

    def init_state(self, batch_size: int) -> MemoryState:
        b, s = batch_size, self.cfg.slots
        ref = self.initial_slots
        state = {
            "slots": ref.unsqueeze(0).expand(b, -1, -1),
            "last_written": ref.new_zeros(b, self.cfg.num_tokens, ref.shape[1]),
            "read_weights": ref.new_zeros(b, self.cfg.num_tokens, s),
            "started": ref.new_zeros(b, 1, 1),
        }
        if self.cfg.usage_tracking:
            state["usage"] = ref.new_zeros(b, s)
        if self.cfg.temporal_links:
            state["links"] = ref.new_zeros(b, s, s)
            state["precedence"] = ref.new_zeros(b, s)
        return state

    def _address(self, keys: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Softmax over slots of sharpened cosine similarity, averaged over heads: [B, N, S]."""
        b, n, d = keys.shape
        k = keys.view(b, n, self.heads, d // self.heads)
        m = slots.view(b, slots.shape[1], self.heads, d // self.heads)
        sim = torch.einsum("bnhd,bshd->bhns", F.normalize(k, dim=-1), F.normalize(m, dim=-1))
        return torch.softmax(self.cfg.sharpness * sim, dim=-1).mean(dim=1)

    def read(self, state: MemoryState) -> tuple[torch.Tensor, dict]:
        weights = self._address(self.read_key(state["last_written"]), state["slots"])
        if self.cfg.temporal_links:
            forward = torch.einsum("bst,bnt->bns", state["links"], state["read_weights"])
            weights = 0.5 * (weights + forward)
        vectors = self.read_out(torch.einsum("bns,bsd->bnd", weights, state["slots"]))
        # Before anything was written the read tokens carry the initial read embeddings.
        started = state["started"]
        embeddings = started * vectors + (1 - started) * self.initial_read.unsqueeze(0)
        return embeddings, {"read_weights": weights}

    def write(self, state: MemoryState, written: torch.Tensor, read_info: dict) -> tuple[MemoryState, dict]:
        slots = state["slots"]
        weights = self._address(self.write_key(written), slots)
        new: MemoryState = {}
        if self.cfg.usage_tracking:
            usage = state["usage"]
            allocation = torch.softmax(-usage * slots.shape[1], dim=-1).unsqueeze(1)
            gate = torch.sigmoid(self.alloc_gate(written))
            weights = gate * allocation + (1 - gate) * weights
            touched = 1 - torch.prod(1 - weights, dim=1)
            new["usage"] = usage + (1 - usage) * touched
        erase = torch.einsum("bns,bnd->bsd", weights, torch.sigmoid(self.erase(written)))
        add = torch.einsum("bns,bnd->bsd", weights, torch.tanh(self.value(written)))
        new["slots"] = slots * (1 - erase).clamp(min=0) + add
        if self.cfg.temporal_links:
            w = weights.mean(dim=1)
            links = (1 - w.unsqueeze(2) - w.unsqueeze(1)) * state["links"] + w.unsqueeze(2) * state["precedence"].unsqueeze(1)
            eye = torch.eye(links.shape[-1], dtype=links.dtype, device=links.device)
            new["links"] = links * (1 - eye)
            new["precedence"] = (1 - w.sum(-1, keepdim=True)) * state["precedence"] + w
        new["last_written"] = written
        new["read_weights"] = read_info["read_weights"]
        new["started"] = torch.ones_like(state["started"])
        info = {"write_weights": weights, "memory_state": new["slots"]}
        if "usage" in new:
            info["usage"] = new["usage"]
        if "links" in new:
            info["temporal_links"] = new["links"]
        return new, info
