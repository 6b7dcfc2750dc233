"""Which device this process computes on, from what the process can see (never from the launcher).

A task may see all of its node's GPUs (then its local rank picks one) or only the one Slurm bound
to it (then that one, index 0): the index is the local rank modulo the visible count, as Accelerate
computes it, so a stage outside Accelerate lands where a stage inside it would.
"""

from __future__ import annotations

import os

import torch


def device_index(local_rank: int, visible_devices: int) -> int:
    """The CUDA index of local rank `local_rank` among `visible_devices` visible GPUs."""
    if visible_devices < 1:
        raise ValueError("device_index: no visible GPU; this process should run on the CPU")
    return local_rank % visible_devices


def local_device() -> torch.device:
    """This process's device: ``ACCELERATE_TORCH_DEVICE`` if set (Accelerate's override), else this
    local rank's visible GPU, else the CPU."""
    override = os.environ.get("ACCELERATE_TORCH_DEVICE")
    if override:
        return torch.device(override)
    if torch.cuda.is_available():
        return torch.device("cuda", device_index(int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()))
    return torch.device("cpu")
