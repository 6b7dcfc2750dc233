"""Packed tokens/s per core for each strategy, next to a memcpy baseline of the same bytes.

    PYTHONPATH=. python benchmarks/bench_packing.py                       # generated 100k-doc corpus
    PYTHONPATH=. python benchmarks/bench_packing.py --graph G --tokens T  # real artifacts

The loader runs in-process (num_workers=0, one core). "packed tokens" counts every slot of
the [B, token_budget] batches (fill is reported separately). The baseline copies the same
number of int64 token bytes per batch with one contiguous memcpy: the physical limit of
producing the `tokens` tensor, before labels/positions/doc_index/edges.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from stages.formats.generators import write_synthetic
from stages.packing.config import PackingConfig
from stages.packing.loader import PackLoader
from stages.packing.stats import PackStats

STRATEGIES = ["random", "random_walk", "bfs", "dfs", "composite(random_walk=0.7,random=0.3)"]
VARIANTS = [
    {"order_mode": "prefer_targets_first"},
    {"overflow": "split"},
    {"overflow": "skip"},
    {"layout": "none", "reset_positions": False},
    {"doc_budget": 256},
]


def time_loader(loader: PackLoader, seconds: float) -> dict:
    it = iter(loader)
    for _ in range(3):
        next(it)
    batches, slots = 0, 0
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        batch = next(it)
        batches += 1
        slots += batch["tokens"].numel()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"batches": batches, "tokens_per_s": slots / wall, "tokens_per_cpu_s": slots / cpu}


def memcpy_baseline(tokens_per_batch: int, seconds: float) -> dict:
    """int64 tokens/s (wall and per CPU-s) for one contiguous copy per batch, cycling over a 256 MiB source."""
    source = np.random.default_rng(0).integers(0, 50000, size=(32 << 20), dtype=np.int64)
    dest = np.empty(tokens_per_batch, dtype=np.int64)
    n_chunks = len(source) // tokens_per_batch
    copies, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        k = copies % n_chunks
        np.copyto(dest, source[k * tokens_per_batch : (k + 1) * tokens_per_batch])
        copies += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"tokens_per_s": copies * tokens_per_batch / wall, "tokens_per_cpu_s": copies * tokens_per_batch / cpu}


def quality(loader: PackLoader, batches: int) -> dict:
    stats = PackStats(loader.num_allowed)
    it = iter(loader)
    for _ in range(batches):
        stats.update(next(it))
    return stats.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", type=Path, help="graph artifact (default: generate a corpus)")
    parser.add_argument("--tokens", type=Path, help="pretokenize artifact")
    parser.add_argument("--docs", type=int, default=100_000, help="generated corpus size")
    parser.add_argument("--mean-length", type=int, default=600, help="generated mean document length (tokens)")
    parser.add_argument("--workdir", type=Path, help="where to write/reuse the generated corpus")
    parser.add_argument("--token-budget", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per configuration")
    parser.add_argument("--variants", action="store_true", help="also time overflow/order/layout variants")
    parser.add_argument("--out", type=Path, help="write results as JSON")
    args = parser.parse_args()

    if args.graph is None:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_packing_"))
        if not (workdir / "tokens" / "index.npy").is_file():
            t0 = time.perf_counter()
            write_synthetic(
                workdir,
                n_docs=args.docs,
                n_communities=max(10, args.docs // 500),
                mean_degree=20,
                mean_length=args.mean_length,
                seed=0,
                jsonl=False,
            )
            print(f"generated {args.docs} documents in {time.perf_counter() - t0:.1f}s under {workdir}")
        args.graph, args.tokens = workdir / "graph", workdir / "tokens"

    base = {"token_budget": args.token_budget, "batch_size": args.batch_size}
    runs = [{"strategy": s} for s in STRATEGIES]
    if args.variants:
        runs += [{"strategy": "random_walk", **v} for v in VARIANTS]
    memcpy = memcpy_baseline(args.token_budget * args.batch_size, args.seconds)
    results = {"graph": str(args.graph), "tokens": str(args.tokens), "memcpy": memcpy, "runs": []}
    first = PackLoader.from_paths(args.graph, args.tokens, PackingConfig(**base), seed=0)
    print(
        f"corpus: {first.graph.num_nodes} articles, {first.graph.num_edges} links, "
        f"{first.store.num_tokens} tokens; B={args.batch_size} T={args.token_budget}"
    )
    print(
        f"memcpy baseline (int64, same bytes per batch): {memcpy['tokens_per_s'] / 1e6:.0f} M tokens/s wall, "
        f"{memcpy['tokens_per_cpu_s'] / 1e6:.0f} M tokens/s per CPU-s\n"
    )
    print(
        "| config | M tokens/s (wall) | M tokens/s per CPU-s | vs memcpy (CPU-s) | fill | docs/pack | trunc | adj. linked |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for overrides in runs:
        cfg = PackingConfig(**{**base, **overrides})
        loader = PackLoader(first.graph, first.store, cfg, seed=0)
        speed = time_loader(loader, args.seconds)
        summary = quality(PackLoader(first.graph, first.store, cfg, seed=0), 50)
        row = {
            "config": overrides,
            **speed,
            **summary,
            "vs_memcpy": speed["tokens_per_cpu_s"] / memcpy["tokens_per_cpu_s"],
        }
        results["runs"].append(row)
        label = ", ".join(f"{k}={v}" for k, v in overrides.items())
        print(
            f"| {label} | {speed['tokens_per_s'] / 1e6:.1f} | {speed['tokens_per_cpu_s'] / 1e6:.1f} | "
            f"{row['vs_memcpy']:.3f} | {summary['fill_rate']:.2%} | {summary['docs_per_pack_mean']:.1f} | "
            f"{summary['truncation_rate']:.1%} | {summary['adjacent_linked_fraction']:.1%} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
