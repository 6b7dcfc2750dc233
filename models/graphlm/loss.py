"""Linear + cross-entropy over token chunks, so the [N, vocab] logits never exist at once.

The forward pass computes, chunk by chunk, the loss and the gradients with respect to the hidden
states and the output weight (softmax - one-hot is known in closed form); backward only scales
them by the incoming gradient. Peak extra memory is one chunk of logits instead of all of them,
for the forward AND the backward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, labels: Tensor, chunk_tokens: int) -> Tensor:
        valid = labels != IGNORE_INDEX
        scale = 1.0 / valid.sum().clamp_min(1).float()  # a device tensor: no host read per batch
        compute_dtype = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(
            hidden.device.type) else hidden.dtype
        w = weight.to(compute_dtype)
        grad_hidden = torch.zeros_like(hidden)
        grad_weight = torch.zeros_like(weight, dtype=torch.float32)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_tokens):
            rows = slice(start, start + chunk_tokens)
            h = hidden[rows].to(compute_dtype)
            keep = valid[rows]
            target = labels[rows].clamp_min(0)
            # One fused pass for log-probabilities, then exp in place: the chunk's [n, vocab]
            # buffer is traversed as few times as possible (this loop dominates small models).
            grad_logits = torch.log_softmax((h @ w.t()).float(), dim=-1)
            picked = grad_logits.gather(1, target[:, None]).squeeze(1)
            total -= (picked * keep).sum()
            # d(loss)/d(logits) = (softmax - onehot) * row_scale, row_scale = keep / n_valid.
            # The row scale is applied to the small [n, d] operands instead of the big buffer.
            grad_logits.exp_()
            grad_logits[torch.arange(grad_logits.shape[0], device=h.device), target] -= 1.0
            grad_logits = grad_logits.to(compute_dtype)
            row_scale = (keep.float() * scale)[:, None]
            grad_hidden[rows] = ((grad_logits @ w).float() * row_scale).to(hidden.dtype)
            grad_weight += (grad_logits.t() @ (h.float() * row_scale).to(compute_dtype)).float()
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total * scale

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output.to(grad_hidden.dtype), grad_weight * grad_output.to(grad_weight.dtype), None, None


def chunked_cross_entropy(hidden: Tensor, weight: Tensor, labels: Tensor, chunk_tokens: int = 1024) -> Tensor:
    """Mean next-token cross-entropy of `hidden @ weight.T` against `labels` (-100 = ignore).

    hidden: [N, d]; weight: [vocab, d]; labels: [N] int64. Returns a float32 scalar; 0 when every
    label is ignored.
    """
    if hidden.dim() != 2 or labels.shape != hidden.shape[:1]:
        raise ValueError(f"hidden [N, d] and labels [N] expected, got {tuple(hidden.shape)} and {tuple(labels.shape)}")
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens: must be positive, got {chunk_tokens}")
    if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):
        # Evaluation: skip the gradient work the fused forward would do.
        n_valid = (labels != IGNORE_INDEX).sum().clamp_min(1)
        return token_losses(hidden, weight, labels, chunk_tokens).sum() / n_valid
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, labels, chunk_tokens)


def token_losses(hidden: Tensor, weight: Tensor, labels: Tensor, chunk_tokens: int = 1024) -> Tensor:
    """Per-token cross-entropy [N] (0 where ignored), chunked, without gradients (evaluation)."""
    out = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    with torch.no_grad():
        for start in range(0, hidden.shape[0], chunk_tokens):
            rows = slice(start, start + chunk_tokens)
            logits = (hidden[rows] @ weight.to(hidden.dtype).t()).float()
            out[rows] = torch.nn.functional.cross_entropy(
                logits, labels[rows], ignore_index=IGNORE_INDEX, reduction="none")
    return out
