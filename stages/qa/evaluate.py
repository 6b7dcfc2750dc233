"""QA evaluation: score a trained MemXLNet checkpoint on SQuAD v2 data (called by `evaluate task=qa`).

Writes ``gold.json`` (the scored questions, official format), ``predictions.json``,
``na_probs.json`` and ``scores.json`` (the official metric keys) into the run's folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from stages.qa import data as qa_data
from stages.qa import pipeline, squad_eval
from stages.qa.features import FeatureSpec
from stages.qa.predict import predict
from stages.qa.train import FINAL_MODEL_POINTER

SAMPLES_RECORDED = 5


def checkpoint_folder(qa_artifact: Path, choice: str = "") -> Path:
    """The model folder: the qa run's final best model, or ``choice`` (a stage subfolder or a path)."""
    qa_artifact = Path(qa_artifact)
    if choice:
        folder = Path(choice) if Path(choice).is_absolute() else qa_artifact / choice
        if (folder / "best_model").is_dir():
            folder = folder / "best_model"
    else:
        pointer = qa_artifact / FINAL_MODEL_POINTER
        if not pointer.is_file():
            raise FileNotFoundError(f"{qa_artifact}: no {FINAL_MODEL_POINTER}; is it a finished qa artifact?")
        folder = qa_artifact / json.loads(pointer.read_text())["path"]
    if not folder.is_dir():
        raise FileNotFoundError(f"qa checkpoint {folder} does not exist; name a stage_*/ folder of the qa run")
    return folder


def gold_data(cfg, qa_artifact: Path, train_cfg: dict, cache_dir: Path) -> dict:
    """The questions to score: ``cfg.dataset`` (or the qa run's dev split), first ``test_size`` of them."""
    if cfg.dataset:
        squad = qa_data.load_squad(cfg.dataset, "dev", cache_dir, train_cfg["sample_dev_documents"],
                                   train_cfg["data_seed"])
        squad = qa_data.join_paragraphs(squad, train_cfg.get("long_context", 1))
    else:
        squad = json.loads((Path(qa_artifact) / "dev.json").read_text())
    return qa_data.limit_questions(squad, cfg.test_size)


def run_qa_eval(cfg, ctx) -> dict:
    """Predict, score and write the files; returns the official metrics (exact, f1, HasAns_*, NoAns_*...)."""
    qa_artifact = ctx.upstream["qa"].path
    folder = checkpoint_folder(qa_artifact, getattr(cfg, "checkpoint", ""))
    model, tokenizer, train_cfg = pipeline.load_checkpoint_model(folder)
    train = SimpleNamespace(**train_cfg)
    gold = gold_data(cfg, qa_artifact, train_cfg, ctx.cache_dir)
    for reason, count in qa_data.validation_counts(gold).items():  # repaired/dropped answers
        ctx.skip(reason, count=count)
    memory = model.memory_config
    spec = FeatureSpec(train.max_seq_length, train.doc_stride, train.max_query_length, train.max_n_segs,
                       tuple(memory.read_token_ids), tuple(memory.write_token_ids))
    store = pipeline.features(gold, tokenizer, spec, ctx.cache_dir, ctx)
    if len(store) == 0:
        raise ValueError("evaluate: no questions to score; check dataset and test_size")
    threshold = train.no_answer_threshold if cfg.no_answer_threshold is None else cfg.no_answer_threshold
    with torch.inference_mode():
        preds, na_probs = predict(model, store, cfg.batch_size, train.max_n_segs, train.max_answer_length,
                                  threshold, extraction=train.extraction)
    scores = squad_eval.evaluate(gold["data"], preds, na_probs)
    out = Path(ctx.out_dir)
    for name, payload in (("gold.json", gold), ("predictions.json", preds), ("na_probs.json", na_probs),
                          ("scores.json", scores)):
        (out / name).write_text(json.dumps(payload))
    examples = store.examples()[:SAMPLES_RECORDED]
    ctx.record["qa_samples"] = [{"id": e["id"], "gold": [a["text"] for a in e["answers"]], "prediction": preds[e["id"]],
                                 "na_prob": na_probs[e["id"]]} for e in examples]
    ctx.record["no_answer_threshold"] = threshold
    ctx.record["checkpoint"] = str(folder.relative_to(qa_artifact)) if folder.is_relative_to(qa_artifact) else str(folder)
    return dict(scores)
