"""GraphLM: a RoPE/RMSNorm/SwiGLU decoder with document- and graph-aware attention masks.

Three tiers: `Backbone` (layer stack), `GraphLMForTraining` (batch in, loss out) and
`GraphLMInference` (plain object: logits, perplexity, graph-aware generation).
"""

from .config import MASK_MODES, MODEL_PRESETS, GraphLMConfig
from .inference import GraphLMInference, doc_index_from_spans, pack_with_context
from .layers import Backbone
from .loss import chunked_cross_entropy, token_losses
from .masks import (
    AttentionMask,
    build_attention_mask,
    causal_mask_mod,
    dense_mask,
    doc_adjacency,
    document_mask_mod,
    graph_mask_mod,
    make_mask_mod,
)
from .training import GraphLMForTraining, LMOutput

__all__ = [
    "MASK_MODES",
    "MODEL_PRESETS",
    "AttentionMask",
    "Backbone",
    "GraphLMConfig",
    "GraphLMForTraining",
    "GraphLMInference",
    "LMOutput",
    "build_attention_mask",
    "causal_mask_mod",
    "chunked_cross_entropy",
    "dense_mask",
    "doc_adjacency",
    "doc_index_from_spans",
    "document_mask_mod",
    "graph_mask_mod",
    "make_mask_mod",
    "pack_with_context",
    "token_losses",
]
