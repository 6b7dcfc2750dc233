"""Collate packs into the batch dict consumed by the graph-LM.

Batch (B packs of T = token_budget tokens):
- `tokens` [B,T] int64; padding uses the tokenizer's end-of-text id.
- `labels` [B,T] int64, ALREADY SHIFTED: labels[b,t] is the target for position t, i.e.
  tokens[b,t+1] when t+1 is in the same document span, else -100. No target ever crosses a
  document boundary or the pack end; with `bos_eos` the last target of a whole document is
  its EOS, so the model learns where documents end.
- `doc_index` [B,T] int64: index of the span within its pack, -1 on padding.
- `positions` [B,T] int64: restart at 0 per span when `reset_positions`, else 0..T-1.
- `doc_ids` [B,Dmax] int64: article id of each span, -1 padded.
- `edges` [E,3] int64 rows (b, i, j): in pack b, span i's article links to span j's.
- `doc_spans`: per pack, a list of (start, length, doc_id, truncated); length counts BOS/EOS;
  `truncated` means the span does not hold the whole document.
"""

from __future__ import annotations

import numpy as np
import torch

from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.packing.sampler import Segment


def collate_packs(
    packs: list[list[Segment]], store: TokenStore, graph: GraphIndex, token_budget: int, reset_positions: bool
) -> dict:
    """Materialise packs into a batch dict of tensors (see the module docstring)."""
    batch_size, budget = len(packs), token_budget
    eot = store.eot_token
    tokens = np.full((batch_size, budget), eot, dtype=np.int64)
    doc_index = np.full((batch_size, budget), -1, dtype=np.int64)
    if reset_positions:
        positions = np.zeros((batch_size, budget), dtype=np.int64)
    else:
        positions = np.broadcast_to(np.arange(budget, dtype=np.int64), (batch_size, budget)).copy()
    shards, shard_of, offset_of = store.shard_arrays(), store.shard_of, store.offset_of
    max_docs = max(len(p) for p in packs)
    doc_ids = np.full((batch_size, max_docs), -1, dtype=np.int64)
    doc_spans = []
    for b, pack in enumerate(packs):
        row = tokens[b]
        pos = 0
        spans = []
        for doc, offset, n, bos, eos, truncated in pack:
            start = pos
            if bos:
                row[pos] = eot
                pos += 1
            base = offset_of[doc] + offset
            row[pos : pos + n] = shards[shard_of[doc]][base : base + n]
            pos += n
            if eos:
                row[pos] = eot
                pos += 1
            spans.append((start, pos - start, doc, truncated))
        lengths = np.fromiter((s[1] for s in spans), dtype=np.int64, count=len(spans))
        doc_index[b, :pos] = np.repeat(np.arange(len(spans), dtype=np.int64), lengths)
        if reset_positions:
            starts = np.fromiter((s[0] for s in spans), dtype=np.int64, count=len(spans))
            positions[b, :pos] = np.arange(pos, dtype=np.int64) - np.repeat(starts, lengths)
        doc_ids[b, : len(pack)] = [s[0] for s in pack]
        doc_spans.append(spans)
    labels = np.full((batch_size, budget), -100, dtype=np.int64)
    same_doc = (doc_index[:, 1:] == doc_index[:, :-1]) & (doc_index[:, :-1] >= 0)
    labels[:, :-1] = np.where(same_doc, tokens[:, 1:], -100)
    edges = pack_edges(graph, doc_ids)
    return {
        "tokens": torch.from_numpy(tokens),
        "labels": torch.from_numpy(labels),
        "doc_index": torch.from_numpy(doc_index),
        "positions": torch.from_numpy(positions),
        "doc_ids": torch.from_numpy(doc_ids),
        "edges": torch.from_numpy(edges),
        "doc_spans": doc_spans,
    }


def pack_edges(graph: GraphIndex, doc_ids: np.ndarray) -> np.ndarray:
    """[E,3] rows (b, i, j): in pack b, document i links to document j (`doc_ids` is [B,Dmax], -1 pad)."""
    valid = doc_ids >= 0
    group, slot = np.nonzero(valid)
    src, dst = graph.edges_within(group, doc_ids[valid])
    edges = np.stack([group[src], slot[src], slot[dst]], axis=1).astype(np.int64)
    order = np.lexsort((edges[:, 2], edges[:, 1], edges[:, 0]))
    return edges[order]
