"""Two ranks on one device through the real launcher path: `python jobs/submit.py stage=pretrain
executor=local tasks_per_node=2` (with `gpus_per_node=1` on CUDA), as a user runs it.

The upstream artifacts (extract, graph, pretokenize of a generated sample) are built first through
the same command line (`executor=inline`). On one GPU the two ranks cannot use NCCL (it refuses two
ranks on one device), so the stage switches to gloo; the check reports the backend the run used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.gpucheck.runtime import CheckContext

REPO = Path(__file__).resolve().parents[2]
CORPUS = "extract.sample_articles=60"


def _submit(args: list[str], root: Path, ctx: CheckContext) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "jobs" / "submit.py"), *args, f"root={root}", f"results={root / 'results'}"]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=max(ctx.remaining() - 5, 10))


def two_ranks(ctx: CheckContext) -> dict:
    """pretrain with 2 ranks on one device through the local executor; world size and backend checked."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for stage in ("extract", "graph", "pretokenize"):
            proc = _submit([f"stage={stage}", CORPUS, "executor=inline"], root, ctx)
            if proc.returncode:
                return {"status": "fail", "summary": f"stage={stage} exited {proc.returncode}: {proc.stderr[-300:]}"}
        devices = ["gpus_per_node=1"] if ctx.cuda else []
        args = ["stage=pretrain", CORPUS, "steps=4", "packing.token_budget=256", "packing.batch_size=2", "val_every=0",
                "val_batches=1", "log_every=2", "executor=local", "tasks_per_node=2", "cpus_per_task=1", *devices]
        proc = _submit(args, root, ctx)
        ctx.save(command=" ".join(["python jobs/submit.py", *args]), output=(proc.stdout + proc.stderr)[-3000:])
        if proc.returncode:
            return {"status": "fail", "summary": f"the 2-rank pretrain exited {proc.returncode} (see output)"}
        manifests = list((root / "pretrain").glob("*/manifest.json"))
        if len(manifests) != 1:
            return {"status": "fail", "summary": f"{len(manifests)} pretrain artifacts, expected 1"}
        metrics = json.loads(manifests[0].read_text())["metrics"]
    backend = metrics.get("process_group_backend")
    ctx.save(metrics=metrics, seconds=round(time.perf_counter() - started, 1))
    if metrics.get("world_size") != 2:
        return {"status": "fail", "summary": f"world size {metrics.get('world_size')}, expected 2"}
    return {"status": "pass", "summary": f"2 ranks on one {'GPU' if ctx.cuda else 'CPU'} over {backend}, "
                                         f"loss {metrics['first_train_loss']:.3f} -> {metrics['final_train_loss']:.3f}"}
