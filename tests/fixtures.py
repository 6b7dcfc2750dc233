"""Generated inputs that only the tests use: a learnable Markov-chain corpus (graph + token
artifacts) and random packed batches in the packing loader's format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stages.formats.graph import write_graph
from stages.formats.tokens import write_tokens


def write_markov_corpus(out_dir: Path, n_docs: int = 120, vocab: int = 256, mean_length: int = 120,
                        successors: int = 4, mean_degree: float = 3.0, seed: int = 0) -> tuple[Path, Path]:
    """Write `graph/` and `tokens/` artifacts under out_dir; returns (graph_path, tokens_path)."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    eot = vocab - 1
    next_tokens = rng.integers(0, eot, size=(eot, successors))
    docs = []
    for _ in range(n_docs):
        length = max(2, int(rng.exponential(mean_length)))
        seq = np.empty(length, dtype=np.int64)
        seq[0] = rng.integers(0, eot)
        choices = rng.integers(0, successors, size=length)
        for t in range(1, length):
            seq[t] = next_tokens[seq[t - 1], choices[t]]
        docs.append(seq)
    degree = rng.poisson(mean_degree, size=n_docs)
    src = np.repeat(np.arange(n_docs), degree)
    dst = rng.integers(0, n_docs, size=len(src))
    graph_path, tokens_path = out_dir / "graph", out_dir / "tokens"
    write_graph(graph_path, [f"Doc {i}" for i in range(n_docs)], src, dst)
    write_tokens(tokens_path, docs, {"name": "markov", "dtype": "uint16", "n_vocab": vocab, "eot_token": eot})
    return graph_path, tokens_path


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


#: Filler words of the hand-made QA examples (none of them is the answer word).
QA_WORDS = ["alpha", "beta", "gamma", "delta", "river", "lake", "town", "north", "south", "east", "west", "stone"]


def qa_example(qid: str, n_words: int, answer_at: int | None = None):
    """A QA example of `n_words` filler words; with `answer_at`, the word there is the answer "Zorbin"."""
    from stages.qa.data import QAExample

    words = [QA_WORDS[i % len(QA_WORDS)] for i in range(n_words)]
    answers = []
    if answer_at is not None:
        words[answer_at] = "Zorbin"
        start = len(" ".join(words[:answer_at])) + (1 if answer_at else 0)
        answers = [{"text": "Zorbin", "answer_start": start}]
    return QAExample(qid, "t", " ".join(words), "Where is it?", answers)
