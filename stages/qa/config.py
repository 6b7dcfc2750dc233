"""Config of the `qa` stage (MemXLNet fine-tuning through a progressive segment curriculum).

Its components nest, each defined next to the code it configures: `memory.*` is
`models.memxlnet.MemoryConfig`, `data.*` is `stages.qa.data.DataConfig`, `sample.*` is
`stages.qa.sample.SampleConfig` and `curriculum.*` is `stages.qa.curriculum.CurriculumConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from models.memxlnet.config import FLAT_NAMES, MemoryConfig
from stages.core.config import WHEN_SET, knob
from stages.qa.curriculum import CurriculumConfig
from stages.qa.data import DataConfig
from stages.qa.features import context_room
from stages.qa.sample import SampleConfig

_MOVED = {
    "memory": {**FLAT_NAMES, "memory_extends_segment": "extends_segment"},
    "data": {name: name for name in ("dataset", "eval_dataset", "long_context", "train_size", "eval_size")},
    "sample": {"sample_documents": "documents", "sample_dev_documents": "dev_documents", "data_seed": "seed",
               "sample_neighbours": "neighbours", "sample_neighbour_guilds": "neighbour_guilds",
               "sample_distractor": "distractor", "sample_cross_only_documents": "cross_only_documents"},
    "curriculum": {"progressive_segments": "segments", "epochs_per_stage": "epochs", "stage_epochs": "phase_epochs",
                   "stage_seq_lengths": "phase_seq_lengths", "shared_reader": "shared_reader",
                   "shared_reader_seed": "shared_reader_seed",
                   **{f"warmup_{name}_epochs": f"warmup_{name}_epochs"
                      for name in ("freeze_base", "disable_global_softmax", "disable_any_positive")}},
}


@dataclass
class QAConfig:
    """Defaults train the tiny random-init preset on generated long documents (stages/qa/sample.py)
    in a few CPU minutes: 64-token segments, a 1000-piece BPE vocabulary, batches of 16 documents,
    learning rate 2e-3, 4 memory tokens."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {},
        "base": {
            "model": "xlnet-base-cased", "tokenizer": "xlnet-base-cased", "data.dataset": "rajpurkar/squad_v2",
            "data.long_context": 1, "max_seq_length": 384, "doc_stride": 128, "max_query_length": 64,
            "max_n_segs": 6, "curriculum.segments": [2, 4, 6], "memory.num_tokens": 16, "curriculum.epochs": 2,
            "learning_rate": 3e-5, "batch_size": 8, "curriculum.warmup_freeze_base_epochs": 1,
        },
    }
    #: Flat keys of earlier versions -> their place in a component.
    RENAMED: ClassVar[dict[str, str]] = {old: f"{part}.{new}" for part, keys in _MOVED.items()
                                         for old, new in keys.items()}

    preset: str = knob("tiny", "starting point: 'tiny' (random-init small XLNet, sample data) or 'base'",
                       choices=("tiny", "base"))
    model: str = knob("tiny", "'tiny' = random-init small XLNet; else XLNet weights by HF id or local folder")
    tiny_d_model: int = knob(64, "model=tiny: hidden size (heads = d_model / 16, feed-forward = 2 x d_model)", ge=16)
    tiny_layers: int = knob(2, "model=tiny: transformer layers", ge=1)
    tiny_init_std: float = knob(0.02, "model=tiny: standard deviation of the random init (0.02: XLNet's, sized for "
                                      "d_model 768-1024)", gt=0, signature=WHEN_SET)
    tokenizer: str = knob("auto", "'auto' (the model folder's, else train SentencePiece on the data), "
                                  "a spiece.model path, an HF folder or an HF id")
    tokenizer_vocab_size: int = knob(1000, "vocabulary of the SentencePiece model trained for tokenizer=auto", ge=100)
    data: DataConfig = knob(DataConfig(), "where the questions come from")
    sample: SampleConfig = knob(SampleConfig(), "the generated documents of data.dataset=sample")
    memory: MemoryConfig = knob(MemoryConfig(num_tokens=4), "the memory tokens and how memory is updated")
    curriculum: CurriculumConfig = knob(CurriculumConfig(), "the progressive-segment phases and their warm-ups")
    max_seq_length: int = knob(64, "tokens per segment (question, context window, memory and special tokens)", ge=16)
    doc_stride: int = knob(64, "context tokens between the starts of consecutive windows", ge=1)
    max_query_length: int = knob(16, "question tokens kept", ge=1)
    max_n_segs: int = knob(4, "segments kept per document (features and evaluation)", ge=1)
    max_answer_length: int = knob(30, "longest answer span in tokens at prediction time", ge=1)
    batch_size: int = knob(16, "documents per batch per rank (each batch runs time step by time step)", ge=1)
    learning_rate: float = knob(2e-3, "peak learning rate (AdamW)", gt=0)
    weight_decay: float = knob(0.01, "AdamW weight decay", ge=0)
    warmup_ratio: float = knob(0.1, "linear LR warmup, fraction of each phase's steps", ge=0, le=1)
    max_grad_norm: float = knob(1.0, "gradient clipping norm (0 = no clipping)", ge=0)
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
    checkpoint_every: int = knob(50, "optimizer steps between checkpoints", signature=False, ge=1)
    num_threads: int = knob(0, "torch CPU threads (0 = torch default)", signature=False, ge=0)
    precision: str = knob("auto", "auto = bf16 autocast (and TF32 matmuls) on GPU, fp32 on CPU",
                          choices=("auto", "fp32", "bf16"), signature=WHEN_SET)

    def validate(self) -> None:
        """The rules that span components; each component checked its own keys before."""
        if max(self.curriculum.segments) > self.max_n_segs:
            raise ValueError(f"curriculum.segments: {max(self.curriculum.segments)} > max_n_segs={self.max_n_segs}; "
                             "raise max_n_segs or lower the curriculum")
        lengths = self.curriculum.phase_seq_lengths
        if lengths and lengths[-1] != self.max_seq_length:
            raise ValueError(f"curriculum.phase_seq_lengths: the last entry {lengths[-1]} must equal max_seq_length="
                             f"{self.max_seq_length} (what evaluation reads)")
        shortest = min(self.segment_length(i) for i in range(self.curriculum.phases))
        if context_room(shortest, self.memory.num_tokens, self.max_query_length) < 1:
            raise ValueError(f"memory.num_tokens: {self.memory.num_tokens} read + write tokens and max_query_length="
                             f"{self.max_query_length} leave no context room in a {shortest}-token segment; lower "
                             "memory.num_tokens or raise max_seq_length (or curriculum.phase_seq_lengths)")

    def reader_config(self) -> QAConfig:
        """The shared reader's config: curriculum phase 1 alone, without memory. The memory keys and
        the later phases are left out, so runs that differ only there name the same reader; with
        `curriculum.shared_reader_seed`, runs of every seed name the reader of that seed."""
        return dataclasses.replace(
            self, memory=MemoryConfig(), curriculum=self.curriculum.reader(),
            seed=self.curriculum.shared_reader_seed or self.seed,
            max_seq_length=self.curriculum.seq_length_of(0, self.max_seq_length))

    def segment_length(self, phase: int | None = None) -> int:
        """Tokens per segment of curriculum phase ``phase`` (None: the last, which evaluation reads),
        memory tokens included when they extend the segment."""
        memory = 2 * self.memory.num_tokens if self.memory.extends_segment else 0
        return self.curriculum.seq_length_of(phase, self.max_seq_length) + memory
