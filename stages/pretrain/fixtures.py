"""Small generated graph + token artifacts and a stage context, for tests and benchmarks.

The token streams come from a sparse random Markov chain, so a model can learn them (loss
falls from ln(vocab) towards the chain's entropy), unlike uniform random tokens.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stages.core.artifacts import Artifact
from stages.core.context import StageContext
from stages.packing.synthetic import write_graph, write_tokens


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
    write_tokens(tokens_path, docs, meta={"name": "markov", "dtype": "uint16", "n_vocab": vocab, "eot_token": eot})
    return graph_path, tokens_path


def artifact(path: Path, stage: str, config: dict | None = None) -> Artifact:
    """An Artifact handle for a directory written without the runner (tests, benchmarks)."""
    return Artifact(path=Path(path), manifest={"stage": stage, "signature": f"fixture-{stage}", "config": config or {}})


def stage_context(out_dir: Path, upstream: dict[str, Artifact], stage: str = "pretrain", rank: int = 0,
                  world_size: int = 1) -> StageContext:
    """A StageContext writing into out_dir (created), as the runner would build it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return StageContext(stage=stage, signature="fixture", root=out_dir.parent, out_dir=out_dir,
                        upstream=dict(upstream), rank=rank, world_size=world_size,
                        log=logging.getLogger(f"wikigraph.{stage}"))
