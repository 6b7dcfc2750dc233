"""Checkpoints in the run's artifact directory: `checkpoints/step-NNNNNNNN/`.

A checkpoint holds Accelerate's state (model, optimizer, every rank's RNG; DeepSpeed's
partitioned state under ZeRO), each rank's loader state and the trainer state. The loader and
trainer state are JSON (`stages.core.safestate`); Accelerate loads its own files with torch's
`weights_only` unpickler, which refuses anything but tensors and plain containers. It is written to
a `.tmp` sibling by all ranks, then renamed by rank 0 after a barrier, so a directory without
the `.tmp` suffix is always complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from stages.core.safestate import load_state, save_state

CHECKPOINTS = "checkpoints"
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
    accelerator.load_state(str(path))
    return loader_state, json.loads((path / TRAINER_STATE).read_text())


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if not p.name.endswith(".tmp"))
    for old in done[: max(len(done) - max(keep, 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
