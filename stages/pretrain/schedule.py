"""Learning-rate schedule and optimiser parameter groups."""

from __future__ import annotations

import math

import torch
from torch import nn


def warmup_cosine(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """LR for 0-based `step`: linear warmup to `peak`, then cosine down to `peak * min_ratio`."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizer, lr: float) -> None:
    """Set every param group's LR (the schedule is a pure function of the step, so resuming
    only needs the step count)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def adamw(model: nn.Module, lr: float, weight_decay: float, beta2: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norm scales stay undecayed)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2), eps=1e-8)
