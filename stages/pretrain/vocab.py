"""Compact vocabulary: the token ids a corpus actually uses, renumbered densely.

A tiktoken encoding has 50k-200k ids, but a small corpus uses a few thousand. The LM head and
cross-entropy over the full vocabulary then dominate the cost of a small model (measured on the
tiny preset on CPU: ~8x the CPU time per step of a 2k-id head). With `vocab=compact`, pretrain
keeps a table of the used ids (`vocab.npy` in its artifact: dense id -> encoding id) plus one
unknown id at the end, and the model is trained on dense ids. Evaluation maps any corpus through
the same table (ids the training corpus never used become the unknown id).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stages.formats.tokens import TokenStore

VOCAB_TABLE = "vocab.npy"


class CompactVocab:
    """Dense ids 0..len(table)-1 for the used encoding ids, `unk` = len(table) for the rest."""

    def __init__(self, table: np.ndarray, n_vocab: int) -> None:
        self.table = np.asarray(table, dtype=np.int64)
        if len(self.table) == 0 or np.any(np.diff(self.table) <= 0):
            raise ValueError("vocabulary table must be non-empty, sorted and without duplicates")
        self.unk = len(self.table)
        lookup = np.full(max(n_vocab, int(self.table[-1]) + 1), self.unk, dtype=np.int64)
        lookup[self.table] = np.arange(len(self.table))
        self.lookup = torch.from_numpy(lookup)

    @property
    def size(self) -> int:
        """Model vocabulary size (used ids + the unknown id)."""
        return len(self.table) + 1

    @classmethod
    def from_store(cls, store: TokenStore, chunk: int = 1 << 24) -> CompactVocab:
        """Every id that occurs in the store, plus its end-of-text id (O(n_vocab) memory)."""
        seen = np.zeros(store.n_vocab, dtype=bool)
        seen[store.eot_token] = True
        for shard in store.shard_arrays():
            for start in range(0, len(shard), chunk):
                seen[np.asarray(shard[start:start + chunk], dtype=np.int64)] = True
        return cls(np.flatnonzero(seen), store.n_vocab)

    @classmethod
    def load(cls, artifact_dir: Path, n_vocab: int) -> CompactVocab | None:
        """The table saved in a pretrain artifact, or None if it trained on the full encoding."""
        path = Path(artifact_dir) / VOCAB_TABLE
        return cls(np.load(path, allow_pickle=False), n_vocab) if path.is_file() else None

    def save(self, artifact_dir: Path) -> None:
        np.save(Path(artifact_dir) / VOCAB_TABLE, self.table, allow_pickle=False)

    def encode(self, ids) -> np.ndarray:
        """Encoding ids -> dense ids (numpy)."""
        ids = np.asarray(ids, dtype=np.int64)
        return self.lookup.numpy()[np.minimum(ids, len(self.lookup) - 1)]

    def decode(self, dense) -> list[int]:
        """Dense ids -> encoding ids; the unknown id is dropped."""
        return [int(self.table[t]) for t in dense if 0 <= int(t) < self.unk]

    def encode_batch(self, batch: dict) -> dict:
        """A loader batch with tokens and labels in dense ids (labels' -100 kept)."""
        out = dict(batch)
        out["tokens"] = self.lookup[batch["tokens"]]
        labels = batch["labels"]
        out["labels"] = torch.where(labels >= 0, self.lookup[labels.clamp_min(0)], labels)
        return out
