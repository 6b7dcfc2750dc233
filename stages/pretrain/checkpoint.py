"""Checkpoints in the run's artifact directory: `checkpoints/step-NNNNNNNN/`.

A checkpoint holds Accelerate's state (model, optimizer, every rank's RNG; DeepSpeed's
partitioned state under ZeRO), each rank's loader state and the trainer state. The loader and
trainer state are JSON (`stages.core.safestate`). Accelerate's and DeepSpeed's own files are
read with torch's `weights_only` unpickler, forced around `load_state` (`weights_only_loads`), which
refuses anything but tensors, plain containers and DeepSpeed's few state types. It is written to
a `.tmp` sibling by all ranks, then renamed by rank 0 after a barrier, so a directory without
the `.tmp` suffix is always complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from stages.core.safestate import load_state, save_state
from stages.pretrain.accel import uses_deepspeed

CHECKPOINTS = "checkpoints"
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
TRAINER_STATE = "trainer_state.json"


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS / f"step-{step:08d}"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
                  and (p / TRAINER_STATE).is_file())
    return done[-1] if done else None


def save_checkpoint(accelerator, out_dir: Path, step: int, loader_state: dict, trainer_state: dict,
                    keep: int) -> Path:
    """Collective: every rank must call it at the same step."""
    final = checkpoint_dir(out_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    save_state(tmp, f"loader_rank{accelerator.process_index}", loader_state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _prune(Path(out_dir) / CHECKPOINTS, keep)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> tuple[dict, dict]:
    """Restore Accelerate's state; returns (this rank's loader state, trainer state)."""
    name = f"loader_rank{accelerator.process_index}"
    if not (path / f"{name}.json").is_file() and not (path / f"{name}.pt").is_file():
        raise FileNotFoundError(
            f"{path / name}.json is missing: the checkpoint was written by fewer ranks; resume with the same world size"
        )
    loader_state = load_state(path, name)
    with weights_only_loads(uses_deepspeed(accelerator)):
        accelerator.load_state(str(path))
    return loader_state, json.loads((path / TRAINER_STATE).read_text())


def _deepspeed_state_types() -> list:
    """The non-tensor types DeepSpeed puts in its ZeRO checkpoints (loss scaler, stage enum,
    parameter fragment addresses): plain data, safe to allow in the weights-only unpickler."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def weights_only_loads(deepspeed: bool = False):
    """Every `torch.load` inside reads through torch's weights-only unpickler, whatever its caller
    asks: DeepSpeed's checkpoint engine passes `weights_only=False`, which would run any code a
    planted file names. Only tensors, plain containers and the listed DeepSpeed types load."""
    import torch

    previous = os.environ.get(_FORCE_WEIGHTS_ONLY)
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    try:
        with torch.serialization.safe_globals(_deepspeed_state_types() if deepspeed else []):
            yield
    finally:
        if previous is None:
            os.environ.pop(_FORCE_WEIGHTS_ONLY, None)
        else:
            os.environ[_FORCE_WEIGHTS_ONLY] = previous


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if not p.name.endswith(".tmp"))
    for old in done[: max(len(done) - max(keep, 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
