"""Zero-copy access to the pretokenize artifact: memory-mapped shards plus a document index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

INDEX_FIELDS = ("doc_id", "shard", "offset", "length")
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


class TokenStore:
    """Token shards `tokens-NNNNN.bin` memory-mapped read-only, indexed by document id.

    `tokens(doc_id)` returns a view into the mapping (no copy). Per-document arrays
    (`lengths`) are dense over ids 0..max_doc_id, with length 0 for ids absent from the index.
    """

    def __init__(self, path: Path, meta: dict, index: np.ndarray, shards: list[np.ndarray]):
        self.path = path
        self.meta = meta
        self.name: str = meta.get("name", "")
        self.eot_token: int = int(meta["eot_token"])
        self.n_vocab: int = int(meta["n_vocab"])
        self.dtype = np.dtype(meta["dtype"])
        self.index = index
        self._shards = shards
        size = int(index["doc_id"][-1]) + 1 if len(index) else 0
        self.lengths = np.zeros(size, dtype=np.int64)
        self.shard_of = np.zeros(size, dtype=np.int32)
        self.offset_of = np.zeros(size, dtype=np.int64)
        ids = index["doc_id"]
        self.lengths[ids] = index["length"]
        self.shard_of[ids] = index["shard"]
        self.offset_of[ids] = index["offset"]

    @classmethod
    def open(cls, path) -> TokenStore:
        """Open a `pretokenize` artifact directory; validates the index against the shards."""
        path = Path(path)
        meta_file, index_file = path / "tokenizer.json", path / "index.npy"
        for file in (meta_file, index_file):
            if not file.is_file():
                raise FileNotFoundError(
                    f"token artifact {path} lacks {file.name}; point to a finished `pretokenize` output"
                )
        meta = json.loads(meta_file.read_text())
        if meta.get("dtype") not in DTYPES:
            raise ValueError(f"{meta_file}: dtype {meta.get('dtype')!r} is not uint16 or uint32; re-run pretokenize")
        index = np.load(index_file)
        missing = [f for f in INDEX_FIELDS if index.dtype.names is None or f not in index.dtype.names]
        if missing:
            raise ValueError(f"{index_file}: missing fields {missing}; re-run pretokenize")
        if len(index) and np.any(np.diff(index["doc_id"]) <= 0):
            raise ValueError(f"{index_file}: doc_id is not strictly increasing; re-run pretokenize")
        shards = []
        n_shards = int(index["shard"].max()) + 1 if len(index) else 0
        for shard in range(n_shards):
            file = path / f"tokens-{shard:05d}.bin"
            if not file.is_file():
                raise FileNotFoundError(
                    f"token artifact {path} lacks {file.name} named by index.npy; re-run pretokenize"
                )
            if file.stat().st_size == 0:
                shards.append(np.zeros(0, dtype=DTYPES[meta["dtype"]]))
                continue
            mapped = np.memmap(file, dtype=DTYPES[meta["dtype"]], mode="r")
            # A plain ndarray view of the mapping slices faster than the memmap subclass.
            shards.append(mapped.view(np.ndarray))
        ends = index["offset"] + index["length"]
        sizes = np.array([len(s) for s in shards], dtype=np.int64)
        if len(index) and np.any(ends > sizes[index["shard"]]):
            raise ValueError(f"{index_file}: a document extends past the end of its shard; re-run pretokenize")
        return cls(path, meta, index, shards)

    def __reduce__(self):
        # Re-map the shards in worker processes instead of pickling their contents.
        return (TokenStore.open, (self.path,))

    @property
    def num_docs(self) -> int:
        return len(self.index)

    @property
    def num_tokens(self) -> int:
        return int(self.index["length"].sum())

    def length(self, doc_id: int) -> int:
        return int(self.lengths[doc_id]) if doc_id < len(self.lengths) else 0

    def tokens(self, doc_id: int) -> np.ndarray:
        """The document's tokens: a read-only view into the shard mapping."""
        if doc_id >= len(self.lengths) or self.lengths[doc_id] == 0:
            raise KeyError(f"document {doc_id} has no tokens in {self.path}")
        start = self.offset_of[doc_id]
        return self._shards[self.shard_of[doc_id]][start : start + self.lengths[doc_id]]

    def shard_arrays(self) -> list[np.ndarray]:
        """The mapped shards themselves, for hot loops that slice with `offset_of`."""
        return self._shards

    def close(self) -> None:
        """Drop this store's references to the mappings; the OS unmaps a shard when its last view is gone."""
        self._shards = []
