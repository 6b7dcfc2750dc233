"""Span losses over the segments of a document batch (outputs of TimeStepMajorRunner)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def segment_local_loss(outputs: list[dict], steps: list[dict]) -> torch.Tensor:
    """Per-segment softmax: each segment targets its own answer span, or its CLS when it has none."""
    total, count = 0.0, 0
    for out, step in zip(outputs, steps):
        for side in ("start", "end"):
            total = total + F.cross_entropy(out[f"{side}_logits"], step[f"{side}_positions"], reduction="sum") / 2
        count += step["input_ids"].shape[0]
    return total / max(count, 1)


def _positive_mask(steps: list[dict], n_docs: int, seq_len: int, side: str, all_occurrences: bool) -> torch.Tensor:
    """Bool [B, T, L]: the positions whose probability mass counts as correct for each document."""
    n_steps = len(steps)
    answer = torch.zeros(n_docs, n_steps, seq_len, dtype=torch.bool)
    cls = torch.zeros(n_docs, n_steps, seq_len, dtype=torch.bool)
    for t, step in enumerate(steps):
        rows = step["doc_index"]
        has = step["has_answer"]
        answer[rows[has], t, step[f"{side}_positions"][has]] = True
        cls[rows, t, step["cls_index"]] = True
    doc_has_answer = answer.flatten(1).any(1)
    if not all_occurrences:
        # Single target: the first segment that holds the answer, else the first segment's CLS.
        segment_has = answer.any(2)
        first = segment_has & (segment_has.long().cumsum(1) == 1)
        answer = answer & first.unsqueeze(-1)
        cls = cls & (torch.arange(n_steps) == 0).view(1, -1, 1)
    return torch.where(doc_has_answer.view(-1, 1, 1), answer, cls)


def global_softmax_loss(outputs: list[dict], steps: list[dict], n_docs: int, all_occurrences: bool) -> torch.Tensor:
    """Softmax across all segments of a document; the loss is -log of the mass on the positives.

    ``all_occurrences`` counts every occurrence of the answer (overlapping windows put it in several
    segments; for unanswerable documents every segment's CLS); otherwise only the first one.
    """
    # Steps are trimmed to their longest segment, so widths differ: pad to the widest.
    seq_len = max(out["start_logits"].shape[1] for out in outputs)
    device = outputs[0]["start_logits"].device
    loss = 0.0
    for side in ("start", "end"):
        columns = []
        for out in outputs:
            step_logits = out[f"{side}_logits"]
            step_logits = F.pad(step_logits, (0, seq_len - step_logits.shape[1]), value=float("-inf"))
            full = torch.full((n_docs, seq_len), float("-inf"), device=device, dtype=step_logits.dtype)
            columns.append(full.index_copy(0, out["doc_index"], step_logits))
        logits = torch.stack(columns, dim=1)  # [B, T, L]; absent segments are -inf
        positives = _positive_mask(steps, n_docs, seq_len, side, all_occurrences).to(device)
        flat = logits.flatten(1)
        doc_loss = torch.logsumexp(flat, 1) - torch.logsumexp(flat.masked_fill(~positives.flatten(1), float("-inf")), 1)
        loss = loss + doc_loss.mean() / 2
    return loss
