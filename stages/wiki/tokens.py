"""Token shards of a pretokenize artifact: layout, writing helpers and a zero-copy reader.

Layout: `tokens-00000.bin`, ... (raw little-endian uint16 when the vocabulary fits, else
uint32), one per article shard, documents back to back; `index.npy`, a structured array
(`INDEX_DTYPE`) sorted by doc_id; `tokenizer.json` ({name, dtype, n_vocab, eot_token,
sha256, ...}).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

INDEX_DTYPE = np.dtype([("doc_id", "<i8"), ("shard", "<i4"), ("offset", "<i8"), ("length", "<i8")])


def token_shard_name(index: int) -> str:
    return f"tokens-{index:05d}.bin"


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 when every token id fits, else uint32 (always little-endian)."""
    return np.dtype("<u2") if n_vocab <= 1 << 16 else np.dtype("<u4")


class TokenShards:
    """Memory-mapped view of a pretokenize artifact. Nothing is copied: `document(i)`
    returns a view into the mapped shard. Call `close()` (or use `with`) to release it."""

    def __init__(self, path: Path, meta: dict, index: np.ndarray, shards: list[np.memmap]):
        self.path, self.meta, self.index, self._shards = path, meta, index, shards
        self._doc_ids = index["doc_id"]

    @classmethod
    def open(cls, path: str | Path) -> TokenShards:
        path = Path(path)
        meta_path = path / "tokenizer.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{path} is not a pretokenize artifact (no tokenizer.json); run `stage=pretokenize`")
        meta = json.loads(meta_path.read_text())
        dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        index = np.load(path / "index.npy", mmap_mode="r")
        shards = []
        for i in range(int(index["shard"].max()) + 1 if len(index) else 0):
            shard_path = path / token_shard_name(i)
            shards.append(np.memmap(shard_path, dtype=dtype, mode="r") if shard_path.stat().st_size
                          else np.zeros(0, dtype))
        return cls(path, meta, index, shards)

    def __len__(self) -> int:
        return len(self.index)

    def document(self, row: int) -> np.ndarray:
        """Tokens of the row-th indexed document (a read-only view)."""
        if self._shards is None:
            raise ValueError("TokenShards is closed")
        entry = self.index[row]
        start = int(entry["offset"])
        return self._shards[int(entry["shard"])][start:start + int(entry["length"])]

    def tokens_of(self, doc_id: int) -> np.ndarray:
        """Tokens of the document with article id `doc_id`."""
        row = int(np.searchsorted(self._doc_ids, doc_id))
        if row >= len(self._doc_ids) or self._doc_ids[row] != doc_id:
            raise KeyError(f"doc_id {doc_id} not in {self.path}")
        return self.document(row)

    def close(self) -> None:
        """Drop the mappings; they are unmapped once no returned view is alive."""
        self._shards = None
        self.index = self._doc_ids = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
