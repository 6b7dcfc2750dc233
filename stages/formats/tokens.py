"""The `pretokenize` artifact format: file names, dtypes, the shard writer and the zero-copy reader.

Layout of a token artifact directory:
- `tokens-00000.bin`, ...: raw little-endian token ids (uint16 when the vocabulary fits, else
  uint32), documents back to back;
- `index.npy`: a structured array (`INDEX_DTYPE`: doc_id, shard, offset, length) sorted by doc_id;
- `tokenizer.json`: `{name, dtype, n_vocab, eot_token, sha256, ...}`.

`TokenShardWriter` writes one shard and its index part; `write_index` merges the parts;
`write_tokens` writes a whole artifact from in-memory documents (generators, tests);
`TokenStore` reads it memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from stages.core.artifacts import write_json_atomic

INDEX_FILE = "index.npy"
META_FILE = "tokenizer.json"
INDEX_DTYPE = np.dtype([("doc_id", "<i8"), ("shard", "<i4"), ("offset", "<i8"), ("length", "<i8")])
INDEX_FIELDS = INDEX_DTYPE.names
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


def token_shard_name(index: int) -> str:
    """File name of token shard `index`."""
    return f"tokens-{index:05d}.bin"


def _index_part_name(index: int) -> str:
    return f"index-{index:05d}.npy"


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 when every token id fits, else uint32 (always little-endian)."""
    return np.dtype("<u2") if n_vocab <= 1 << 16 else np.dtype("<u4")


class TokenShardWriter:
    """Writes one token shard (through a temporary name) and its part of the document index.

    `write` appends documents (ids, lengths, their tokens as bytes, back to back); `finish`
    renames the shard into place and saves `index-NNNNN.npy`, which `write_index` merges.
    """

    def __init__(self, shard: int, out_dir: Path):
        self.shard, self.out_dir = shard, Path(out_dir)
        self.path = self.out_dir / token_shard_name(shard)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in finish()
        self._digest = hashlib.sha256()
        self._ids: list[int] = []
        self._lengths: list[np.ndarray] = []

    def write(self, ids: list[int], lengths: np.ndarray, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self._ids.extend(ids)
        self._lengths.append(lengths)

    def finish(self) -> dict:
        """Close the shard; returns {shard, docs, tokens, sha256, file}."""
        self._file.close()
        self._tmp.replace(self.path)
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        index = np.zeros(len(self._ids), dtype=INDEX_DTYPE)
        index["doc_id"] = self._ids
        index["shard"] = self.shard
        index["length"] = lengths
        index["offset"] = np.cumsum(lengths) - lengths
        np.save(self.out_dir / _index_part_name(self.shard), index)
        return {"shard": self.shard, "docs": len(self._ids), "tokens": int(lengths.sum()),
                "sha256": self._digest.hexdigest(), "file": self.path.name}


def write_index(out_dir: Path, n_shards: int) -> np.ndarray:
    """Merge the shards' index parts into `index.npy` (sorted by doc_id) and remove the parts."""
    out_dir = Path(out_dir)
    parts = [out_dir / _index_part_name(s) for s in range(n_shards)]
    index = np.concatenate([np.load(p) for p in parts]) if parts else np.zeros(0, INDEX_DTYPE)
    index = index[np.argsort(index["doc_id"], kind="stable")]
    np.save(out_dir / INDEX_FILE, index)
    for p in parts:
        p.unlink()
    return index


def write_meta(out_dir: Path, meta: dict) -> None:
    """`tokenizer.json`: the encoding's name, dtype, n_vocab, eot_token, sha256 and provenance."""
    write_json_atomic(Path(out_dir) / META_FILE, meta)


def write_tokens(path: Path, docs: dict[int, np.ndarray] | list, meta: dict,
                 shard_tokens: int = 1 << 24) -> None:
    """Write a whole token artifact from memory: `docs` maps doc_id -> token array (or is a
    list indexed by id); empty documents are left out of the index, as pretokenize does.
    `meta` needs name, dtype, n_vocab and eot_token."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"sha256": "", **meta}
    dtype = np.dtype(DTYPES[meta["dtype"]]).newbyteorder("<")
    items = sorted(docs.items()) if isinstance(docs, dict) else list(enumerate(docs))
    writer = TokenShardWriter(0, path)
    offset = 0
    for doc_id, toks in items:
        if len(toks) == 0:
            continue
        if offset and offset + len(toks) > shard_tokens:
            writer.finish()
            writer, offset = TokenShardWriter(writer.shard + 1, path), 0
        writer.write([doc_id], np.array([len(toks)], dtype=np.int64), np.asarray(toks).astype(dtype).tobytes())
        offset += len(toks)
    writer.finish()
    write_index(path, writer.shard + 1)
    write_meta(path, meta)


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
        meta_file, index_file = path / META_FILE, path / INDEX_FILE
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
            file = path / token_shard_name(shard)
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
