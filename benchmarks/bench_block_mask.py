"""Attention-mask construction time as a share of a training step, CPU, tiny preset.

    PYTHONPATH=. python benchmarks/bench_block_mask.py [--budgets 2048 4096 --repeats 3]

Batches come from the real packing loader (random_walk over a generated community graph, one
pack of `token_budget` tokens). For each mask mode, we time building the batch's mask once:
  * `sdpa`: the dense boolean mask the CPU training path uses;
  * `flex`: the FlexAttention BlockMask the CUDA path uses (create_block_mask, here on CPU);
and one full training step (forward, backward, AdamW) with that mask prebuilt. The share is
build / (build + step): the mask is built once per batch and shared by all layers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from models.graphlm import GraphLMConfig, GraphLMForTraining, build_attention_mask
from stages.formats.generators import write_synthetic
from stages.packing.config import PackingConfig
from stages.packing.loader import PackLoader


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: first calls pay one-off setup
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_step(model, optimizer, batch: dict, mask) -> None:
    model(batch, mask=mask).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="*", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_synthetic(Path(tmp), n_docs=5000, mean_length=300)
        for budget in args.budgets:
            packing = PackingConfig(strategy="random_walk", token_budget=budget, batch_size=1)
            batch = next(iter(PackLoader.from_paths(corpus.graph, corpus.tokens, packing, seed=0)))
            for mode in ("doc", "graph"):
                config = GraphLMConfig.from_preset(args.preset, vocab_size=50257, mask=mode)
                torch.manual_seed(0)
                model = GraphLMForTraining(config)
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
                mask = model.build_mask(batch)
                step_s = best_of(partial(train_step, model, optimizer, batch, mask), args.repeats)
                for impl in ("sdpa", "flex"):
                    build = partial(build_attention_mask, mode, batch["doc_index"], batch["edges"], impl)
                    build_s = best_of(build, args.repeats)
                    rows.append({"token_budget": budget, "mask": mode, "impl": impl,
                                 "docs_in_pack": len(batch["doc_spans"][0]), "edges": int(batch["edges"].shape[0]),
                                 "build_ms": round(build_s * 1e3, 2), "step_ms": round(step_s * 1e3, 1),
                                 "share": round(build_s / (build_s + step_s), 4)})
    for row in rows:
        print(json.dumps({"benchmark": "block_mask", "preset": args.preset, **row}))


if __name__ == "__main__":
    main()
