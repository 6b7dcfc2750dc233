"""Config of the `qa` stage (MemXLNet phase-2 training with a progressive segment curriculum)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from stages.core.config import WHEN_SET, knob
from stages.qa.sample import NEIGHBOUR_GUILDS


@dataclass
class QAConfig:
    """Defaults train the tiny random-init preset on generated long documents (stages/qa/sample.py)
    in a few CPU minutes: 64-token segments, a 1000-piece BPE vocabulary, batches of 16 documents,
    learning rate 2e-3. Each curriculum stage starts with its own warm-up epochs."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {},
        "base": {
            "model": "xlnet-base-cased", "tokenizer": "xlnet-base-cased", "dataset": "rajpurkar/squad_v2",
            "long_context": 1, "max_seq_length": 384, "doc_stride": 128, "max_query_length": 64,
            "max_n_segs": 6, "progressive_segments": [2, 4, 6], "memory_num_tokens": 16,
            "epochs_per_stage": 2, "learning_rate": 3e-5, "batch_size": 8, "warmup_freeze_base_epochs": 1,
            "warmup_disable_global_softmax_epochs": 1, "warmup_disable_any_positive_epochs": 1,
        },
    }

    preset: str = knob("tiny", "starting point: 'tiny' (random-init small XLNet, sample data) or 'base'",
                       choices=("tiny", "base"))
    model: str = knob("tiny", "'tiny' = random-init small XLNet; else XLNet weights by HF id or local folder")
    tiny_d_model: int = knob(64, "model=tiny: hidden size (heads = d_model / 16, feed-forward = 2 x d_model)")
    tiny_layers: int = knob(2, "model=tiny: transformer layers")
    tokenizer: str = knob("auto", "'auto' (the model folder's, else train SentencePiece on the data), "
                                  "a spiece.model path, an HF folder or an HF id")
    tokenizer_vocab_size: int = knob(1000, "vocabulary of the SentencePiece model trained for tokenizer=auto")
    dataset: str = knob("sample", "training data: 'sample', a SQuAD v2 JSON path, or a `datasets` id")
    eval_dataset: str = knob("", "dev data like `dataset`; empty = held-out articles of `dataset`")
    sample_documents: int = knob(200, "training documents generated for dataset=sample (stages/qa/sample.py)")
    sample_dev_documents: int = knob(30, "dev documents generated for dataset=sample")
    data_seed: int = knob(0, "seed of the generated QA documents (dataset=sample)")
    sample_neighbour_guilds: str = knob("registered", "dataset=sample: the neighbours' patron guilds are "
                                        "'registered' (memory must bind the subject's name to its guild) or "
                                        "'unregistered' (memory must carry which registered guild was named before the register)",
                                        choices=NEIGHBOUR_GUILDS)
    sample_neighbours: int = knob(2, "dataset=sample: people stated between the subject and the register (the "
                                  "padding that keeps them in different segments; fewer = shorter documents)")
    sample_distractor: bool = knob(False, "dataset=sample: the first neighbour's patron guild is a registered guild "
                                   "other than the subject's, named next to it (random order) before the cut, so the "
                                   "year asked for depends on whose guild it is (needs sample_neighbours >= 1 and "
                                   "sample_neighbour_guilds=registered)", signature=WHEN_SET)
    sample_cross_only_documents: int = knob(0, "dataset=sample: further training documents of which only the "
                                            "cross-segment question is kept (a denser cross-segment signal)")
    sample_cross_only_lookups: int = knob(0, "dataset=sample: register lookups (\"When was the Belor Guild "
                                          "founded?\", guilds drawn per document) also kept in each cross-only "
                                          "document: a denser signal for the last hop of the cross-segment question",
                                          signature=WHEN_SET)
    long_context: int = knob(0, "join k paragraphs of an article into one context (0 = whole article, 1 = as given)")
    train_size: int = knob(0, "use only the first N training questions (0 = all)")
    eval_size: int = knob(0, "use only the first N dev questions (0 = all)")
    max_seq_length: int = knob(64, "tokens per segment (question, context window, memory and special tokens)")
    memory_extends_segment: bool = knob(False, "add the 2 x memory_num_tokens memory tokens to max_seq_length "
                                        "instead of taking them from the context window, so that variants with "
                                        "and without memory read the same windows")
    doc_stride: int = knob(64, "context tokens between the starts of consecutive windows")
    max_query_length: int = knob(16, "question tokens kept")
    max_n_segs: int = knob(4, "segments kept per document (features and evaluation)")
    max_answer_length: int = knob(30, "longest answer span in tokens at prediction time")
    memory_num_tokens: int = knob(4, "memory tokens N ([MEM_READ_i]/[MEM_WRITE_i]); 0 = plain XLNet")
    memory_update: str = knob("gated", "memory variant (models/memxlnet/memory.py registry): gated (gate blends "
                              "write states into memory), replace (write states become memory), none (memory "
                              "keeps its initial value)")
    memory_init: str = knob("learned", "initial memory", choices=("learned", "zeros"))
    memory_read_scale: str = knob("raw", "how memory enters in place of the read tokens' embeddings: raw (as "
                                  "MemXLNet) or embedding (rescaled to the word embeddings' RMS: a random-init "
                                  "model's hidden states are ~25x their norm)",
                                  choices=("raw", "embedding"))
    use_differentiable_memory: bool = knob(False, "slot memory with content addressing instead of token memory")
    memory_slots: int = knob(16, "slots of the differentiable memory")
    num_memory_heads: int = knob(1, "addressing heads of the differentiable memory (1-8)")
    memory_sharpness: float = knob(1.0, "softmax temperature factor of content addressing")
    enable_usage_tracking: bool = knob(False, "differentiable memory: prefer little-used slots when writing")
    enable_temporal_links: bool = knob(False, "differentiable memory: follow write order when reading")
    progressive_segments: list[int] = knob([2, 4], "curriculum: max segments per document in each stage")  # noqa: RUF009
    epochs_per_stage: int = knob(2, "epochs of each curriculum stage (see stage_epochs)")
    stage_epochs: list[int] = knob([], "epochs of each curriculum stage in turn, one per progressive_segments "  # noqa: RUF009
                                   "entry, e.g. [12,6]; empty = epochs_per_stage for every stage")
    stage_seq_lengths: list[int] = knob([], "max_seq_length of each curriculum stage in turn, e.g. [128,64]: a "  # noqa: RUF009
                                        "first stage that reads each whole document in one segment; the last "
                                        "entry must equal max_seq_length (what evaluation reads); empty = "
                                        "max_seq_length for every stage")
    shared_reader: bool = knob(False, "curriculum stage 1 trains a reader without memory tokens, kept once under "
                               "{root}/qa_reader/ for every run that differs only in its memory keys and later "
                               "stages; the next stage adds this run's memory (study=qa_memory: memory 0 and N "
                               "continue from one reader per seed, so their difference is memory alone)")
    shared_reader_seed: int = knob(0, "with shared_reader: the seed of the reader every run continues (0 = the run's "
                                   "own seed). Set, the run seeds vary only the later stages, as seeds vary only "
                                   "the fine-tuning of a pretrained model", signature=WHEN_SET)
    batch_size: int = knob(16, "documents per batch per rank (each batch runs time step by time step)")
    learning_rate: float = knob(2e-3, "peak learning rate (AdamW)")
    weight_decay: float = knob(0.01, "AdamW weight decay")
    warmup_ratio: float = knob(0.1, "linear LR warmup, fraction of each stage's steps")
    max_grad_norm: float = knob(1.0, "gradient clipping norm")
    warmup_freeze_base_epochs: int = knob(0, "first epochs of each curriculum stage train only memory and QA head "
                                             "(base: 1; tiny: 0, a random-init backbone has nothing to protect)")
    warmup_disable_global_softmax_epochs: int = knob(1, "first epochs of each curriculum stage use a per-segment "
                                                        "span softmax (base and tiny: 1)")
    warmup_disable_any_positive_epochs: int = knob(1, "first epochs of each curriculum stage pick answers by "
                                                   "best-score extraction, then `extraction` (base and tiny: 1)")
    use_global_softmax: bool = knob(True, "span softmax across all segments of a document")
    extraction: str = knob("any_positive", "answer choice: any_positive (any segment confident that it holds an "
                           "answer; its best span) or best_score (best span vs the largest null score)",
                           choices=("any_positive", "best_score"))
    all_answer_occurrences: bool = knob(True, "global-softmax loss: every segment that holds the answer is a "
                                              "target (else only the first)")
    no_answer_threshold: float = knob(0.0, "answer only when the answer margin (span score - null score) exceeds "
                                           "this; saved with the model, the evaluate stage uses it by default")
    checkpoint_segments: bool = knob(False, "recompute each segment in backward instead of storing activations",
                                     signature=False)
    seed: int = knob(42, "random seed (init, dropout, data order)")
    checkpoint_every: int = knob(50, "optimizer steps between checkpoints", signature=False)
    num_threads: int = knob(0, "torch CPU threads (0 = torch default)", signature=False)
    precision: str = knob("auto", "auto = bf16 autocast (and TF32 matmuls) on GPU, fp32 on CPU",
                          choices=("auto", "fp32", "bf16"), signature=WHEN_SET)

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
        from models.memxlnet.config import MemoryConfig

        MemoryConfig(**{key: getattr(self, key) for key in MemoryConfig.stage_keys()}).validate()
        if self.batch_size < 1 or self.epochs_per_stage < 1:
            raise ValueError("batch_size/epochs_per_stage: must be >= 1")
        if self.stage_epochs and (len(self.stage_epochs) != len(self.progressive_segments)
                                  or min(self.stage_epochs) < 1):
            raise ValueError(f"stage_epochs: {self.stage_epochs} needs one count >= 1 per curriculum stage "
                             f"(progressive_segments={self.progressive_segments}); or leave it empty")
        if self.stage_seq_lengths and (len(self.stage_seq_lengths) != len(self.progressive_segments)
                                       or self.stage_seq_lengths[-1] != self.max_seq_length
                                       or min(self.stage_seq_lengths) < 16):
            raise ValueError(f"stage_seq_lengths: {self.stage_seq_lengths} needs one length >= 16 per curriculum "
                             f"stage (progressive_segments={self.progressive_segments}), the last equal to "
                             f"max_seq_length={self.max_seq_length}; or leave it empty")
        if self.shared_reader and len(self.progressive_segments) < 2:
            raise ValueError(f"shared_reader: needs a reader stage and a later one; progressive_segments="
                             f"{self.progressive_segments} has one stage (e.g. [1,2])")
        if min(self.sample_neighbours, self.sample_cross_only_documents, self.sample_cross_only_lookups) < 0:
            raise ValueError("sample_neighbours/sample_cross_only_documents/sample_cross_only_lookups: must be >= 0")
        if self.sample_distractor and (self.sample_neighbours < 1 or self.sample_neighbour_guilds != "registered"):
            raise ValueError("sample_distractor: needs sample_neighbours >= 1 and sample_neighbour_guilds=registered")
        if self.shared_reader_seed and not self.shared_reader:
            raise ValueError("shared_reader_seed: only means something with shared_reader=true")
        self._validate_numbers()
        for name in ("dataset", "eval_dataset"):
            value = getattr(self, name)
            if value.endswith(".json") and not Path(value).expanduser().is_file():
                raise ValueError(f"{name}: {value} does not exist; pass a SQuAD v2 JSON file, 'sample' or a datasets id")

    def reader_config(self) -> QAConfig:
        """The shared reader's config: curriculum stage 1 alone, without memory. The memory keys
        and the later stages are left out (memory keys at their defaults, no memory tokens), so
        runs that differ only there name the same reader; with `shared_reader_seed`, runs of every
        seed name the reader of that seed."""
        from models.memxlnet.config import MemoryConfig

        defaults = type(self)()
        memory = {key: getattr(defaults, key) for key in (*MemoryConfig.stage_keys(), "memory_extends_segment")}
        memory["memory_num_tokens"] = 0
        length = self.stage_seq_lengths[0] if self.stage_seq_lengths else self.max_seq_length
        return dataclasses.replace(
            self, **memory, shared_reader=False, seed=self.shared_reader_seed or self.seed, shared_reader_seed=0,
            progressive_segments=self.progressive_segments[:1],
            epochs_per_stage=self.epochs_of(0), stage_epochs=[], max_seq_length=length, stage_seq_lengths=[])

    def segment_length(self, stage: int | None = None) -> int:
        """Tokens per segment of curriculum stage ``stage`` (None: the last, which evaluation reads):
        its max_seq_length, plus the memory tokens if they extend the segment."""
        length = self.stage_seq_lengths[-1 if stage is None else stage] if self.stage_seq_lengths else self.max_seq_length
        return length + (2 * self.memory_num_tokens if self.memory_extends_segment else 0)

    def epochs_of(self, stage: int) -> int:
        """Epochs of curriculum stage ``stage`` (0-based)."""
        return self.stage_epochs[stage] if self.stage_epochs else self.epochs_per_stage

    def _validate_numbers(self) -> None:
        """Ranges of the numeric keys, so a bad value fails at submit time, not mid-training."""
        for name in ("learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm", "no_answer_threshold",
                     "memory_sharpness"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}: {getattr(self, name)} is not a finite number")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: {self.learning_rate} must be > 0; e.g. learning_rate=3e-5")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("weight_decay/max_grad_norm: must be >= 0 (max_grad_norm=0 disables clipping)")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio: {self.warmup_ratio} is a fraction of the steps; use a value in [0, 1]")
        if self.max_answer_length < 1:
            raise ValueError(f"max_answer_length: {self.max_answer_length} must be >= 1 token; e.g. 30")
        if self.max_query_length < 1:
            raise ValueError(f"max_query_length: {self.max_query_length} must be >= 1 token")
        for name in ("train_size", "eval_size", "warmup_freeze_base_epochs", "warmup_disable_global_softmax_epochs",
                     "warmup_disable_any_positive_epochs", "num_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 0 (0 means all/none)")
        # Every curriculum stage needs context room, not only the last (stage_seq_lengths).
        shortest = min(self.segment_length(i) for i in range(len(self.progressive_segments)))
        room = shortest - 2 * self.memory_num_tokens - self.max_query_length - 3
        if room < 1:
            raise ValueError(f"memory_num_tokens: {self.memory_num_tokens} read + write tokens and max_query_length="
                             f"{self.max_query_length} leave no context room in a {shortest}-token segment; "
                             "lower memory_num_tokens or raise max_seq_length (or stage_seq_lengths)")
        if self.tokenizer == "auto" and self.tokenizer_vocab_size < 100:
            raise ValueError(f"tokenizer_vocab_size: {self.tokenizer_vocab_size} is too small for a SentencePiece "
                             "model; use at least 100 (e.g. 2000)")
        if self.memory_slots < 1 or self.checkpoint_every < 1 or min(self.sample_documents, self.sample_dev_documents) < 1:
            raise ValueError("memory_slots/checkpoint_every/sample_documents/sample_dev_documents: must be >= 1")
