"""Configuration of the `pretrain` stage: packing keys plus model, optimiser and run keys."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from stages.core.config import knob
from stages.packing.config import PackingConfig

MODEL_SIZES = ("tiny", "small", "gpt2-small")
MASKS = ("causal", "doc", "graph")


@dataclasses.dataclass
class PretrainConfig(PackingConfig):
    """Graph-LM pretraining. Inherits every packing key (strategy, token_budget, order_mode, ...).

    `preset` picks the model size and sensible run defaults for it; explicit keys override it.
    `batch_size` is packs per micro-batch per rank; the global batch per optimiser step is
    batch_size * grad_accum * world_size packs of token_budget tokens.
    """

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": {},
        "small": {"token_budget": 1024, "batch_size": 8, "lr": 1e-3, "steps": 2000, "warmup_steps": 100},
        "gpt2-small": {"token_budget": 1024, "batch_size": 16, "lr": 6e-4, "steps": 10000,
                       "warmup_steps": 500, "val_every": 500, "checkpoint_every": 1000},
    }

    # Packing defaults sized for the tiny preset on two CPU cores; 1024 tokens hold ~3 sample
    # articles per pack, so the traversal strategy matters (at 256 every pack is one article).
    token_budget: int = knob(1024, "pack length in tokens, decoration (BOS/EOS) tokens included")
    batch_size: int = knob(1, "packs per micro-batch per data-parallel rank")

    preset: str = knob("tiny", "model size (and run defaults for it)", choices=MODEL_SIZES)
    mask: str = knob("graph", "attention inside a pack", choices=MASKS)
    attention_impl: str = knob("auto", "attention kernel: flex on CUDA / dense-mask SDPA on CPU (auto)",
                               choices=("auto", "flex", "sdpa"), signature=False)
    tie_embeddings: bool = knob(True, "share the input embedding and the output projection")
    smear_keys: bool = knob(False, "smeared keys: each attention key blends in the previous token's key "
                            "(learned weight per head, within a document), so a 2-layer model learns "
                            "in-context copying (study=lm turns it on)")
    compile: bool = knob(False, "torch.compile the decoder blocks (FlexAttention is always compiled on CUDA)",
                          signature=False)

    steps: int = knob(40, "optimizer steps")
    lr: float = knob(3e-3, "peak learning rate")
    min_lr_ratio: float = knob(0.1, "final learning rate as a fraction of lr (cosine floor)")
    warmup_steps: int = knob(5, "linear warmup steps")
    weight_decay: float = knob(0.1, "AdamW weight decay on matrices (not on norms)")
    beta2: float = knob(0.95, "AdamW beta2")
    grad_clip: float = knob(1.0, "max global gradient norm (0 = no clipping)")
    grad_accum: int = knob(1, "micro-batches per optimizer step")
    zero_stage: int = knob(0, "0 = DDP; 1/2/3 = DeepSpeed ZeRO stage", choices=(0, 1, 2, 3))
    precision: str = knob("auto", "auto = bf16 autocast on GPU, fp32 on CPU", choices=("auto", "fp32", "bf16"))

    vocab: str = knob("compact", "compact: train on the token ids the corpus uses (table in the artifact); "
                      "full: the whole encoding", choices=("compact", "full"))
    heldout: str = knob("closed", "held-out split: closed (held-out documents' link neighbours are kept out of "
                        "training too) or doc (by document id alone; leaks linked facts)", choices=("closed", "doc"))
    hub_degree: int = knob(0, "closed split: documents with more links are never held out (0: 2x the median)")
    val_fraction: float = knob(0.03, "share of documents held out (candidates chosen by doc id)")
    val_every: int = knob(20, "validate every N steps (0 = only at the end)")
    val_batches: int = knob(4, "held-out batches per validation")
    checkpoint_every: int = knob(20, "checkpoint every N steps (0 = only on preemption and at the end)",
                                 signature=False)
    keep_checkpoints: int = knob(1, "checkpoints kept in the artifact (latest first)", signature=False)
    log_every: int = knob(10, "every N steps: read the losses back from the device, write a metrics line and "
                               "act on a preemption signal", signature=False)
    peak_tflops: float = knob(0.0, "accelerator peak TFLOP/s for MFU (0 = guess from the GPU name)",
                              signature=False)

    def validate(self) -> None:
        super().validate()
        positive = ("steps", "grad_accum", "val_batches", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 1")
        for name in ("lr", "weight_decay", "beta2", "grad_clip", "min_lr_ratio", "val_fraction"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}: {getattr(self, name)} is not a finite number; e.g. lr=3e-4")
        if self.lr <= 0:
            raise ValueError(f"lr: {self.lr} must be positive; e.g. lr=3e-4")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio: {self.min_lr_ratio} is outside [0, 1]")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction: {self.val_fraction} must be in (0, 0.5); e.g. 0.05")
        for name in ("hub_degree", "warmup_steps", "val_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} must be >= 0")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip: {self.grad_clip} must be >= 0 (0 disables clipping)")
