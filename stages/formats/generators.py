"""A generator of graph + token artifacts with community structure, for benchmarks and tests.

Writes through the `graph` and `tokens` format writers (artifacts without manifests), so the
packing and training code can be exercised at any size without running the wiki stages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from stages.formats.graph import write_graph
from stages.formats.tokens import write_tokens

GPT2_META = {"name": "gpt2", "dtype": "uint16", "n_vocab": 50257, "eot_token": 50256}


@dataclasses.dataclass(frozen=True)
class SyntheticArtifacts:
    graph: Path
    tokens: Path
    community: np.ndarray  # community of each document


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
    write_tokens(out_dir / "tokens", docs, GPT2_META, shard_tokens=shard_tokens)
    return SyntheticArtifacts(graph=out_dir / "graph", tokens=out_dir / "tokens", community=community)
