"""Configuration of the `pretrain` stage: its components `packing.*` (stages/packing) and `model.*`
(models/graphlm), plus the optimiser and run keys."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from models.graphlm.config import MODEL_PRESETS, GraphLMConfig
from stages.core.config import knob
from stages.packing.config import PackingConfig


def _preset(size: str, **run) -> dict:
    """A preset's keys: the model shape from `MODEL_PRESETS`, then run defaults for that size."""
    return {**{f"model.{key}": value for key, value in MODEL_PRESETS[size].items()}, **run}


@dataclasses.dataclass
class PretrainConfig:
    """Graph-LM pretraining.

    `preset` picks the model size and sensible run defaults for it; explicit keys override it.
    `packing.batch_size` is packs per micro-batch per rank; the global batch per optimiser step is
    packing.batch_size * grad_accum * world_size packs of packing.token_budget tokens.
    """

    PRESETS: ClassVar[dict[str, dict]] = {
        "tiny": _preset("tiny"),
        "small": _preset("small", **{"packing.token_budget": 1024, "packing.batch_size": 8, "lr": 1e-3,
                                     "steps": 2000, "warmup_steps": 100}),
        "gpt2-small": _preset("gpt2-small", **{"packing.token_budget": 1024, "packing.batch_size": 16, "lr": 6e-4,
                                               "steps": 10000, "warmup_steps": 500, "val_every": 500,
                                               "checkpoint_every": 1000}),
    }
    #: The keys that moved into a component: the old flat form fails naming the new one, and
    #: recorded flat configs are read under the new names.
    RENAMED: ClassVar[dict[str, str]] = {
        **{name: f"packing.{name}" for name in (
            "strategy", "token_budget", "doc_budget", "overflow", "order_mode", "layout", "reset_positions",
            "restart_prob", "walk_direction", "batch_size", "num_workers")},
        **{name: f"model.{name}" for name in ("mask", "attention_impl", "tie_embeddings", "smear_keys", "compile")},
    }

    # Packing defaults sized for the tiny preset on two CPU cores; 1024 tokens hold ~3 sample
    # articles per pack, so the traversal strategy matters (at 256 every pack is one article).
    packing: PackingConfig = knob(PackingConfig(token_budget=1024, batch_size=1),
                                  "how documents are packed into training sequences")
    model: GraphLMConfig = knob(GraphLMConfig(mask="graph"),
                                "the GraphLM decoder (its shape comes from `preset`)")
    preset: str = knob("tiny", "model size: sets model.n_layers/d_model/n_heads/d_ff and run defaults for it "
                       "(explicit keys override it)", choices=tuple(MODEL_PRESETS))
    seed: int = knob(0, "seed of the model init and of the data order (start points, traversal)")

    steps: int = knob(40, "optimizer steps", ge=1)
    lr: float = knob(3e-3, "peak learning rate", gt=0.0)
    min_lr_ratio: float = knob(0.1, "final learning rate as a fraction of lr (cosine floor)", ge=0.0, le=1.0)
    warmup_steps: int = knob(5, "linear warmup steps", ge=0)
    weight_decay: float = knob(0.1, "AdamW weight decay on matrices (not on norms)")
    beta2: float = knob(0.95, "AdamW beta2")
    grad_clip: float = knob(1.0, "max global gradient norm (0 = no clipping)", ge=0.0)
    grad_accum: int = knob(1, "micro-batches per optimizer step", ge=1)
    zero_stage: int = knob(0, "0 = DDP; 1/2/3 = DeepSpeed ZeRO stage", choices=(0, 1, 2, 3))
    precision: str = knob("auto", "auto = bf16 autocast on GPU, fp32 on CPU", choices=("auto", "fp32", "bf16"))

    vocab: str = knob("compact", "compact: train on the token ids the corpus uses (table in the artifact); "
                      "full: the whole encoding", choices=("compact", "full"))
    heldout: str = knob("closed", "held-out split: closed (held-out documents' link neighbours are kept out of "
                        "training too) or doc (by document id alone; leaks linked facts)", choices=("closed", "doc"))
    hub_degree: int = knob(0, "closed split: documents with more links are never held out (0: 2x the median)", ge=0)
    val_fraction: float = knob(0.03, "share of documents held out (candidates chosen by doc id)", gt=0.0, lt=0.5)
    val_every: int = knob(20, "validate every N steps (0 = only at the end)", ge=0)
    val_batches: int = knob(4, "held-out batches per validation", ge=1)
    checkpoint_every: int = knob(20, "checkpoint every N steps (0 = only on preemption and at the end)",
                                 signature=False, ge=0)
    keep_checkpoints: int = knob(1, "checkpoints kept in the artifact (latest first)", signature=False, ge=0)
    log_every: int = knob(10, "every N steps: read the losses back from the device, write a metrics line and "
                               "act on a preemption signal", signature=False, ge=1)
    peak_tflops: float = knob(0.0, "accelerator peak TFLOP/s for MFU (0 = guess from the GPU name)",
                              signature=False)

    def model_config(self, n_vocab: int) -> GraphLMConfig:
        """The trained model's config: `model.*` with its derived fields filled in, the vocabulary
        size (the tokenizer's, or the compact table's) and the packing layout's `reset_positions`."""
        return dataclasses.replace(self.model, vocab_size=n_vocab, reset_positions=self.packing.reset_positions)
