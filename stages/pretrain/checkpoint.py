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
import logging
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


#: Sizes of every file of a checkpoint, written last before the rename (truncation shows).
CHECKPOINT_FILES = "checkpoint_files.json"


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be resumed from (naming the file), or None."""
    try:
        json.loads((path / TRAINER_STATE).read_text())
    except (OSError, ValueError) as err:
        return f"{path / TRAINER_STATE} is unreadable ({type(err).__name__})"
    listed = path / CHECKPOINT_FILES
    if not listed.is_file():
        return None  # written before the size list existed
    try:
        sizes = json.loads(listed.read_text())
    except (OSError, ValueError):
        return f"{listed} is unreadable"
    for name, size in sizes.items():
        file = path / name
        actual = file.stat().st_size if file.is_file() else None
        if actual != size:
            return f"{file} has {actual} bytes, the checkpoint recorded {size}"
    return None


def latest_checkpoint(out_dir: Path, log=None) -> Path | None:
    """The newest complete checkpoint that is intact, or None. A damaged newer one (a truncated
    `optimizer.bin`, a torn `trainer_state.json`) is passed over with a warning naming the file,
    and the previous one is used."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
                  and (p / TRAINER_STATE).is_file())
    for candidate in reversed(done):
        problem = checkpoint_problem(candidate)
        if problem is None:
            return candidate
        (log or logging.getLogger("wikigraph.pretrain")).warning(
            "checkpoint %s is damaged: %s; falling back to the previous checkpoint", candidate.name, problem)
    return None


def _seal(tmp: Path) -> None:
    """Record every file's size, then fsync it all, so the rename publishes durable, checkable data."""
    from stages.core.safefs import atomic_write, fsync_tree

    sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*"))
             if p.is_file() and not p.is_symlink() and p.name != CHECKPOINT_FILES}
    atomic_write(tmp / CHECKPOINT_FILES, json.dumps(sizes, sort_keys=True).encode())
    fsync_tree(tmp)


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
        _seal(tmp)
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
