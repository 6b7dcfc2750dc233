"""GraphLM architecture hyper-parameters and size presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

MASK_MODES = ("causal", "doc", "graph")
ATTENTION_IMPLS = ("auto", "flex", "sdpa")

# Presets fix the shape of the network; vocab_size comes from the tokenizer.
MODEL_PRESETS: dict[str, dict] = {
    "tiny": {"n_layers": 2, "d_model": 128, "n_heads": 4, "d_ff": 384},
    "small": {"n_layers": 6, "d_model": 384, "n_heads": 6, "d_ff": 1024},
    # GPT-2 small shape (124M parameters with the 50257-token GPT-2 vocabulary, tied embeddings).
    "gpt2-small": {"n_layers": 12, "d_model": 768, "n_heads": 12, "d_ff": 2048},
}


@dataclass(frozen=True)
class GraphLMConfig:
    """Shape and behaviour of a GraphLM decoder.

    `mask` selects the attention pattern inside a pack (causal / doc / graph); `attention_impl`
    selects the kernel: `flex` (FlexAttention block mask), `sdpa` (dense boolean mask from the same
    mask_mod) or `auto` (flex on CUDA, sdpa elsewhere, because FlexAttention has no CPU backward).
    `compile` compiles each decoder block; the FlexAttention kernel is always compiled on CUDA.
    """

    vocab_size: int = 50257
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 384
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    mask: str = "doc"
    attention_impl: str = "auto"
    #: RoPE positions restart at 0 in every document (the packing layout's `reset_positions`);
    #: inference rebuilds them the same way. Off: positions are absolute in the pack.
    reset_positions: bool = False
    #: Smeared keys: each head's key at position t blends in the key at t - 1 of the same document
    #: with a learned per-head weight (sigmoid, 0.5 at init). A query can then match "the token
    #: after an earlier occurrence of the current token" in one layer, which is the induction
    #: (in-context copying) pattern a 2-layer model otherwise forms slowly or not at all.
    smear_keys: bool = False
    ce_chunk_tokens: int = 1024
    init_std: float = 0.02
    compile: bool = False

    def __post_init__(self) -> None:
        if self.mask not in MASK_MODES:
            raise ValueError(f"mask: {self.mask!r} is not one of {MASK_MODES}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl: {self.attention_impl!r} is not one of {ATTENTION_IMPLS}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model: {self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("d_model/n_heads must be even for rotary embeddings; change d_model or n_heads")
        for name in ("vocab_size", "n_layers", "d_model", "n_heads", "d_ff", "ce_chunk_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> GraphLMConfig:
        """Build a config from a named size preset plus explicit overrides."""
        if preset not in MODEL_PRESETS:
            raise ValueError(f"preset: {preset!r} is unknown; choose one of {sorted(MODEL_PRESETS)}")
        return cls(**{**MODEL_PRESETS[preset], **overrides})

    @classmethod
    def from_dict(cls, data: dict) -> GraphLMConfig:
        """Inverse of `to_dict`; ignores keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> GraphLMConfig:
        return replace(self, **changes)
