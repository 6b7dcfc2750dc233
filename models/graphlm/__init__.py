"""GraphLM: a RoPE/RMSNorm/SwiGLU decoder with document- and graph-aware attention masks.

Three tiers: `Backbone` (layer stack), `GraphLMForTraining` (batch in, loss out) and
`GraphLMInference` (plain object: logits, perplexity, graph-aware generation).

The torch modules are imported on first use: the pretrain stage's config nests `GraphLMConfig`,
and `python jobs/submit.py --help` or a dry run must not pay for importing torch.
"""

from __future__ import annotations

import importlib

from .config import MASK_MODES, MODEL_PRESETS, GraphLMConfig

_LAZY = {
    "GraphLMInference": "inference", "doc_index_from_spans": "inference", "pack_with_context": "inference",
    "Backbone": "layers",
    "chunked_cross_entropy": "loss", "token_losses": "loss",
    "AttentionMask": "masks", "build_attention_mask": "masks", "causal_mask_mod": "masks", "dense_mask": "masks",
    "doc_adjacency": "masks", "document_mask_mod": "masks", "graph_mask_mod": "masks", "make_mask_mod": "masks",
    "GraphLMForTraining": "training", "LMOutput": "training",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MASK_MODES", "MODEL_PRESETS", "AttentionMask", "Backbone", "GraphLMConfig", "GraphLMForTraining",
    "GraphLMInference", "LMOutput", "build_attention_mask", "causal_mask_mod", "chunked_cross_entropy", "dense_mask",
    "doc_adjacency", "doc_index_from_spans", "document_mask_mod", "graph_mask_mod", "make_mask_mod",
    "pack_with_context", "token_losses",
]
