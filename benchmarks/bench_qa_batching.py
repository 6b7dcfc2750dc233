"""Training throughput: time-step-major batches vs one document at a time, at equal batch size (CPU).

Both variants train the same tiny MemXLNet on the same documents with B documents per optimizer
step and the same loss (global softmax over each document's segments):
- time-step-major: one forward per time step for all B documents (segment t of every document);
- baseline: the B documents' segments are run document by document (batch of 1 per forward),
  the losses summed, then one optimizer step.
The rounds alternate between the variants so machine load affects both alike.

    PYTHONPATH=. python benchmarks/bench_qa_batching.py [--batch-size 8] [--segments 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from models.memxlnet import MemoryConfig, MemXLNetForQA, TimeStepMajorRunner, add_memory_tokens, global_softmax_loss
from stages.qa import data as qa_data
from stages.qa.batching import document_batch
from stages.qa.features import SegmentLayout, cached_features
from stages.qa.tokenizer import resolve_tokenizer


def setup(args, cache: Path):
    squad = qa_data.load_squad("sample", "train", cache, args.articles, 0)
    tok = resolve_tokenizer("auto", lambda: qa_data.contexts(squad), cache, 2000)
    read, write = add_memory_tokens(tok, 4)
    spec = SegmentLayout(args.seq_len, args.seq_len // 2, 24, args.segments, tuple(read), tuple(write))
    store, _ = cached_features(squad, lambda: qa_data.iter_examples(squad), tok, spec, cache)
    torch.manual_seed(0)
    model = MemXLNetForQA.tiny(len(tok), MemoryConfig(4, read_token_ids=read, write_token_ids=write))
    return store, model


def train_time_step_major(model, store, batches, segments) -> float:
    runner, opt = TimeStepMajorRunner(model), torch.optim.AdamW(model.parameters(), 1e-4)
    start = time.perf_counter()
    for docs in batches:
        batch = document_batch(store, docs, segments)
        loss = global_softmax_loss(runner(batch["steps"], batch["n_docs"]), batch["steps"], batch["n_docs"], True)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


def train_one_document_at_a_time(model, store, batches, segments) -> float:
    runner, opt = TimeStepMajorRunner(model), torch.optim.AdamW(model.parameters(), 1e-4)
    start = time.perf_counter()
    for docs in batches:
        for doc in docs:
            batch = document_batch(store, [doc], segments)
            loss = global_softmax_loss(runner(batch["steps"], 1), batch["steps"], 1, True) / len(docs)
            loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--articles", type=int, default=40, help="generated QA documents")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store, model = setup(args, Path(tmp))
        docs = np.arange(len(store))
        rng = np.random.default_rng(0)
        batches = [rng.choice(docs, args.batch_size, replace=False) for _ in range(args.steps)]
        n_docs = args.steps * args.batch_size
        train_time_step_major(model, store, batches[:1], args.segments)  # warm-up
        times = {"time_step_major": [], "one_document_at_a_time": []}
        for _ in range(args.rounds):
            times["time_step_major"].append(train_time_step_major(model, store, batches, args.segments))
            times["one_document_at_a_time"].append(train_one_document_at_a_time(model, store, batches, args.segments))
    segs = np.mean([min(store.docs["n_segments"][d], args.segments) for b in batches for d in b])
    print(f"batch_size={args.batch_size} max_segments={args.segments} seq_len={args.seq_len} "
          f"mean segments/doc={segs:.2f} threads={args.threads}")
    rates = {}
    for name, values in times.items():
        rates[name] = n_docs / float(np.median(values))
        print(f"{name:24s} {rates[name]:7.2f} training examples/s (median of {args.rounds} rounds)")
    print(f"speed-up time-step-major / one-document-at-a-time: "
          f"{rates['time_step_major'] / rates['one_document_at_a_time']:.2f}x")


if __name__ == "__main__":
    main()
