"""QA evaluation: score a trained MemXLNet checkpoint on SQuAD v2 data (called by `evaluate task=qa`).

Writes ``gold.json`` (the scored questions, official format), ``predictions.json``,
``na_probs.json`` and ``scores.json`` (the official metric keys) into the run's folder; for a
memory model also the predictions of its two ablations (``predictions_memory_frozen.json``,
``predictions_swap.json``). With ``test_documents`` (generated data), the same for a test split
drawn from its own seed stream, under ``test_`` names: the dev split makes every choice, the test
split is scored here once and reported.

The ablations of a memory model:

- frozen: every segment reads the initial memory, nothing is written (``memory_frozen_*``,
  ``memory_gain_*``). It takes the memory out of distribution too, so it can break what needs
  no memory (a register lookup);
- swap: each question's second segment reads the memory that ANOTHER document's first segment
  wrote (the next question of its batch, questions ordered so that a batch holds one question of
  each of several documents): ``swap_*`` scores, and for cross-segment questions whose donor is
  the cross-segment question of another document, the share of answers that stay with the
  question's own guild year (``swap_follows_original``) and, where the donor's subject's guild is
  registered in this document too (and is not this subject's), the share that gives that guild's
  year (``swap_follows_donor``; 25 by chance among four registered years).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from stages.core.devices import local_device
from stages.qa import components, squad_eval
from stages.qa import data as qa_data
from stages.qa.config import QAConfig
from stages.qa.predict import memory_donors, predict
from stages.qa.sample import asked_person, patron_guild_of, register_of
from stages.qa.train import FINAL_MODEL_POINTER, evaluate_model

SAMPLES_RECORDED = 5


def checkpoint_folder(qa_artifact: Path) -> Path:
    """The model folder the qa run names as its final best model."""
    qa_artifact = Path(qa_artifact)
    pointer = qa_artifact / FINAL_MODEL_POINTER
    if not pointer.is_file():
        raise FileNotFoundError(f"{qa_artifact}: no {FINAL_MODEL_POINTER}; is it a finished qa artifact?")
    folder = qa_artifact / json.loads(pointer.read_text())["path"]
    if not folder.is_dir():
        raise FileNotFoundError(f"qa checkpoint {folder} does not exist; rerun the qa stage")
    return folder


def gold_data(cfg, qa_artifact: Path, train: QAConfig, cache_dir: Path) -> dict:
    """The questions to score: ``cfg.dataset`` (or the qa run's dev split), first ``test_size`` of them."""
    if cfg.dataset:
        squad = qa_data.load_squad(cfg.dataset, "dev", cache_dir, train.sample.dev_documents, train.sample)
        squad = qa_data.join_paragraphs(squad, train.data.long_context)
    else:
        squad = json.loads((Path(qa_artifact) / "dev.json").read_text())
    return qa_data.limit_questions(squad, cfg.test_size)


def test_data(cfg, train: QAConfig, cache_dir: Path) -> dict:
    """The generated test split: ``cfg.test_documents`` documents like the qa run's, from the 'test'
    seed stream (never trained on, never used for a choice)."""
    if train.data.dataset != qa_data.SAMPLE or train.data.eval_dataset not in ("", qa_data.SAMPLE):
        raise ValueError(f"test_documents: the test split is generated; the qa run trained on data.dataset="
                         f"{train.data.dataset!r} (use dataset=<file> to score other data)")
    squad = qa_data.load_squad(qa_data.SAMPLE, "test", cache_dir, cfg.test_documents, train.sample)
    return qa_data.join_paragraphs(squad, train.data.long_context)


def swap_order(examples: list[dict]) -> np.ndarray:
    """Questions in the order the swap ablation reads them: the first question of every document,
    then the second of every document, ...: a batch's neighbours come from other documents."""
    seen: dict[str, int] = {}
    keyed = []
    for i, example in enumerate(examples):
        keyed.append((seen.get(example["context"], 0), i))
        seen[example["context"]] = keyed[-1][0] + 1
    return np.array([i for _, i in sorted(keyed)], dtype=np.int64)


def swap_shares(examples: list[dict], gold: dict, preds: dict[str, str], donors: dict[int, int]) -> dict:
    """Where the swapped cross-segment answers go (see the module docstring): counts and percents."""
    kinds = squad_eval.label_map(gold["data"], "kind")
    questions = {q["id"]: q["question"] for a in gold["data"] for p in a["paragraphs"] for q in p["qas"]}
    pairs = registered = original = donor = 0
    for q, d in donors.items():
        own, other = examples[q], examples[d]
        if (kinds.get(own["id"]) != qa_data.KIND_CROSS or kinds.get(other["id"]) != qa_data.KIND_CROSS
                or own["context"] == other["context"]):
            continue
        pairs += 1
        answer = squad_eval.normalize_answer(preds[own["id"]])
        original += answer in {squad_eval.normalize_answer(a["text"]) for a in own["answers"]}
        register = register_of(own["context"])
        guild = patron_guild_of(other["context"], asked_person(questions[other["id"]]) or "")
        if guild in register and guild != patron_guild_of(own["context"], asked_person(questions[own["id"]]) or ""):
            registered += 1
            donor += answer == squad_eval.normalize_answer(register[guild])
    return {"swap_cross_segment_pairs": pairs, "swap_donor_registered": registered,
            "swap_follows_original": 100.0 * original / pairs if pairs else None,
            "swap_follows_donor": 100.0 * donor / registered if registered else None}


def score_split(model, store, gold: dict, train: QAConfig, threshold: float, batch_size: int) -> tuple[dict, dict]:
    """(metrics, files) of one split: the scores, and for a memory model both ablations."""
    scores, preds, na_probs = evaluate_model(model, store, gold, train, train.max_n_segs, threshold=threshold,
                                             batch_size=batch_size)
    files = {"gold.json": gold, "predictions.json": preds, "na_probs.json": na_probs, "scores.json": scores}
    if model.memory is None:
        return scores, files
    # The within-model controls of memory: the same model with its memory frozen at the initial
    # value (a model that ignores its memory gains 0 whatever its F1), and with another document's
    # memory (what the answer follows: this document's first segment, or the donor's).
    with model.memory_frozen():
        frozen, frozen_preds, _ = evaluate_model(model, store, gold, train, train.max_n_segs, threshold=threshold,
                                                 batch_size=batch_size)
    examples = store.examples()
    order = swap_order(examples)
    swap_preds, swap_na = predict(model, store, batch_size, train.max_n_segs, train.max_answer_length, threshold,
                                  docs=order, extraction=train.extraction, swap_memory=True)
    swapped = squad_eval.evaluate(gold["data"], swap_preds, swap_na)
    forms = sorted(k for k in swapped if k.startswith("form_") and k.endswith(("_exact", "_f1")))
    metrics = {**scores, **squad_eval.memory_gain(scores, frozen),
               **{f"swap_{k}": swapped[k] for k in (*squad_eval.ABLATED_SCORES, *forms) if k in swapped},
               **swap_shares(examples, gold, swap_preds, memory_donors(order, batch_size))}
    files.update({"predictions_memory_frozen.json": frozen_preds, "predictions_swap.json": swap_preds})
    return metrics, files


#: The test scores an admitted run also reports as admitted_test_* (what a criterion pools).
ADMITTED = ("cross_segment_f1", "cross_segment_exact", "local_f1", "unanswerable_f1", "f1",
            "form_guild_year_f1", "form_absent_person_guild_year_exact", "memory_gain_cross_segment_f1",
            "swap_cross_segment_f1", "swap_follows_original", "swap_follows_donor")


def reader_admission(qa_manifest: dict, threshold: float) -> dict:
    """The reader's (curriculum phase 1's) dev cross-segment F1 at its best epoch (best dev F1, the
    epoch its model was kept from) and, with a threshold, whether it is admitted (1.0 or 0.0)."""
    record = qa_manifest.get("record") or {}
    phases = record.get("phases") or record.get("stages") or []  # "stages": written before the rename
    epochs = phases[0].get("epochs") or [] if phases else []
    if not epochs or "cross_segment_f1" not in epochs[0]:
        return {}
    best = max(epochs, key=lambda e: e["f1"])  # the first best, as training keeps it
    out = {"reader_dev_cross_segment_f1": best["cross_segment_f1"], "reader_best_epoch": best["epoch"]}
    if threshold > 0:
        out["reader_admitted"] = float(best["cross_segment_f1"] >= threshold)
    return out


def run_qa_eval(cfg, ctx) -> dict:
    """Predict, score and write the files; returns the official metrics (exact, f1, HasAns_*, NoAns_*...),
    the per-kind scores and, for a memory model, the memory ablations (``memory_gain_*``, ``swap_*``);
    with ``test_documents`` the same for the test split (``test_*``); with ``reader_admission_f1``
    the reader's admission (``reader_*``, and ``admitted_test_*`` when admitted)."""
    qa_artifact = ctx.upstream["qa"].path
    train: QAConfig = ctx.upstream["qa"].typed_config()
    folder = checkpoint_folder(qa_artifact)
    model, tokenizer, _ = components.load_checkpoint_model(folder, local_device())
    memory = model.memory_config
    spec = components.segment_layout(train, memory.read_token_ids, memory.write_token_ids)
    threshold = train.no_answer_threshold if cfg.no_answer_threshold is None else cfg.no_answer_threshold
    splits = {"": gold_data(cfg, qa_artifact, train, ctx.cache_dir)}
    if cfg.test_documents:
        splits["test_"] = qa_data.limit_questions(test_data(cfg, train, ctx.cache_dir), cfg.test_size)
    out, metrics = Path(ctx.out_dir), {}
    for prefix, gold in splits.items():
        for reason, count in qa_data.validation_counts(gold).items():  # repaired/dropped answers
            ctx.skip(f"{prefix}{reason}", count=count)
        store = components.features(gold, tokenizer, spec, ctx.cache_dir, ctx)
        if len(store) == 0:
            raise ValueError("evaluate: no questions to score; check dataset and test_size")
        with torch.inference_mode():
            scores, files = score_split(model, store, gold, train, threshold, cfg.batch_size)
        for name, payload in files.items():
            (out / f"{prefix}{name}").write_text(json.dumps(payload))
        metrics.update({f"{prefix}{k}": v for k, v in scores.items()})
        if not prefix:
            examples = store.examples()[:SAMPLES_RECORDED]
            preds, na_probs = files["predictions.json"], files["na_probs.json"]
            ctx.record["qa_samples"] = [{"id": e["id"], "gold": [a["text"] for a in e["answers"]],
                                         "prediction": preds[e["id"]], "na_prob": na_probs[e["id"]]} for e in examples]
    admission = reader_admission(ctx.upstream["qa"].manifest, cfg.reader_admission_f1)
    metrics.update(admission)
    if admission.get("reader_admitted") and cfg.test_documents:
        metrics.update({f"admitted_test_{k}": metrics[f"test_{k}"] for k in ADMITTED if f"test_{k}" in metrics})
    ctx.record["no_answer_threshold"] = threshold
    ctx.record["checkpoint"] = str(folder.relative_to(qa_artifact)) if folder.is_relative_to(qa_artifact) else str(folder)
    return metrics
