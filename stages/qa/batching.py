"""Time-step-major batches: step t holds segment t of every document in the batch that has one.

Memory flows from segment t to t+1 of the same document because a document keeps its position
(``doc_index``) in the batch across steps. A document with fewer segments is absent from the later
steps (masked out), never padded with a garbage segment. Each step is trimmed to its longest
segment, since XLNet's relative attention needs no fixed length.
"""

from __future__ import annotations

import numpy as np
import torch

from stages.qa.features import FeatureStore


def answer_centred_starts(store: FeatureStore, docs: np.ndarray, max_segments: int) -> np.ndarray:
    """First segment of each document's training window of ``max_segments`` consecutive segments.

    A document longer than the window is trained on the window whose middle is nearest its answer
    segment (so no question is dropped when the curriculum allows fewer segments than the
    answer needs); a document without an answer segment starts at its first segment. Training
    only: evaluation never looks at where the answer is.
    """
    n = store.docs["n_segments"][docs].astype(np.int64)
    answer = store.docs["answer_segment"][docs].astype(np.int64)
    centred = answer - (max_segments - 1) // 2
    starts = np.clip(centred, 0, np.maximum(n - max_segments, 0))
    return np.where(answer >= 0, starts, 0)


def document_batch(store: FeatureStore, docs: list[int] | np.ndarray, max_segments: int,
                   starts: np.ndarray | None = None) -> dict:
    """``{"n_docs", "docs", "steps": [step dict per time step]}`` for the given document ids.

    Document d contributes its segments ``starts[d] .. starts[d] + max_segments - 1`` (default:
    from its first segment).
    """
    docs = np.asarray(docs, dtype=np.int64)
    offset = np.zeros(len(docs), dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)
    first = store.docs["first_segment"][docs] + offset
    counts = np.minimum(store.docs["n_segments"][docs] - offset, max_segments)
    steps = []
    for t in range(int(counts.max()) if len(docs) else 0):
        active = np.nonzero(counts > t)[0]
        rows = first[active] + t
        seg = {k: np.asarray(v[rows]) for k, v in store.segments.items()}
        width = int(seg["length"].max())
        input_ids = torch.from_numpy(seg["input_ids"][:, :width].astype(np.int64))
        positions = torch.arange(width).unsqueeze(0)
        cls_index = torch.from_numpy(seg["cls_index"].astype(np.int64))
        p_mask = torch.from_numpy(seg["offsets"][:, :width, 0] < 0)
        p_mask[torch.arange(len(rows)), cls_index] = False  # CLS stands for "no answer"
        steps.append({
            "doc_index": torch.from_numpy(active),
            "input_ids": input_ids,
            "attention_mask": (positions < torch.from_numpy(seg["length"]).unsqueeze(1)).to(torch.float32),
            "token_type_ids": torch.from_numpy(seg["token_type_ids"][:, :width].astype(np.int64)),
            "p_mask": p_mask,
            "cls_index": cls_index,
            "start_positions": torch.from_numpy(seg["start_positions"].astype(np.int64)),
            "end_positions": torch.from_numpy(seg["end_positions"].astype(np.int64)),
            "has_answer": torch.from_numpy(seg["has_answer"].copy()),
            "offsets": seg["offsets"][:, :width],
            "segment_rows": rows,
        })
    return {"n_docs": len(docs), "docs": docs, "steps": steps}


class EpochSampler:
    """Shuffled document order per epoch (seeded by epoch), split evenly across ranks.

    Every rank gets the same number of batches (the tail that does not divide is dropped), so all
    ranks step together. ``state_dict`` is (epoch, next batch), enough to resume exactly.
    """

    def __init__(self, docs: np.ndarray, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.docs, self.batch_size, self.seed = np.asarray(docs), batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0

    def batches_per_epoch(self) -> int:
        return len(self.docs) // (self.batch_size * self.world_size)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.docs))
        n = self.batches_per_epoch()
        mine = self.docs[order[: n * self.batch_size * self.world_size]][self.rank :: self.world_size]
        return [mine[i * self.batch_size : (i + 1) * self.batch_size] for i in range(n)]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
