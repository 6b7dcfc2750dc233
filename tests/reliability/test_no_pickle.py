"""Planted pickles in checkpoints are refused, never executed (issue 11, security).

An attacker with write access to the artifact root can predict a run's signature and drop a
file into its `.partial` checkpoint. Each test plants a pickle whose unpickling would create a
marker file, calls the real resume code, and checks that it fails with a clear error and that
the marker does not exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import random

import numpy as np
import pytest
import torch

from stages.core import safestate


class _Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path, marker) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_Payload(marker), path)


def test_pretrain_loader_state_pickle_is_refused(tmp_path):
    from accelerate import Accelerator

    from stages.pretrain import checkpoint as ckpt

    step = ckpt.checkpoint_dir(tmp_path / "pretrain" / ".abc123.partial", 4)
    marker = tmp_path / "pwned"
    _plant(step / "loader_rank0.pt", marker)
    (step / ckpt.TRAINER_STATE).write_text(json.dumps({"step": 4}))
    assert ckpt.latest_checkpoint(step.parents[1]) == step
    with pytest.raises(safestate.UnsafeStateError, match="never loaded"):
        ckpt.load_checkpoint(Accelerator(cpu=True), step)
    assert not marker.exists(), "the planted pickle was executed"


def test_pretrain_accelerate_rng_pickle_is_not_executed(tmp_path):
    """Accelerate's own RNG file is read with torch's weights_only unpickler: a planted
    payload there must not run either."""
    from accelerate import Accelerator

    from stages.pretrain import checkpoint as ckpt

    step = ckpt.checkpoint_dir(tmp_path, 2)
    marker = tmp_path / "pwned"
    _plant(step / "random_states_0.pkl", marker)
    safestate.save_state(step, "loader_rank0", {"version": 1})
    (step / ckpt.TRAINER_STATE).write_text(json.dumps({"step": 2}))
    with contextlib.suppress(Exception):  # refusing is the point; how accelerate reports it is its own
        ckpt.load_checkpoint(Accelerator(cpu=True), step)
    assert not marker.exists(), "the planted pickle was executed"


@pytest.mark.parametrize("planted", ["state.pt", "rng_rank0.pt"])
def test_qa_checkpoint_pickle_is_refused(tmp_path, planted):
    from stages.qa.train import PhaseTrainer

    trainer = PhaseTrainer.__new__(PhaseTrainer)
    trainer.ckpt = tmp_path / "qa" / ".abc123.partial" / "phase_1_segs_2" / "checkpoint"
    trainer.acc = type("Acc", (), {"process_index": 0})()
    marker = tmp_path / "pwned"
    _plant(trainer.ckpt / planted, marker)
    if planted == "rng_rank0.pt":  # the rest of the checkpoint is genuine
        safestate.save_state(trainer.ckpt, "state", {"step": 1})
    with pytest.raises(safestate.UnsafeStateError, match="never loaded"):
        trainer.load_checkpoint()
    assert not marker.exists(), "the planted pickle was executed"


def test_state_round_trip_is_exact(tmp_path):
    """Everything the trainers store comes back bit for bit (RNG states included)."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "optimizer": opt.state_dict(), "curve": [0.1, float("nan"), float("inf")], "keys": {1: "a"}}
    safestate.save_state(tmp_path, "s", state)
    back = safestate.load_state(tmp_path, "s")
    assert torch.equal(back["torch"], state["torch"])
    assert back["python"] == state["python"]
    assert back["numpy"][0] == state["numpy"][0] and np.array_equal(back["numpy"][1], state["numpy"][1])
    assert back["numpy"][2:] == state["numpy"][2:]
    assert back["keys"] == {1: "a"} and back["curve"][0] == 0.1 and np.isnan(back["curve"][1])
    np.random.set_state(back["numpy"])
    random.setstate(back["python"])
    opt.load_state_dict(back["optimizer"])
    for a, b in zip(opt.state_dict()["state"].values(), state["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_deepspeed_checkpoint_engine_cannot_run_a_planted_pickle(tmp_path):
    """DeepSpeed (ZeRO resumes) calls torch.load(weights_only=False) itself; the pretrain resume
    forces the weights-only unpickler around it, with DeepSpeed's own state types allowed."""
    pytest.importorskip("deepspeed")
    import pickle

    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from stages.pretrain.checkpoint import weights_only_loads

    marker = tmp_path / "pwned"
    planted = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    _plant(planted, marker)
    engine = TorchCheckpointEngine()
    with weights_only_loads(deepspeed=True), pytest.raises(pickle.UnpicklingError):
        engine.load(str(planted))
    assert not marker.exists(), "the planted pickle was executed"

    genuine = tmp_path / "genuine.pt"
    torch.save({"loss_scaler": LossScaler(scale=128), "zero_stage": ZeroStageEnum.gradients,
                "param_slice_mappings": [{"w": fragment_address(numel=4, start=0)}], "flat": torch.ones(3)}, genuine)
    with weights_only_loads(deepspeed=True):
        back = engine.load(str(genuine))
    assert back["zero_stage"] == ZeroStageEnum.gradients and back["loss_scaler"].cur_scale == 128
    assert back["param_slice_mappings"][0]["w"].numel == 4 and torch.equal(back["flat"], torch.ones(3))
