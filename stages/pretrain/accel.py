"""Accelerate setup from the stage config and the torch launcher variables.

DDP on CPU uses gloo (Accelerate's MULTI_CPU mode), on GPU nccl. DeepSpeed ZeRO on CPU is not
wired up by Accelerate by default (it only starts DeepSpeed's process group when a GPU backend
is found), so the gloo backend is named explicitly there, as it is when several ranks share one
GPU (NCCL refuses two ranks on one device).
"""

from __future__ import annotations

import os

import torch

from stages.core.devices import mixed_precision, ranks_share_a_gpu


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def build_accelerator(cfg, log=None):
    """An Accelerator for DDP (zero_stage=0) or DeepSpeed ZeRO 1/2/3, bf16 autocast on GPU."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    cuda = torch.cuda.is_available()
    world = world_size_from_env()
    kwargs: dict = {"gradient_accumulation_steps": cfg.grad_accum, "mixed_precision": mixed_precision(cfg.precision)}
    if world > 1 and "LOCAL_RANK" not in os.environ:
        raise ValueError("WORLD_SIZE > 1 but LOCAL_RANK is unset; launch with RANK, LOCAL_RANK, WORLD_SIZE, "
                         "MASTER_ADDR and MASTER_PORT set (as torchrun does)")
    if cfg.zero_stage > 0 and world > 1:
        kwargs["deepspeed_plugin"] = deepspeed_plugin(cfg)
    if world > 1 and (ranks_share_a_gpu() or (cfg.zero_stage > 0 and not cuda)):
        if ranks_share_a_gpu() and log is not None:
            log.warning("%s ranks share %d GPU(s): NCCL refuses that, so the ranks talk over gloo",
                        os.environ.get("LOCAL_WORLD_SIZE"), torch.cuda.device_count())
        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
    if not (cfg.zero_stage > 0 and world > 1):
        if cfg.zero_stage > 0 and log is not None:
            log.warning("zero_stage=%d ignored: a single process has nothing to shard", cfg.zero_stage)
        kwargs["cpu"] = not cuda
    return Accelerator(**kwargs)


def deepspeed_plugin(cfg):
    """DeepSpeed ZeRO settings from the stage config. `grad_clip=0` is passed as 0.0 (no
    clipping): None would let Accelerate fill in its own default of 1.0."""
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin(
        zero_stage=cfg.zero_stage,
        gradient_accumulation_steps=cfg.grad_accum,
        gradient_clipping=float(cfg.grad_clip),
        zero3_save_16bit_model=cfg.zero_stage == 3,  # lets rank 0 gather full weights at the end
    )
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.packing.batch_size
    return plugin


def uses_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def release_accelerator() -> None:
    """Forget Accelerate's process-wide singletons so a later run in this process starts clean
    (the torch process group itself is kept: it cannot be re-created cheaply)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
