"""Which device this process computes on, from what the process can see (never from the launcher).

A task may see all of its node's GPUs (then its local rank picks one) or only the one Slurm bound
to it (then that one, index 0): the index is the local rank modulo the visible count, as Accelerate
computes it, so a stage outside Accelerate lands where a stage inside it would.
"""

from __future__ import annotations

import os

import torch


def ranks_share_a_gpu() -> bool:
    """More ranks on this node than GPUs it can see (`LOCAL_WORLD_SIZE`, as torchrun sets it)."""
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return torch.cuda.is_available() and local_ranks > torch.cuda.device_count()


def device_index(local_rank: int, visible_devices: int) -> int:
    """The CUDA index of local rank `local_rank` among `visible_devices` visible GPUs."""
    if visible_devices < 1:
        raise ValueError("device_index: no visible GPU; this process should run on the CPU")
    return local_rank % visible_devices


def mixed_precision(precision: str) -> str:
    """Accelerate's `mixed_precision` for a stage's `precision` knob (auto: bf16 on CUDA); on CUDA,
    fp32 matmuls outside autocast use TF32 unless fp32 was asked for."""
    cuda = torch.cuda.is_available()
    if cuda and precision != "fp32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return "bf16" if precision == "bf16" or (precision == "auto" and cuda) else "no"


def rng_state() -> dict:
    """Every generator a training step draws from: torch CPU, CUDA (dropout on GPU), numpy, python."""
    import random

    import numpy as np

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved (a CUDA state saved on a GPU run needs a GPU run to resume)."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state:
        if not torch.cuda.is_available():
            raise RuntimeError("this checkpoint holds CUDA generator state: resume it on a GPU node")
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def local_device() -> torch.device:
    """This process's device: ``ACCELERATE_TORCH_DEVICE`` if set (Accelerate's override), else this
    local rank's visible GPU, else the CPU."""
    override = os.environ.get("ACCELERATE_TORCH_DEVICE")
    if override:
        return torch.device(override)
    if torch.cuda.is_available():
        return torch.device("cuda", device_index(int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()))
    return torch.device("cpu")
