"""GraphLM architecture hyper-parameters and size presets.

`GraphLMConfig` is also the `pretrain.model.*` component of the pretrain stage's config. Models
never import the stage machinery, so each field declares its command-line metadata with
`models.fields.setting`: `help`, `choices`, ranges (`gt`, `ge`), `signature: False` for
a field that does not change the trained weights, and `derived` for a value the stage fills in
(`vocab_size` from the tokenizer, `reset_positions` from the packing layout), which is no key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from models.fields import setting

MASK_MODES = ("causal", "doc", "graph")
ATTENTION_IMPLS = ("auto", "flex", "sdpa")

# Presets fix the shape of the network; vocab_size comes from the tokenizer.
MODEL_PRESETS: dict[str, dict] = {
    "tiny": {"n_layers": 2, "d_model": 128, "n_heads": 4, "d_ff": 384},
    "small": {"n_layers": 6, "d_model": 384, "n_heads": 6, "d_ff": 1024},
    # GPT-2 small shape (124M parameters with the 50257-token GPT-2 vocabulary, tied embeddings).
    "gpt2-small": {"n_layers": 12, "d_model": 768, "n_heads": 12, "d_ff": 2048},
}


@dataclass
class GraphLMConfig:
    """Shape and behaviour of a GraphLM decoder.

    `mask` selects the attention pattern inside a pack (causal / doc / graph); `attention_impl`
    selects the kernel: `flex` (FlexAttention block mask), `sdpa` (dense boolean mask from the same
    mask_mod) or `auto` (flex on CUDA, sdpa elsewhere, because FlexAttention has no CPU backward).
    `compile` compiles each decoder block; the FlexAttention kernel is always compiled on CUDA.
    Not frozen: OmegaConf merges command-line keys into it as a config component.
    """

    vocab_size: int = setting(50257, "output classes (the tokenizer's, or the corpus's compact table)", derived=True)
    n_layers: int = setting(2, "decoder blocks", gt=0)
    d_model: int = setting(128, "hidden width (divisible by n_heads, with an even head width for RoPE)", gt=0)
    n_heads: int = setting(4, "attention heads", gt=0)
    d_ff: int = setting(384, "SwiGLU hidden width", gt=0)
    rope_theta: float = setting(10000.0, "RoPE base", gt=0)
    norm_eps: float = setting(1e-5, "RMSNorm epsilon", gt=0)
    tie_embeddings: bool = setting(True, "share the input embedding and the output projection")
    mask: str = setting("doc", "attention inside a pack", choices=MASK_MODES)
    attention_impl: str = setting("auto", "attention kernel: flex on CUDA / dense-mask SDPA on CPU (auto)",
                                choices=ATTENTION_IMPLS, signature=False)
    #: RoPE positions restart at 0 in every document (the packing layout's `reset_positions`);
    #: inference rebuilds them the same way. Off: positions are absolute in the pack.
    reset_positions: bool = setting(False, "RoPE positions restart in every document (from the packing layout)",
                                  derived=True)
    #: Smeared keys: each head's key at position t blends in the key at t - 1 of the same document
    #: with a learned per-head weight (sigmoid, 0.5 at init). A query can then match "the token
    #: after an earlier occurrence of the current token" in one layer, which is the induction
    #: (in-context copying) pattern a 2-layer model otherwise forms slowly or not at all.
    smear_keys: bool = setting(False, "smeared keys: each attention key blends in the previous token's key "
                             "(learned weight per head, within a document), so a 2-layer model learns "
                             "in-context copying (study=lm turns it on)")
    ce_chunk_tokens: int = setting(1024, "tokens per chunk of the output projection + cross-entropy (memory)", gt=0)
    init_std: float = setting(0.02, "standard deviation of the initial weights", gt=0)
    compile: bool = setting(False, "torch.compile the decoder blocks (FlexAttention is always compiled on CUDA)",
                          signature=False)

    def validate(self) -> None:
        """The rules that span fields (each field's own range is declared on it)."""
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model: {self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"d_model/n_heads = {self.head_dim} must be even for rotary embeddings; "
                             "change d_model or n_heads")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> GraphLMConfig:
        """Build a config from a named size preset plus explicit overrides."""
        if preset not in MODEL_PRESETS:
            raise ValueError(f"preset: {preset!r} is unknown; choose one of {sorted(MODEL_PRESETS)}")
        config = cls(**{**MODEL_PRESETS[preset], **overrides})
        config.validate()
        return config

    @classmethod
    def from_dict(cls, data: dict) -> GraphLMConfig:
        """Inverse of `to_dict`; ignores keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> GraphLMConfig:
        return replace(self, **changes)
