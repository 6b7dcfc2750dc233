"""From segment logits to answers: any-positive or best-score extraction across a document's segments."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.memxlnet import MemXLNetForQA, TimeStepMajorRunner
from stages.qa.batching import document_batch
from stages.qa.features import FeatureStore

EXTRACTIONS = ("any_positive", "best_score")


def _segment_best_span(seg: dict, max_answer_length: int) -> tuple[int, int, float] | None:
    """(start, end, score) of the best context span of one segment, or None without context."""
    start, end, offsets = seg["start"], seg["end"], seg["offsets"]
    in_context = offsets[:, 0] >= 0
    if not in_context.any():
        return None
    length = np.arange(len(end))[None, :] - np.arange(len(start))[:, None]
    valid = (length >= 0) & (length < max_answer_length) & in_context[:, None] & in_context[None, :]
    scores = np.where(valid, start[:, None] + end[None, :], -np.inf)
    s, e = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(s), int(e), float(scores[s, e])


def best_answer(segments: list[dict], context: str, max_answer_length: int, extraction: str = "any_positive",
                no_answer_threshold: float = 0.0) -> tuple[str, float]:
    """(answer text or "", answer margin) over one document's segments.

    Each segment dict holds numpy ``start``/``end`` logits, ``offsets`` [L, 2] (-1 outside the
    context) and ``cls`` (its CLS position). A span scores start + end logit (context spans of at
    most ``max_answer_length`` tokens); a segment's null score is its CLS start + end logit.

    - ``any_positive``: every segment decides on its own whether it holds an answer (its best span
      beats its own null score by more than ``no_answer_threshold``); the answer is the best span
      of the confident segments, else no answer. Margin = the largest (span - null) of a segment.
    - ``best_score``: the best span of the whole document against the largest null score of any
      segment. Margin = that difference.

    The caller abstains when the margin is not above the threshold; the margin is what a
    threshold sweep orders questions by.
    """
    if extraction not in EXTRACTIONS:
        raise ValueError(f"extraction: {extraction!r} unknown; use one of {EXTRACTIONS}")
    spans = []  # (score, null, text)
    for seg in segments:
        null = float(seg["start"][seg["cls"]] + seg["end"][seg["cls"]])
        best = _segment_best_span(seg, max_answer_length)
        text = "" if best is None else context[seg["offsets"][best[0]][0] : seg["offsets"][best[1]][1]].strip()
        spans.append((-math.inf if best is None else best[2], null, text))
    if not spans:
        return "", -math.inf
    if extraction == "any_positive":
        margin = max(score - null for score, null, _ in spans)
        confident = [(score, text) for score, null, text in spans if score - null > no_answer_threshold and text]
        return (max(confident)[1] if confident else ""), margin
    score, _, text = max(spans, key=lambda x: x[0])
    margin = score - max(null for _, null, _ in spans)
    return (text if margin > no_answer_threshold else ""), margin


def memory_donors(docs: np.ndarray, batch_size: int) -> dict[int, int]:
    """{question: donor question} of `predict(..., swap_memory=True)` over ``docs`` in that order:
    the next question of the same batch, the last one's the first (a batch of one is its own)."""
    donors = {}
    for begin in range(0, len(docs), batch_size):
        batch = [int(d) for d in docs[begin : begin + batch_size]]
        donors.update({d: batch[(i + 1) % len(batch)] for i, d in enumerate(batch)})
    return donors


@torch.no_grad()
def predict(model: MemXLNetForQA, store: FeatureStore, batch_size: int, max_segments: int,
            max_answer_length: int, no_answer_threshold: float, docs: np.ndarray | None = None,
            extraction: str = "any_positive", swap_memory: bool = False) -> tuple[dict[str, str], dict[str, float]]:
    """Predictions and no-answer probabilities (sigmoid of minus the answer margin) per question id.

    Reads the first ``max_segments`` segments of every document, whatever the answer's position.
    ``swap_memory``: the swap ablation; each question's later segments read the memory written by
    the first segment of the question `memory_donors` names (the next one in its batch).
    """
    was_training = model.training
    model.eval()
    runner = TimeStepMajorRunner(model, memory_donor_shift=1 if swap_memory else 0)
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
            text, margin = best_answer(per_doc[d], example["context"], max_answer_length, extraction,
                                       no_answer_threshold)
            na_probs[example["id"]] = 1.0 / (1.0 + math.exp(max(min(margin, 50.0), -50.0)))
            preds[example["id"]] = text
    model.train(was_training)
    return preds, na_probs
