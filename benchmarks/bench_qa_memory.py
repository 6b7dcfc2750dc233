"""Peak training memory as max_n_segs grows 2..6, with and without segment checkpointing (CPU).

What is kept for backprop through time:
- default: every segment's activation graph lives until the document loss (global softmax over all
  segments, and gradients flowing back through the memory into earlier segments), so activation
  memory grows linearly with the number of segments;
- ``checkpoint_segments=True``: only each segment's inputs, logits and memory state [B, N, D] are
  kept; a segment's activations are recomputed during backward (same gradients), so the peak is
  about one segment's activations plus small per-segment boundary tensors.
Each measurement runs in a fresh subprocess: peak RSS during one forward+backward minus RSS before.

    PYTHONPATH=. python benchmarks/bench_qa_memory.py [--batch-size 4] [--seq-len 256]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(segments: int, checkpointing: bool, batch: int, seq_len: int) -> dict:
    """One forward+backward over ``segments`` segments of ``batch`` documents; MiB above baseline."""
    import torch

    from models.memxlnet import MemoryConfig, MemXLNetForQA, TimeStepMajorRunner, global_softmax_loss

    torch.manual_seed(0)
    torch.set_num_threads(1)
    n_mem, vocab = 4, 1000
    read, write = list(range(vocab - 8, vocab - 4)), list(range(vocab - 4, vocab))
    model = MemXLNetForQA.tiny(vocab, MemoryConfig(n_mem, read_token_ids=read, write_token_ids=write),
                               d_model=128, n_layer=4, n_head=4, d_inner=512)
    steps = []
    for _ in range(segments):
        ids = torch.randint(10, vocab - 10, (batch, seq_len))
        ids[:, :n_mem] = torch.tensor(read)
        ids[:, -n_mem - 1 : -1] = torch.tensor(write)
        steps.append({"doc_index": torch.arange(batch), "input_ids": ids, "attention_mask": torch.ones(batch, seq_len),
                      "token_type_ids": torch.zeros(batch, seq_len, dtype=torch.long),
                      "p_mask": torch.zeros(batch, seq_len, dtype=torch.bool), "cls_index": torch.full((batch,), seq_len - 1),
                      "start_positions": torch.full((batch,), 7), "end_positions": torch.full((batch,), 9),
                      "has_answer": torch.ones(batch, dtype=torch.bool)})
    runner = TimeStepMajorRunner(model, checkpoint_segments=checkpointing)
    before = _rss_mib()
    global_softmax_loss(runner(steps, batch), steps, batch, True).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"segments": segments, "checkpoint_segments": checkpointing, "peak_mib_above_baseline": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--child", nargs=2, metavar=("SEGMENTS", "CHECKPOINTING"))
    args = parser.parse_args()
    if args.child:
        result = measure(int(args.child[0]), args.child[1] == "1", args.batch_size, args.seq_len)
        print(json.dumps(result))
        return
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    print(f"batch_size={args.batch_size} seq_len={args.seq_len} model: d_model=128 n_layer=4, 4 memory tokens")
    print(f"{'max_n_segs':>10} {'full BPTT (MiB)':>16} {'checkpointed (MiB)':>19}")
    for segments in range(2, 7):
        row = []
        for checkpointing in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--batch-size", str(args.batch_size), "--seq-len",
                                  str(args.seq_len), "--child", str(segments), checkpointing],
                                 env=env, capture_output=True, text=True, check=True).stdout
            row.append(json.loads(out.strip().splitlines()[-1])["peak_mib_above_baseline"])
        print(f"{segments:>10} {row[0]:>16.0f} {row[1]:>19.0f}")


if __name__ == "__main__":
    main()
