"""MemXLNetForQA: a transformers XLNet with memory tokens carried from segment to segment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import XLNetConfig, XLNetModel

from models.memxlnet.config import TINY_XLNET, MemoryConfig
from models.memxlnet.memory import MemoryState, build_memory

MEMORY_CONFIG_NAME = "memxlnet_config.json"
WEIGHTS_NAME = "model.safetensors"
# Logit for positions that can never be an answer (question, separators, padding, memory tokens).
# Finite so that a document-wide softmax stays defined; exp(-1e4) is exactly 0 in float32.
MASKED_LOGIT = -1e4


@dataclass
class SegmentOutput:
    """What one segment's forward returns. ``memory_state`` is None when memory is off."""

    start_logits: torch.Tensor
    end_logits: torch.Tensor
    memory_state: MemoryState | None
    memory_info: dict = field(default_factory=dict)


class MemXLNetForQA(nn.Module):
    """Span-extraction QA on XLNet with N read/write memory tokens per segment.

    Per segment: the embeddings of the ``[MEM_READ_i]`` tokens are replaced by the memory state, the
    sequence runs through XLNet, start/end logits come from a linear head, and the final hidden states
    of the ``[MEM_WRITE_i]`` tokens update the memory for the next segment of the same document.
    Token positions are found by id, so the feature layout decides where the tokens go; the CLS
    position likewise comes from the features (XLNet puts CLS last, not first).
    """

    def __init__(self, xlnet_config: XLNetConfig, memory: MemoryConfig, transformer: XLNetModel | None = None):
        super().__init__()
        memory.validate()
        self.memory_config = memory
        fresh = transformer is None
        self.transformer = XLNetModel(xlnet_config) if fresh else transformer
        # mask_emb only serves permutation-LM pretraining (target_mapping); QA never uses it, and a
        # trainable parameter without gradient would stall DistributedDataParallel.
        self.transformer.mask_emb.requires_grad_(False)
        d_model = self.transformer.config.d_model
        self.qa_outputs = nn.Linear(d_model, 2)
        self.memory = build_memory(memory, d_model)
        self._memory_frozen = False
        if fresh:
            self._zero_memory_token_embeddings(first_new_row=0)

    # ----------------------------------------------------------------- construction
    @classmethod
    def tiny(cls, vocab_size: int, memory: MemoryConfig, **overrides) -> MemXLNetForQA:
        """A small random-init model (see TINY_XLNET) for CPU runs and tests."""
        settings = {**TINY_XLNET, **overrides}
        config = XLNetConfig(vocab_size=vocab_size, **settings)
        return cls(config, memory)

    @classmethod
    def from_base(cls, name_or_path: str, memory: MemoryConfig) -> MemXLNetForQA:
        """Pretrained XLNet weights (an HF id such as ``xlnet-base-cased`` or a local folder) plus a fresh head."""
        transformer = XLNetModel.from_pretrained(name_or_path)
        return cls(transformer.config, memory, transformer=transformer)

    def with_memory(self, memory: MemoryConfig, vocab_size: int) -> MemXLNetForQA:
        """This model's backbone and QA head under another memory config: a fresh memory module,
        and the word embeddings grown to ``vocab_size`` for memory tokens appended to the tokenizer
        (their rows start at zero). Shares the backbone's parameters with ``self``."""
        model = type(self)(self.config, memory, transformer=self.transformer)
        model.qa_outputs.load_state_dict(self.qa_outputs.state_dict())
        model.resize_token_embeddings(vocab_size)
        return model

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Grow the word embeddings after memory tokens were added to the tokenizer."""
        old_size = self.transformer.word_embedding.num_embeddings
        self.transformer.resize_token_embeddings(vocab_size, mean_resizing=False)
        self._zero_memory_token_embeddings(first_new_row=old_size)

    def _zero_memory_token_embeddings(self, first_new_row: int) -> None:
        """Start the memory tokens' new word embeddings (rows from ``first_new_row`` on) at zero.

        A write token's state is then, at initialisation, what it attends to in its segment rather
        than its own embedding. With XLNet's 0.02-scale init, attention adds only a small share to a
        token's residual: randomly embedded write tokens varied 0.3% across generated documents, and
        changing segment 1 moved segment 3's logits 16,000 times less than changing segment 3 did.
        Zeroed, they vary about 40%, and that ratio falls to about 50: memory is live from step 0.
        Read tokens are replaced by the memory anyway. Pretrained rows are kept; loaded weights
        overwrite this.
        """
        ids = [i for i in (*self.memory_config.read_token_ids, *self.memory_config.write_token_ids)
               if first_new_row <= i < self.transformer.word_embedding.num_embeddings]
        if ids:
            with torch.no_grad():
                self.transformer.word_embedding.weight[ids] = 0.0

    @property
    def config(self) -> XLNetConfig:
        return self.transformer.config

    def base_parameters(self) -> list[nn.Parameter]:
        """The pretrained backbone (frozen during ``warmup_freeze_base_epochs``)."""
        return list(self.transformer.parameters())

    @contextmanager
    def memory_frozen(self) -> Iterator[None]:
        """Within the block, memory keeps its initial value: segments still read it, nothing is
        written. The ablation that measures what a trained model takes from its memory."""
        self._memory_frozen = True
        try:
            yield
        finally:
            self._memory_frozen = False

    # ----------------------------------------------------------------- forward
    def init_memory(self, batch_size: int) -> MemoryState | None:
        """The memory state before a document's first segment."""
        return None if self.memory is None else self.memory.init_state(batch_size)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        p_mask: torch.Tensor | None = None,
        memory_state: MemoryState | None = None,
    ) -> SegmentOutput:
        """One segment for a batch of documents.

        p_mask: bool [B, L], True where a position can never start or end an answer.
        memory_state: rows aligned with ``input_ids``; None starts fresh documents.
        """
        embeds = self.transformer.word_embedding(input_ids)
        info: dict = {}
        read_info: dict = {}
        if self.memory is not None:
            if memory_state is None:
                memory_state = self.init_memory(input_ids.shape[0])
            read_emb, read_info = self.memory.read(memory_state)
            info.update(read_info)
            # slot[b, l] = i where input_ids[b, l] is [MEM_READ_i], else -1: one gather + one where.
            read_ids = torch.tensor(self.memory_config.read_token_ids, device=input_ids.device)
            match = input_ids.unsqueeze(-1) == read_ids
            slot = torch.where(match.any(-1), match.to(torch.long).argmax(-1), -1)
            gathered = read_emb.to(embeds.dtype).gather(1, slot.clamp(min=0).unsqueeze(-1).expand_as(embeds))
            embeds = torch.where((slot >= 0).unsqueeze(-1), gathered, embeds)
        hidden = self.transformer(
            inputs_embeds=embeds,
            attention_mask=attention_mask.to(embeds.dtype),
            token_type_ids=token_type_ids,
            use_mems=False,
        ).last_hidden_state
        logits = self.qa_outputs(hidden)
        start, end = logits[..., 0], logits[..., 1]
        if p_mask is not None:
            start = start.masked_fill(p_mask, MASKED_LOGIT)
            end = end.masked_fill(p_mask, MASKED_LOGIT)
        new_state = None
        if self.memory is not None and self._memory_frozen:
            new_state = memory_state
        elif self.memory is not None:
            written = self._gather_write_states(input_ids, hidden)
            new_state, write_info = self.memory.write(memory_state, written, read_info)
            info.update(write_info)
        return SegmentOutput(start, end, new_state, info)

    def _gather_write_states(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        ids = torch.tensor(self.memory_config.write_token_ids, device=input_ids.device)
        hits = input_ids.unsqueeze(1) == ids.view(1, -1, 1)  # [B, N, L]
        if not bool(hits.any(-1).all()):
            raise ValueError("input_ids: a segment lacks its [MEM_WRITE_i] tokens; build features with the same memory.num_tokens")
        positions = hits.to(torch.long).argmax(-1)  # [B, N]
        return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))

    # ----------------------------------------------------------------- persistence
    def save_pretrained(self, path: str | Path) -> None:
        """Write XLNet config, memory config (incl. memory token ids) and all weights to a folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.transformer.config.save_pretrained(path)
        (path / MEMORY_CONFIG_NAME).write_text(json.dumps(self.memory_config.to_dict(), indent=2))
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MemXLNetForQA:
        """Load a folder written by ``save_pretrained``."""
        path = Path(path)
        if not (path / MEMORY_CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path}: no {MEMORY_CONFIG_NAME}; pass a folder written by MemXLNetForQA.save_pretrained")
        config = XLNetConfig.from_pretrained(path)
        memory = MemoryConfig.from_dict(json.loads((path / MEMORY_CONFIG_NAME).read_text()))
        model = cls(config, memory)
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME)), strict=True)
        return model
