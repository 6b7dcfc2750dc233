"""Two tiny real stages used only by the tests of the stage machinery.

`toy_numbers` writes sharded files of integers (with per-shard completion markers, and an
optional hard kill mid-write); `toy_sum` reads them and sums. Registered through
WIKIGRAPH_EXTRA_STAGES=tests.toy_stages, the same hook a site uses for its own stages.
"""

import dataclasses
import os
import signal
import time

from stages.core.config import knob
from stages.core.preemption import Preempted
from stages.core.registry import StageSpec


@dataclasses.dataclass
class ToyNumbersConfig:
    shards: int = knob(4, "number of shards")
    per_shard: int = knob(1000, "integers per shard")
    scale: int = knob(1, "multiplier applied to every integer")
    kill_in_shard: int = knob(-1, "SIGKILL this process halfway through writing this shard", signature=False)
    workers: int = knob(1, "unused worker count (tests that it stays out of the signature)", signature=False)
    slow_s: float = knob(0.0, "sleep this long per shard (keeps a run busy for the lock tests)", signature=False)
    preempt_at_shard: int = knob(-1, "stop before this shard as a training loop does at its time limit",
                                 signature=False)


@dataclasses.dataclass
class ToySumConfig:
    offset: int = knob(0, "added to the total")


def run_numbers(cfg: ToyNumbersConfig, ctx) -> dict:
    computed = 0
    for shard in range(cfg.shards):
        key = f"shard-{shard:03d}"
        if ctx.shard_done(key):
            continue
        if shard == cfg.preempt_at_shard:
            raise Preempted(step=shard)
        path = ctx.out_dir / f"{key}.txt"
        time.sleep(cfg.slow_s)
        with open(path, "w") as handle:
            for i in range(cfg.per_shard):
                handle.write(f"{(shard * cfg.per_shard + i) * cfg.scale}\n")
                if shard == cfg.kill_in_shard and i == cfg.per_shard // 2:
                    handle.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
        ctx.mark_shard_done(key)
        computed += 1
    with open(ctx.out_dir / "launches.log", "a") as handle:
        handle.write(f"computed {computed}\n")
    return {"shards_computed_last_launch": computed, "shards": cfg.shards}


def run_sum(cfg: ToySumConfig, ctx) -> dict:
    total = 0
    for path in sorted(ctx.upstream["toy_numbers"].path.glob("shard-*.txt")):
        total += sum(int(line) for line in path.read_text().split())
    return {"total": total + cfg.offset}


STAGES = [
    StageSpec("toy_numbers", ToyNumbersConfig, run="tests.toy_stages:run_numbers",
              description="test-only: sharded integers"),
    StageSpec("toy_sum", ToySumConfig, run="tests.toy_stages:run_sum", upstream=("toy_numbers",),
              description="test-only: sum of toy_numbers"),
]
