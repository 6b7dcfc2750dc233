"""From segment logits to answers: best span across a document's segments, or no answer."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.memxlnet import MemXLNetForQA, TimeStepMajorRunner
from stages.qa.batching import document_batch
from stages.qa.features import FeatureStore


def best_answer(segments: list[dict], context: str, max_answer_length: int) -> tuple[str, float, float]:
    """(answer text, best span score, null score) over one document's segments.

    Each segment dict holds numpy ``start``/``end`` logits, ``offsets`` [L, 2] (-1 outside the
    context) and ``cls`` (its CLS position). Span score = start + end logit over context spans of
    at most ``max_answer_length`` tokens; the null score is the smallest CLS score over the
    segments (the segment most sure that there is an answer decides).
    """
    best_text, best_score, null = "", -math.inf, math.inf
    for seg in segments:
        start, end, offsets, cls = seg["start"], seg["end"], seg["offsets"], seg["cls"]
        null = min(null, float(start[cls] + end[cls]))
        in_context = offsets[:, 0] >= 0
        if not in_context.any():
            continue
        length = np.arange(len(end))[None, :] - np.arange(len(start))[:, None]
        valid = (length >= 0) & (length < max_answer_length) & in_context[:, None] & in_context[None, :]
        scores = np.where(valid, start[:, None] + end[None, :], -np.inf)
        s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[s, e] > best_score:
            best_score = float(scores[s, e])
            best_text = context[offsets[s][0] : offsets[e][1]].strip()
    return best_text, best_score, null


@torch.no_grad()
def predict(model: MemXLNetForQA, store: FeatureStore, batch_size: int, max_segments: int,
            max_answer_length: int, no_answer_threshold: float, docs: np.ndarray | None = None
            ) -> tuple[dict[str, str], dict[str, float]]:
    """Predictions and no-answer probabilities (sigmoid of null - best score) per question id."""
    was_training = model.training
    model.eval()
    runner = TimeStepMajorRunner(model)
    examples = store.examples()
    docs = np.arange(len(store)) if docs is None else docs
    preds, na_probs = {}, {}
    for begin in range(0, len(docs), batch_size):
        batch = document_batch(store, docs[begin : begin + batch_size], max_segments)
        outputs = runner(batch["steps"], batch["n_docs"])
        per_doc: list[list[dict]] = [[] for _ in range(batch["n_docs"])]
        for out, step in zip(outputs, batch["steps"]):
            start, end = out["start_logits"].float().cpu().numpy(), out["end_logits"].float().cpu().numpy()
            for row, d in enumerate(step["doc_index"].tolist()):
                per_doc[d].append({"start": start[row], "end": end[row], "offsets": step["offsets"][row],
                                   "cls": int(step["cls_index"][row])})
        for d, doc in enumerate(batch["docs"].tolist()):
            example = examples[doc]
            text, score, null = best_answer(per_doc[d], example["context"], max_answer_length)
            diff = null - score
            na_probs[example["id"]] = 1.0 / (1.0 + math.exp(-max(min(diff, 50.0), -50.0)))
            preds[example["id"]] = "" if diff > no_answer_threshold or not text else text
    model.train(was_training)
    return preds, na_probs
