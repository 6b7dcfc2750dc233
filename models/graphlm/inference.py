"""Inference tier (plain object, not an nn.Module): logits, perplexity and graph-aware generation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .layers import KVCache
from .loss import token_losses
from .masks import AttentionMask, dense_mask, document_continues, make_mask_mod

DocSpan = tuple  # (start, length, doc_id, truncated)


def doc_index_from_spans(doc_spans: Sequence[Sequence[DocSpan]], seq_len: int) -> Tensor:
    """Per-token document index [B, T] (-1 = padding) from per-pack (start, length, ...) spans."""
    index = torch.full((len(doc_spans), seq_len), -1, dtype=torch.long)
    for b, spans in enumerate(doc_spans):
        for i, span in enumerate(spans):
            start, length = int(span[0]), int(span[1])
            if start < 0 or start + length > seq_len:
                raise ValueError(f"doc_spans: span {tuple(span)} of pack {b} exceeds sequence length {seq_len}")
            index[b, start:start + length] = i
    return index


def positions_from_doc_index(doc_index: Tensor) -> Tensor:
    """Positions [B, T] that restart at 0 at every document start (padding counts on)."""
    index = torch.arange(doc_index.shape[1], device=doc_index.device).expand_as(doc_index)
    starts = torch.ones_like(doc_index, dtype=torch.bool)
    starts[:, 1:] = doc_index[:, 1:] != doc_index[:, :-1]
    start_at = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - start_at


class GraphLMInference:
    """Evaluation and generation on a trained GraphLMForTraining's weights (shared, not copied).

    Inference always evaluates the mask densely from the same mask_mod as training, so it works on
    any device and with a KV cache; `mode` defaults to the model's training mask.
    """

    def __init__(self, model) -> None:
        self.model = model.eval()
        self.config = model.config

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

    def _mask(self, mode: str, doc_index: Tensor, edges: Tensor | None, q_positions: Tensor) -> AttentionMask:
        mask_mod = make_mask_mod(mode, doc_index, edges)
        return AttentionMask(mode, dense=dense_mask(mask_mod, doc_index.shape[0], q_positions, doc_index.shape[1]),
                             continues=document_continues(doc_index, q_positions))

    @torch.no_grad()
    def forward_inference(self, tokens: Tensor, doc_spans: Sequence[Sequence[DocSpan]],
                          edges: Tensor | None = None, mode: str | None = None) -> Tensor:
        """Logits [B, T, vocab] for tokens [B, T] (or [T]) laid out as `doc_spans`."""
        tokens = tokens.view(1, -1) if tokens.dim() == 1 else tokens
        tokens = tokens.to(self.device)
        doc_index = doc_index_from_spans(doc_spans, tokens.shape[1]).to(self.device)
        edges = None if edges is None else edges.to(self.device)
        mask = self._mask(mode or self.config.mask, doc_index, edges, torch.arange(tokens.shape[1], device=self.device))
        hidden = self.model.hidden_states(tokens, mask, self._positions(doc_index))
        return (hidden @ self.model.output_weight.t()).float()

    def _positions(self, doc_index: Tensor) -> Tensor | None:
        """The positions the model was trained with (None: absolute in the pack)."""
        return positions_from_doc_index(doc_index) if self.config.reset_positions else None

    @torch.no_grad()
    def document_nll(self, tokens: Tensor, doc_spans: Sequence[DocSpan], target: int,
                     edges: Tensor | None = None, mode: str | None = None) -> tuple[float, int]:
        """Summed next-token NLL over document `target` of one pack, and the number of predictions.

        Only predictions inside the target document count (its first token has no in-document
        history, so a document of length L gives L - 1 predictions).
        """
        losses = self.document_token_nll(tokens, doc_spans, target, edges, mode)
        return float(losses.sum().item()), int(losses.numel())

    @torch.no_grad()
    def document_token_nll(self, tokens: Tensor, doc_spans: Sequence[DocSpan], target: int,
                           edges: Tensor | None = None, mode: str | None = None) -> Tensor:
        """Per-prediction NLL [L - 1] inside document `target`: entry i scores its token i + 1."""
        tokens = tokens.view(1, -1).to(self.device)
        seq_len = tokens.shape[1]
        doc_index = doc_index_from_spans([doc_spans], seq_len).to(self.device)
        edges = None if edges is None else edges.to(self.device)
        mask = self._mask(mode or self.config.mask, doc_index, edges, torch.arange(seq_len, device=self.device))
        hidden = self.model.hidden_states(tokens, mask, self._positions(doc_index))[0]
        start, length = int(doc_spans[target][0]), int(doc_spans[target][1])
        if length < 2:
            return torch.zeros(0)
        labels = torch.full((seq_len,), -100, dtype=torch.long, device=self.device)
        labels[start:start + length - 1] = tokens[0, start + 1:start + length]
        losses = token_losses(hidden, self.model.output_weight, labels, self.config.ce_chunk_tokens)
        return losses.view(-1)[start:start + length - 1].float().cpu()

    def context_nll(self, document: Sequence[int], context: Sequence[Sequence[int]],
                    mode: str | None = None) -> tuple[float, int]:
        """NLL of `document` with `context` documents packed before it, each linked to it."""
        tokens, spans, edges = pack_with_context(document, context)
        return self.document_nll(tokens, spans, len(spans) - 1, edges, mode)

    def context_token_nll(self, document: Sequence[int], context: Sequence[Sequence[int]],
                          mode: str | None = None) -> Tensor:
        """Per-prediction NLL [len(document) - 1] of `document` after linked `context` documents."""
        tokens, spans, edges = pack_with_context(document, context)
        return self.document_token_nll(tokens, spans, len(spans) - 1, edges, mode)

    @staticmethod
    def perplexity(nll_sum: float, n_tokens: int) -> float:
        """exp(mean NLL); inf when nothing was scored."""
        return math.exp(nll_sum / n_tokens) if n_tokens else float("inf")

    @torch.no_grad()
    def generate(self, prompt: Sequence[int], context: Sequence[Sequence[int]] = (), max_new_tokens: int = 32,
                 temperature: float = 1.0, top_k: int | None = 50, seed: int = 0,
                 stop_token: int | None = None, mode: str | None = None) -> list[int]:
        """Continue `prompt`; linked neighbour documents in `context` are prefilled before it.

        The prompt document is linked to every context document, so under the graph mask it attends
        to them; under the doc mask they are invisible (a useful control). Sampling uses its own
        seeded generator; temperature 0 means greedy.
        """
        if not prompt:
            raise ValueError("prompt: must contain at least one token")
        tokens, spans, edges = pack_with_context(prompt, context)
        tokens = tokens.to(self.device).view(1, -1)
        edges = edges.to(self.device)
        mode = mode or self.config.mask
        doc_index = torch.tensor([[i for i, s in enumerate(spans) for _ in range(s[1])]], device=self.device)
        prompt_doc = len(spans) - 1
        cache = KVCache(self.config.n_layers)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        new_tokens: list[int] = []
        step_input, positions = tokens, torch.arange(tokens.shape[1], device=self.device)
        prompt_start = int(spans[-1][0]) if self.config.reset_positions else 0
        rope = self._positions(doc_index)
        rope = positions if rope is None else rope[0]
        for _ in range(max_new_tokens):
            mask = self._mask(mode, doc_index, edges, positions)
            hidden = self.model.norm(self.model.backbone(self.model.embed(step_input), mask, rope, cache))
            logits = (hidden[0, -1] @ self.model.output_weight.t()).float()
            next_token = _sample(logits, temperature, top_k, generator)
            new_tokens.append(next_token)
            if stop_token is not None and next_token == stop_token:
                break
            step_input = torch.tensor([[next_token]], device=self.device)
            positions = torch.tensor([doc_index.shape[1]], device=self.device)
            rope = positions - prompt_start
            doc_index = torch.cat((doc_index, torch.tensor([[prompt_doc]], device=self.device)), dim=1)
        return new_tokens


def pack_with_context(document: Sequence[int], context: Sequence[Sequence[int]]):
    """One pack [context..., document] with edges document -> each context doc.

    Returns (tokens [T], doc_spans [(start, length, -1, False)], edges [E, 3]).
    """
    spans, flat = [], []
    for doc in [*context, document]:
        spans.append((len(flat), len(doc), -1, False))
        flat.extend(int(t) for t in doc)
    last = len(spans) - 1
    edges = torch.tensor([[0, last, i] for i in range(last)], dtype=torch.long).view(-1, 3)
    return torch.tensor(flat, dtype=torch.long), spans, edges


def _sample(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> int:
    if temperature <= 0:
        return int(logits.argmax().item())
    logits = logits / temperature
    if top_k:
        threshold = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())
