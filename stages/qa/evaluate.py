"""QA evaluation: score a trained MemXLNet checkpoint on SQuAD v2 data (called by `evaluate task=qa`).

Writes ``gold.json`` (the scored questions, official format), ``predictions.json``,
``na_probs.json`` and ``scores.json`` (the official metric keys) into the run's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from stages.core.devices import local_device
from stages.qa import components, squad_eval
from stages.qa import data as qa_data
from stages.qa.config import QAConfig
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
        squad = qa_data.load_squad(cfg.dataset, "dev", cache_dir, train.sample_dev_documents, train.data_seed,
                                     train.sample_neighbour_guilds, neighbours=train.sample_neighbours)
        squad = qa_data.join_paragraphs(squad, train.long_context)
    else:
        squad = json.loads((Path(qa_artifact) / "dev.json").read_text())
    return qa_data.limit_questions(squad, cfg.test_size)


def run_qa_eval(cfg, ctx) -> dict:
    """Predict, score and write the files; returns the official metrics (exact, f1, HasAns_*, NoAns_*...),
    the per-kind scores and, for a memory model, the memory ablation (``memory_gain_*``)."""
    qa_artifact = ctx.upstream["qa"].path
    train: QAConfig = ctx.upstream["qa"].typed_config()
    folder = checkpoint_folder(qa_artifact)
    model, tokenizer, _ = components.load_checkpoint_model(folder, local_device())
    gold = gold_data(cfg, qa_artifact, train, ctx.cache_dir)
    for reason, count in qa_data.validation_counts(gold).items():  # repaired/dropped answers
        ctx.skip(reason, count=count)
    memory = model.memory_config
    spec = components.segment_layout(train, memory.read_token_ids, memory.write_token_ids)
    store = components.features(gold, tokenizer, spec, ctx.cache_dir, ctx)
    if len(store) == 0:
        raise ValueError("evaluate: no questions to score; check dataset and test_size")
    threshold = train.no_answer_threshold if cfg.no_answer_threshold is None else cfg.no_answer_threshold
    def score() -> tuple[dict, dict, dict]:
        return evaluate_model(model, store, gold, train, train.max_n_segs, threshold=threshold,
                              batch_size=cfg.batch_size)

    ablation = {}
    with torch.inference_mode():
        scores, preds, na_probs = score()
        if model.memory is not None:
            # The within-model control of memory: the same model with its memory frozen at the
            # initial value. A model that ignores its memory gains 0 whatever its F1.
            with model.memory_frozen():
                frozen, _, _ = score()
            ablation = squad_eval.memory_gain(scores, frozen)
    out = Path(ctx.out_dir)
    for name, payload in (("gold.json", gold), ("predictions.json", preds), ("na_probs.json", na_probs),
                          ("scores.json", scores)):
        (out / name).write_text(json.dumps(payload))
    examples = store.examples()[:SAMPLES_RECORDED]
    ctx.record["qa_samples"] = [{"id": e["id"], "gold": [a["text"] for a in e["answers"]], "prediction": preds[e["id"]],
                                 "na_prob": na_probs[e["id"]]} for e in examples]
    ctx.record["no_answer_threshold"] = threshold
    ctx.record["checkpoint"] = str(folder.relative_to(qa_artifact)) if folder.is_relative_to(qa_artifact) else str(folder)
    return {**scores, **ablation}
