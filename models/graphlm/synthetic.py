"""Random packed batches in the packing loader's format, for tests and benchmarks."""

from __future__ import annotations

import torch


def random_packed_batch(batch_size: int, seq_len: int, vocab_size: int, max_docs: int = 6,
                        edge_prob: float = 0.4, pad_prob: float = 0.5, seed: int = 0) -> dict:
    """A batch dict with tokens, labels, doc_index, positions, doc_ids, edges and doc_spans.

    Each pack is split into 1..max_docs consecutive documents, optionally followed by padding;
    labels are next tokens inside each document (-100 at document ends and on padding); edges link
    random document pairs of a pack in random directions.
    """
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (batch_size, seq_len), generator=gen)
    labels = torch.full((batch_size, seq_len), -100, dtype=torch.long)
    doc_index = torch.full((batch_size, seq_len), -1, dtype=torch.long)
    positions = torch.zeros((batch_size, seq_len), dtype=torch.long)
    doc_ids = torch.full((batch_size, max_docs), -1, dtype=torch.long)
    edges, spans = [], []
    for b in range(batch_size):
        n_docs = int(torch.randint(1, max_docs + 1, (1,), generator=gen))
        used = seq_len - int(torch.randint(0, seq_len // 4 + 1, (1,), generator=gen)) if (
            torch.rand(1, generator=gen).item() < pad_prob) else seq_len
        n_docs = min(n_docs, used)
        cuts = torch.randperm(used - 1, generator=gen)[: n_docs - 1].add(1).sort().values.tolist()
        bounds = [0, *cuts, used]
        pack_spans = []
        for i in range(n_docs):
            start, end = bounds[i], bounds[i + 1]
            doc_index[b, start:end] = i
            positions[b, start:end] = torch.arange(end - start)
            labels[b, start:end - 1] = tokens[b, start + 1:end]
            doc_id = int(torch.randint(0, 10_000, (1,), generator=gen))
            doc_ids[b, i] = doc_id
            pack_spans.append((start, end - start, doc_id, False))
        spans.append(pack_spans)
        for i in range(n_docs):
            for j in range(n_docs):
                if i != j and torch.rand(1, generator=gen).item() < edge_prob / 2:
                    edges.append((b, i, j))
    return {
        "tokens": tokens, "labels": labels, "doc_index": doc_index, "positions": positions,
        "doc_ids": doc_ids, "edges": torch.tensor(edges, dtype=torch.long).view(-1, 3), "doc_spans": spans,
    }
