"""The components a QA run is built from, shared by the `qa` stage and QA evaluation: data
splits, tokenizer, segment layout and features, model, and the checkpoint folder format."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.memxlnet import MemXLNetForQA, add_memory_tokens
from stages.qa import data as qa_data
from stages.qa.features import FeatureStore, SegmentLayout, cached_features
from stages.qa.tokenizer import resolve_tokenizer

TRAINING_CONFIG_NAME = "training_config.json"


def load_splits(cfg, cache_dir: Path) -> tuple[dict, dict]:
    """(train, dev) SQuAD dicts after ``long_context`` joining and size limits."""
    data, sample = cfg.data, cfg.sample
    train = qa_data.load_squad(data.dataset, "train", cache_dir, sample.documents, sample)
    if data.eval_dataset or data.dataset == qa_data.SAMPLE:
        dev = qa_data.load_squad(data.eval_dataset or data.dataset, "dev", cache_dir, sample.dev_documents, sample)
    else:
        train, dev = qa_data.split_articles(train, "train", 0.1), qa_data.split_articles(train, "dev", 0.1)
    train = qa_data.limit_questions(qa_data.join_paragraphs(train, data.long_context), data.train_size)
    dev = qa_data.limit_questions(qa_data.join_paragraphs(dev, data.long_context), data.eval_size)
    return train, dev


def build_tokenizer(cfg, train: dict, cache_dir: Path):
    """The tokenizer with the memory tokens added; returns (tokenizer, read ids, write ids)."""
    spec = cfg.tokenizer
    if spec == "auto" and cfg.model != "tiny" and Path(cfg.model).is_dir():
        spec = cfg.model
    tokenizer = resolve_tokenizer(spec, lambda: qa_data.contexts(train), cache_dir, cfg.tokenizer_vocab_size,
                                  source=f"data.dataset={cfg.data.dataset} (long_context={cfg.data.long_context}, "
                                         f"train_size={cfg.data.train_size})")
    read_ids, write_ids = add_memory_tokens(tokenizer, cfg.memory.num_tokens)
    return tokenizer, read_ids, write_ids


def build_model(cfg, tokenizer, read_ids: list[int], write_ids: list[int]) -> MemXLNetForQA:
    memory = cfg.memory.with_tokens(read_ids, write_ids)
    if cfg.model == "tiny":
        d = cfg.tiny_d_model
        return MemXLNetForQA.tiny(len(tokenizer), memory, d_model=d, n_layer=cfg.tiny_layers, n_head=max(1, d // 16),
                                  d_inner=2 * d, initializer_range=cfg.tiny_init_std)
    model = MemXLNetForQA.from_base(cfg.model, memory)
    model.resize_token_embeddings(len(tokenizer))
    return model


def segment_layout(cfg, read_ids: list[int], write_ids: list[int], phase: int | None = None) -> SegmentLayout:
    """The segment layout of a QA config's curriculum phase ``phase`` (None: the last, which
    evaluation reads, from the training config or the one recorded with the model)."""
    return SegmentLayout(cfg.segment_length(phase), cfg.doc_stride, cfg.max_query_length, cfg.max_n_segs,
                       tuple(read_ids), tuple(write_ids))


def features(squad: dict, tokenizer, spec: SegmentLayout, cache_dir: Path, ctx=None) -> FeatureStore:
    """Cached features under ``{cache}/qa_features/``; counts reuse and drops in the context."""
    progress = (lambda it: ctx.progress(it, desc="qa features")) if ctx is not None else (lambda it: it)
    store, reused = cached_features(squad, lambda: qa_data.iter_examples(squad), tokenizer, spec,
                                    Path(cache_dir) / "qa_features", progress)
    if ctx is not None:
        ctx.log.info("qa features %s: %d questions, %d segments (%s)", store.path.name, len(store),
                     store.meta["n_segments"], "reused" if reused else "built")
    return store


def save_checkpoint_model(model: MemXLNetForQA, tokenizer, cfg_dict: dict, path: Path) -> None:
    """An HF-style folder: weights, XLNet + memory configs, tokenizer, resolved training config."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (Path(path) / TRAINING_CONFIG_NAME).write_text(json.dumps(cfg_dict, indent=2))


def load_checkpoint_model(path: Path, device: torch.device | str = "cpu"):
    """(model on `device`, tokenizer, training config dict) from a folder written by ``save_checkpoint_model``."""
    from transformers import XLNetTokenizer

    path = Path(path)
    model = MemXLNetForQA.from_pretrained(path).to(device)
    tokenizer = XLNetTokenizer.from_pretrained(path)
    cfg_file = path / TRAINING_CONFIG_NAME
    return model, tokenizer, json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
