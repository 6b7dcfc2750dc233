"""Exact resume of the pretrain stage in fresh processes: 1 rank, and 2 ranks (gloo) with DDP / ZeRO-2 / ZeRO-3.

Each run is a subprocess executing this file as a script (see `main`). Preemption is real: the
driver sends SIGUSR2 to its own process after step K; the stage's handler only sets a flag, the
loop checkpoints and raises Preempted. A fresh process then resumes to the end, and its loss
curve and final weights must be bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ["steps=6", "packing.token_budget=64", "packing.batch_size=2", "val_every=3", "val_batches=1", "log_every=1",
         "checkpoint_every=0", "warmup_steps=2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(data: Path, out: Path, overrides: list[str], preempt_at: int = 0, world_size: int = 1) -> list[dict]:
    """Run the driver on `world_size` ranks; returns each rank's result dict."""
    port = _free_port()
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        if world_size > 1:
            env |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        cmd = [sys.executable, __file__, str(data), str(out), str(preempt_at), *overrides]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    for rank, proc in enumerate(procs):
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"rank {rank} failed:\n{output[-4000:]}"
        results.append(json.loads((out / f"result-rank{rank}.json").read_text()))
    return results


def weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    import torch

    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{name} differs after resume"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tests.fixtures import write_markov_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_markov_corpus(root, n_docs=80, vocab=128, mean_length=60)
    return root


@pytest.mark.parametrize("mask", ["graph"])
def test_single_process_resume_is_bit_identical(corpus, tmp_path, mask):
    overrides = [*SMALL, f"model.mask={mask}"]
    [reference] = launch(corpus, tmp_path / "ref", overrides)
    [stopped] = launch(corpus, tmp_path / "run", overrides, preempt_at=3)
    assert stopped == {"preempted": 3}
    [resumed] = launch(corpus, tmp_path / "run", overrides)
    assert resumed["metrics"]["resumed_from_step"] == 3
    assert resumed["loss_curve"] == reference["loss_curve"]  # steps 1-3 restored, 4-6 recomputed
    assert resumed["val_curve"] == reference["val_curve"]
    assert resumed["metrics"]["val_loss"] == reference["metrics"]["val_loss"]
    assert_same_weights(tmp_path / "ref", tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("zero_stage", [2, 0, 3])  # DeepSpeed ZeRO-2, plain DDP, ZeRO-3 (tied weights)
def test_two_rank_run_trains_and_resumes(corpus, tmp_path, zero_stage):
    overrides = [*SMALL, f"zero_stage={zero_stage}", "steps=4", "val_every=2"]
    reference = launch(corpus, tmp_path / "ref", overrides, world_size=2)
    losses = [loss for _, loss in reference[0]["loss_curve"]]
    assert reference[0]["metrics"]["world_size"] == 2 and losses[-1] < losses[0]
    stopped = launch(corpus, tmp_path / "run", overrides, preempt_at=2, world_size=2)
    assert stopped == [{"preempted": 2}, {"preempted": 2}]
    resumed = launch(corpus, tmp_path / "run", overrides, world_size=2)
    assert resumed[0]["metrics"]["resumed_from_step"] == 2
    assert resumed[0]["loss_curve"] == reference[0]["loss_curve"]
    assert_same_weights(tmp_path / "ref", tmp_path / "run")


def main() -> None:
    """Driver: python test_pretrain_resume.py DATA OUT PREEMPT_AT key=value..."""
    data, out, preempt_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    from stages.core.artifacts import Artifact
    from stages.core.config import resolve
    from stages.core.context import StageContext
    from stages.core.preemption import Preempted
    from stages.pretrain import train
    from stages.pretrain.config import PretrainConfig

    cfg = resolve(PretrainConfig, dict(arg.split("=", 1) for arg in sys.argv[4:]))
    rank = int(os.environ.get("RANK", "0"))
    ctx = StageContext.standalone(out, {"graph": Artifact.unmanaged(data / "graph", "graph"),
                                        "pretokenize": Artifact.unmanaged(data / "tokens", "pretokenize")},
                                  "pretrain", rank=rank)
    if preempt_at:
        original = train._Trainer.train_step

        def train_step_then_signal(self, batches):
            result = original(self, batches)
            if self.step + 1 == preempt_at and self.rank == 0:  # only rank 0 is signalled
                os.kill(os.getpid(), signal.SIGUSR2)
            return result

        train._Trainer.train_step = train_step_then_signal
    try:
        metrics = train.run(cfg, ctx)
        result = {"metrics": metrics, "loss_curve": ctx.record.get("loss_curve"),
                  "val_curve": ctx.record.get("val_curve")}
    except Preempted as stop:
        result = {"preempted": stop.step}
    (out / f"result-rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
