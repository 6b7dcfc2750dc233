"""Generated graph + token artifacts with community structure, for tests and benchmarks.

Writes exactly the `graph` and `pretokenize` artifact formats (minus manifests), so the
packing code can be exercised without running the wiki stages.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

INDEX_DTYPE = np.dtype([("doc_id", np.int64), ("shard", np.int32), ("offset", np.int64), ("length", np.int64)])
GPT2_META = {"name": "gpt2", "dtype": "uint16", "n_vocab": 50257, "eot_token": 50256}


@dataclasses.dataclass(frozen=True)
class SyntheticArtifacts:
    graph: Path
    tokens: Path
    community: np.ndarray  # community of each document


def _csr(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.unique(src * n + dst)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n, minlength=n), out=indptr[1:])
    return indptr, (keys % n).astype(np.int32)


def write_graph(path: Path, titles: list[str], src: np.ndarray, dst: np.ndarray, jsonl: bool = True) -> None:
    """Write a graph artifact from an edge list (deduplicated, self-loops dropped)."""
    path.mkdir(parents=True, exist_ok=True)
    n = len(titles)
    keep = src != dst
    src, dst = src[keep].astype(np.int64), dst[keep].astype(np.int64)
    out_indptr, out_indices = _csr(src, dst, n)
    in_indptr, in_indices = _csr(dst, src, n)
    (path / "titles.json").write_text(json.dumps(titles))
    np.save(path / "out_indptr.npy", out_indptr)
    np.save(path / "out_indices.npy", out_indices)
    np.save(path / "in_indptr.npy", in_indptr)
    np.save(path / "in_indices.npy", in_indices)
    if jsonl:
        with open(path / "graph.jsonl", "w") as handle:
            for node in range(n):
                links = out_indices[out_indptr[node] : out_indptr[node + 1]].tolist()
                handle.write(json.dumps({"id": node, "title": titles[node], "links": links}) + "\n")


def write_tokens(path: Path, docs: dict[int, np.ndarray] | list, meta: dict | None = None, shard_tokens: int = 1 << 24):
    """Write a token artifact: `docs` maps doc_id -> token array (or is a list indexed by id)."""
    path.mkdir(parents=True, exist_ok=True)
    meta = dict(GPT2_META if meta is None else meta)
    dtype = np.dtype(meta["dtype"])
    items = sorted(docs.items()) if isinstance(docs, dict) else list(enumerate(docs))
    rows, shard, offset, chunks = [], 0, 0, []

    def flush():
        data = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
        data.astype(dtype).tofile(path / f"tokens-{shard:05d}.bin")

    for doc_id, toks in items:
        if len(toks) == 0:
            continue
        if offset and offset + len(toks) > shard_tokens:
            flush()
            shard, offset, chunks = shard + 1, 0, []
        rows.append((doc_id, shard, offset, len(toks)))
        chunks.append(np.asarray(toks, dtype=dtype))
        offset += len(toks)
    flush()
    np.save(path / "index.npy", np.array(rows, dtype=INDEX_DTYPE))
    meta.setdefault("sha256", "")
    (path / "tokenizer.json").write_text(json.dumps(meta))


def write_synthetic(
    out_dir,
    n_docs: int = 2000,
    n_communities: int = 40,
    mean_degree: float = 6.0,
    p_within: float = 0.9,
    mean_length: int = 300,
    missing_fraction: float = 0.0,
    seed: int = 0,
    shard_tokens: int = 1 << 24,
    jsonl: bool = True,
) -> SyntheticArtifacts:
    """Write `graph/` and `tokens/` under `out_dir` for a random community-structured corpus.

    Out-degrees are geometric (some documents are dead ends); a link stays in the source's
    community with probability `p_within`. Lengths are log-normal with mean `mean_length`.
    `missing_fraction` of the documents get no tokens (like articles pretokenize skips).
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    community = rng.integers(0, n_communities, size=n_docs)
    members = np.argsort(community, kind="stable")
    sizes = np.bincount(community, minlength=n_communities)
    first = np.cumsum(sizes) - sizes
    degree = rng.geometric(1.0 / (mean_degree + 1.0), size=n_docs) - 1
    src = np.repeat(np.arange(n_docs, dtype=np.int64), degree)
    within = rng.random(len(src)) < p_within
    comm = community[src]
    pick = (rng.random(len(src)) * sizes[comm]).astype(np.int64)
    dst = np.where(within, members[first[comm] + pick], rng.integers(0, n_docs, size=len(src)))
    titles = [f"Doc {i} (c{community[i]})" for i in range(n_docs)]
    write_graph(out_dir / "graph", titles, src, dst, jsonl=jsonl)

    sigma = 1.0
    lengths = rng.lognormal(np.log(mean_length) - sigma**2 / 2, sigma, size=n_docs)
    lengths = np.clip(lengths.astype(np.int64), 1, 40 * mean_length)
    lengths[rng.random(n_docs) < missing_fraction] = 0
    flat = rng.integers(0, GPT2_META["eot_token"], size=int(lengths.sum()), dtype=np.uint16)
    ends = np.cumsum(lengths)
    docs = {i: flat[ends[i] - lengths[i] : ends[i]] for i in range(n_docs)}
    write_tokens(out_dir / "tokens", docs, shard_tokens=shard_tokens)
    return SyntheticArtifacts(graph=out_dir / "graph", tokens=out_dir / "tokens", community=community)
