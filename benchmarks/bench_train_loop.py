"""Training tokens/s of the pretrain stage's loop vs a bare PyTorch loop, same model and batch, CPU.

    PYTHONPATH=. python benchmarks/bench_train_loop.py [--short 4 --long 24 --repeats 3]

Stage: `stages.pretrain.train.run` end to end (packing loader, Accelerate, LR schedule, grad
clipping, preemption check, progress bar, loss logging), validation and periodic checkpoints off.
Its per-step cost is the marginal wall time (T(long) - T(short)) / (long - short) of two full
runs, so setup, the final validation and the final save cancel out.
Baseline: the same GraphLMForTraining and AdamW param groups, one packed batch from the same
loader reused every step: forward, backward, clip_grad_norm_, step, zero_grad, nothing else.
Runs are interleaved and the fastest of `--repeats` is kept. Both wall-clock and process CPU
time (all threads) are reported: on a shared machine the wall ratio swings with other users'
load, while CPU seconds count only the work this process did, so the CPU ratio is the stable
measure of framework overhead (everything runs in-process, num_workers=0, so no work escapes it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from models.graphlm import GraphLMForTraining
from stages.core.artifacts import Artifact
from stages.core.config import resolve
from stages.core.context import StageContext
from stages.formats.generators import write_synthetic
from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.pretrain.config import PretrainConfig
from stages.pretrain.data import split_documents, train_loader
from stages.pretrain.schedule import adamw
from stages.pretrain.train import run


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def stage_seconds(cfg, upstream, out: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of one full stage run."""
    ctx = StageContext.standalone(out, upstream, "pretrain")
    ctx.log.setLevel("WARNING")
    wall, cpu = clocks()
    run(cfg, ctx)
    return time.perf_counter() - wall, time.process_time() - cpu


def bare_seconds_per_step(cfg, graph: GraphIndex, store: TokenStore, steps: int) -> tuple[float, float]:
    """(wall, cpu) seconds per step of the bare loop."""
    torch.manual_seed(cfg.seed)
    model = GraphLMForTraining.from_config(cfg.model_config(store.n_vocab)).train()
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, cfg.beta2)
    split = split_documents(graph, store, cfg.val_fraction)
    batch = next(iter(train_loader(graph, store, cfg, split, 0, 1)))
    step(model, optimizer, batch, cfg.grad_clip)  # the first step pays one-off allocations
    wall, cpu = clocks()
    for _ in range(steps):
        step(model, optimizer, batch, cfg.grad_clip)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def step(model, optimizer, batch: dict, grad_clip: float) -> None:
    model(batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=4)
    parser.add_argument("--long", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="extra pretrain key=value overrides")
    args = parser.parse_args()
    # The stage reads its losses back once, at the last step, as the bare loop never does.
    overrides = {"val_every": "0", "checkpoint_every": "0", "log_every": str(args.long),
                 **dict(s.split("=", 1) for s in args.set)}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_synthetic(Path(tmp) / "corpus", n_docs=2000, mean_length=300)
        upstream = {"graph": Artifact.unmanaged(corpus.graph, "graph"),
                    "pretokenize": Artifact.unmanaged(corpus.tokens, "pretokenize")}
        graph, store = GraphIndex.open(corpus.graph), TokenStore.open(corpus.tokens)
        short = resolve(PretrainConfig, {**overrides, "steps": str(args.short)})
        long = resolve(PretrainConfig, {**overrides, "steps": str(args.long)})
        tokens_per_step = long.packing.batch_size * long.packing.token_budget * long.grad_accum
        bare, stage = [], []
        for repeat in range(args.repeats):
            bare.append(bare_seconds_per_step(long, graph, store, args.long - args.short))
            short_s = stage_seconds(short, upstream, Path(tmp) / f"short{repeat}")
            long_s = stage_seconds(long, upstream, Path(tmp) / f"long{repeat}")
            stage.append(tuple((b - a) / (args.long - args.short) for a, b in zip(short_s, long_s)))
        store.close()
    best_bare = [min(x[i] for x in bare) for i in (0, 1)]
    best_stage = [min(x[i] for x in stage) for i in (0, 1)]
    result = {
        "benchmark": "train_loop", "device": "cpu", "threads": torch.get_num_threads(),
        "preset": long.preset, "mask": long.model.mask, "tokens_per_step": tokens_per_step,
        "bare_tokens_per_s": round(tokens_per_step / best_bare[0], 1),
        "stage_tokens_per_s": round(tokens_per_step / best_stage[0], 1),
        "ratio_wall": round(best_bare[0] / best_stage[0], 3),
        "ratio_cpu": round(best_bare[1] / best_stage[1], 3),
        "bare_wall_cpu_s_per_step": [[round(w, 4), round(c, 4)] for w, c in bare],
        "stage_wall_cpu_s_per_step": [[round(w, 4), round(c, 4)] for w, c in stage],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
