"""Config of the `qa` stage (MemXLNet phase-2 training with a progressive segment curriculum)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stages.core.config import knob


@dataclass
class QAConfig:
    """Defaults train the tiny random-init preset on the generated sample corpus in 1-2 CPU minutes."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {},
        "base": {
            "model": "xlnet-base-cased", "tokenizer": "xlnet-base-cased", "dataset": "rajpurkar/squad_v2",
            "long_context": 1, "max_seq_length": 384, "doc_stride": 128, "max_query_length": 64,
            "max_n_segs": 6, "progressive_segments": [2, 4, 6], "memory_num_tokens": 16,
            "epochs_per_stage": 2, "learning_rate": 3e-5, "batch_size": 8, "warmup_freeze_base_epochs": 1,
        },
    }

    preset: str = knob("tiny", "starting point: 'tiny' (random-init small XLNet, sample data) or 'base'",
                       choices=("tiny", "base"))
    model: str = knob("tiny", "'tiny' = random-init small XLNet; else XLNet weights by HF id or local folder")
    tokenizer: str = knob("auto", "'auto' (the model folder's, else train SentencePiece on the data), "
                                  "a spiece.model path, an HF folder or an HF id")
    tokenizer_vocab_size: int = knob(2000, "vocabulary of the SentencePiece model trained for tokenizer=auto")
    dataset: str = knob("sample", "training data: 'sample', a SQuAD v2 JSON path, or a `datasets` id")
    eval_dataset: str = knob("", "dev data like `dataset`; empty = held-out articles of `dataset`")
    sample_articles: int = knob(40, "articles generated for dataset=sample")
    sample_seed: int = knob(0, "seed of the generated sample corpus")
    long_context: int = knob(0, "join k paragraphs of an article into one context (0 = whole article, 1 = as given)")
    train_size: int = knob(0, "use only the first N training questions (0 = all)")
    eval_size: int = knob(0, "use only the first N dev questions (0 = all)")
    max_seq_length: int = knob(96, "tokens per segment (question, context window, memory and special tokens)")
    doc_stride: int = knob(64, "context tokens between the starts of consecutive windows")
    max_query_length: int = knob(24, "question tokens kept")
    max_n_segs: int = knob(6, "segments kept per document (features and evaluation)")
    max_answer_length: int = knob(30, "longest answer span in tokens at prediction time")
    memory_num_tokens: int = knob(4, "memory tokens N ([MEM_READ_i]/[MEM_WRITE_i]); 0 = plain XLNet")
    memory_update: str = knob("gated", "how write states update memory", choices=("gated", "none"))
    memory_init: str = knob("learned", "initial memory", choices=("learned", "zeros"))
    use_differentiable_memory: bool = knob(False, "slot memory with content addressing instead of token memory")
    memory_slots: int = knob(16, "slots of the differentiable memory")
    num_memory_heads: int = knob(1, "addressing heads of the differentiable memory (1-8)")
    memory_sharpness: float = knob(1.0, "softmax temperature factor of content addressing")
    enable_usage_tracking: bool = knob(False, "differentiable memory: prefer little-used slots when writing")
    enable_temporal_links: bool = knob(False, "differentiable memory: follow write order when reading")
    progressive_segments: list[int] = knob([2, 4], "curriculum: max segments per document in each stage")  # noqa: RUF009
    epochs_per_stage: int = knob(2, "epochs of each curriculum stage")
    batch_size: int = knob(8, "documents per batch per rank (each batch runs time step by time step)")
    learning_rate: float = knob(2e-3, "peak learning rate (AdamW)")
    weight_decay: float = knob(0.01, "AdamW weight decay")
    warmup_ratio: float = knob(0.1, "linear LR warmup, fraction of each stage's steps")
    max_grad_norm: float = knob(1.0, "gradient clipping norm")
    warmup_freeze_base_epochs: int = knob(0, "first epochs train only memory and QA head parameters")
    warmup_disable_global_softmax_epochs: int = knob(1, "first epochs use a per-segment span softmax")
    warmup_disable_any_positive_epochs: int = knob(1, "first epochs target only the first answer occurrence")
    use_global_softmax: bool = knob(True, "span softmax across all segments of a document")
    use_any_positive: bool = knob(True, "count every segment that contains the answer as correct")
    no_answer_threshold: float = knob(0.0, "predict no answer when null score - best span score exceeds this")
    checkpoint_segments: bool = knob(False, "recompute each segment in backward instead of storing activations",
                                     signature=False)
    seed: int = knob(42, "random seed (init, dropout, data order)")
    checkpoint_every: int = knob(50, "optimizer steps between checkpoints", signature=False)
    num_threads: int = knob(0, "torch CPU threads (0 = torch default)", signature=False)

    def validate(self) -> None:
        if not self.progressive_segments:
            raise ValueError("progressive_segments: empty; give at least one stage, e.g. [2,4]")
        if any(s < 1 for s in self.progressive_segments):
            raise ValueError(f"progressive_segments: {self.progressive_segments} has a value < 1; use positive counts")
        if max(self.progressive_segments) > self.max_n_segs:
            raise ValueError(f"progressive_segments: {max(self.progressive_segments)} > max_n_segs={self.max_n_segs}; "
                             "raise max_n_segs or lower the curriculum")
        if self.doc_stride < 1 or self.max_seq_length < 16:
            raise ValueError("doc_stride/max_seq_length: too small; use doc_stride >= 1 and max_seq_length >= 16")
        if self.long_context < 0:
            raise ValueError(f"long_context: {self.long_context} < 0; use 0 (whole article) or k >= 1")
        if self.use_differentiable_memory and self.memory_num_tokens == 0:
            raise ValueError("use_differentiable_memory: needs memory_num_tokens > 0; set memory_num_tokens")
        if not 1 <= self.num_memory_heads <= 8:
            raise ValueError(f"num_memory_heads: {self.num_memory_heads} outside 1..8; pick a value in 1..8")
        if self.batch_size < 1 or self.epochs_per_stage < 1:
            raise ValueError("batch_size/epochs_per_stage: must be >= 1")
