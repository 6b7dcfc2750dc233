"""Training tier: embeddings + Backbone + final norm + chunked cross-entropy (batch in, loss out)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from .config import GraphLMConfig
from .layers import Backbone, RMSNorm
from .loss import chunked_cross_entropy
from .masks import AttentionMask, build_attention_mask

REQUIRED_BATCH_KEYS = ("tokens", "labels", "doc_index")


class LMOutput(NamedTuple):
    """Mean loss over the batch's scored tokens, how many tokens were scored and the share of
    attention blocks the mask computes (0-dim tensors on the model's device: reading them syncs)."""

    loss: Tensor
    n_tokens: Tensor
    attention_density: Tensor


class GraphLMForTraining(nn.Module):
    """A packed batch (dict of tensors, see the packing stage) in, mean next-token loss out.

    `labels[b, t]` is the target for position t (already shifted by the loader; -100 = ignore).
    The attention mask is built once per batch here and shared by every layer.
    """

    def __init__(self, config: GraphLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.backbone = Backbone(config)
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.reset_parameters()
        if config.compile:
            for block in self.backbone.layers:
                block.compile()

    @classmethod
    def from_config(cls, config: GraphLMConfig | dict) -> GraphLMForTraining:
        """Random-init model from a GraphLMConfig or its dict form."""
        if isinstance(config, dict):
            config = GraphLMConfig.from_dict(config)
        return cls(config)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embed.weight, mean=0.0, std=self.config.init_std)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=self.config.init_std)
        self.backbone.reset_parameters(self.config.init_std)
        nn.init.ones_(self.norm.weight)

    @property
    def output_weight(self) -> Tensor:
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    def num_parameters(self, non_embedding: bool = False) -> int:
        total = sum(p.numel() for p in self.parameters())
        return total - self.embed.weight.numel() if non_embedding else total

    def build_mask(self, batch: dict, mode: str | None = None) -> AttentionMask:
        """The batch's attention mask for `mode` (default: the configured one)."""
        doc_ids = batch.get("doc_ids")  # [B, documents per pack]: its width bounds the documents, host-side
        return build_attention_mask(mode or self.config.mask, batch["doc_index"], batch.get("edges"),
                                    self.config.attention_impl, None if doc_ids is None else doc_ids.shape[1])

    def hidden_states(self, tokens: Tensor, mask: AttentionMask, positions: Tensor | None = None) -> Tensor:
        """Final-normed hidden states [B, T, d] for tokens [B, T]; `positions` [B, T] (the
        loader's, restarting per document when reset_positions) or None for 0..T-1."""
        return self.norm(self.backbone(self.embed(tokens), mask, positions))

    def forward(self, batch: dict, mask: AttentionMask | None = None) -> LMOutput:
        missing = [key for key in REQUIRED_BATCH_KEYS if key not in batch]
        if missing:
            raise ValueError(f"batch: missing keys {missing}; expected the packing loader's batch dict")
        tokens, labels = batch["tokens"], batch["labels"]
        if tokens.shape != labels.shape or tokens.shape != batch["doc_index"].shape:
            raise ValueError("batch: tokens, labels and doc_index must all have shape [B, T]")
        positions = batch.get("positions") if self.config.reset_positions else None
        mask = mask if mask is not None else self.build_mask(batch)
        hidden = self.hidden_states(tokens, mask, positions)
        flat_labels = labels.reshape(-1)
        loss = chunked_cross_entropy(hidden.reshape(-1, hidden.shape[-1]), self.output_weight, flat_labels,
                                     self.config.ce_chunk_tokens)
        return LMOutput(loss=loss, n_tokens=(flat_labels != -100).sum(), attention_density=mask.block_density())

    def to_inference_model(self):
        """A detached GraphLMInference sharing this module's weights (eval mode, no grad)."""
        from .inference import GraphLMInference

        return GraphLMInference(self)
