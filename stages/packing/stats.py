"""Summary statistics over packed batches: how full, how truncated, how linked."""

from __future__ import annotations

import numpy as np


class PackStats:
    """Accumulates per-pack figures from collated batches.

    - fill: non-padding tokens / token_budget
    - truncation rate: spans that do not hold their whole document / all spans
    - adjacent linked fraction: neighbouring spans (i, i+1) whose articles link either way
    - coverage: distinct documents seen / documents allowed
    """

    def __init__(self, num_allowed: int):
        self.num_allowed = num_allowed
        self.docs_per_pack: list[int] = []
        self.fill: list[float] = []
        self.spans = 0
        self.truncated = 0
        self.adjacent_pairs = 0
        self.adjacent_linked = 0
        self.seen: set[int] = set()

    def update(self, batch: dict) -> None:
        doc_index = batch["doc_index"].numpy()
        budget = doc_index.shape[1]
        edges = batch["edges"].numpy()
        adjacent = edges[np.abs(edges[:, 1] - edges[:, 2]) == 1]
        linked = {(int(b), int(min(i, j))) for b, i, j in adjacent}
        for b, spans in enumerate(batch["doc_spans"]):
            self.docs_per_pack.append(len(spans))
            self.fill.append(sum(s[1] for s in spans) / budget)
            self.spans += len(spans)
            self.truncated += sum(1 for s in spans if s[3])
            self.adjacent_pairs += max(0, len(spans) - 1)
            self.adjacent_linked += sum(1 for i in range(len(spans) - 1) if (b, i) in linked)
            self.seen.update(int(s[2]) for s in spans)

    def summary(self) -> dict:
        docs = np.array(self.docs_per_pack or [0])
        return {
            "packs": len(self.docs_per_pack),
            "docs_per_pack_mean": float(docs.mean()),
            "docs_per_pack_min": int(docs.min()),
            "docs_per_pack_max": int(docs.max()),
            "fill_rate": float(np.mean(self.fill)) if self.fill else 0.0,
            "truncation_rate": self.truncated / max(1, self.spans),
            "adjacent_linked_fraction": self.adjacent_linked / max(1, self.adjacent_pairs),
            "coverage": len(self.seen) / max(1, self.num_allowed),
        }
