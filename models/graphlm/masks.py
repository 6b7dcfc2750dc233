"""Attention masks over packed documents, as FlexAttention `mask_mod` factories.

A pack holds several documents back to back. `doc_index[b, t]` is the index of the document that
token t of pack b belongs to (-1 = padding). Modes:

* causal: token q sees every earlier token of the pack.
* doc:    token q sees earlier tokens of its own document only.
* graph:  doc, plus every token of an EARLIER document of the pack that shares a link with q's
          document (either direction), from the pack's edge list rows (b, i, j).

Padding tokens form their own "document" so no query row is ever empty (SDPA would return NaN).
The mask is built once per batch (`build_attention_mask`) and shared by all layers: a FlexAttention
`BlockMask` for the flex kernel, or a dense boolean tensor evaluated from the very same mask_mod
for SDPA (FlexAttention has no backward on CPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

#: FlexAttention's default block edge: the granularity at which masked work is skipped.
DENSITY_BLOCK = 128


def causal_mask_mod() -> MaskMod:
    """Plain causal attention across the whole pack."""

    def causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return q_idx >= kv_idx

    return causal


def document_mask_mod(doc_index: Tensor) -> MaskMod:
    """Document-causal attention: same document and not in the future."""

    def document_causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (doc_index[b, q_idx] == doc_index[b, kv_idx]) & (q_idx >= kv_idx)

    return document_causal


def doc_adjacency(edges: Tensor, batch_size: int, n_docs: int) -> Tensor:
    """Symmetric per-pack document adjacency, bool [B, n_docs + 1, n_docs + 1].

    Slot 0 stands for padding (doc_index -1) and links to nothing; document i lives in slot i + 1.
    `edges` is int64 [E, 3] with rows (b, i, j): in pack b, doc i links to doc j.
    """
    adjacency = torch.zeros(batch_size, n_docs + 1, n_docs + 1, dtype=torch.bool, device=edges.device)
    if edges.numel():
        if edges.dim() != 2 or edges.shape[1] != 3:
            raise ValueError(f"edges: expected shape [E, 3] of (b, i, j) rows, got {tuple(edges.shape)}")
        # Indices are not range-checked here: reading them would stall the GPU every batch. The
        # collate builds them in range; an index past the table fails the scatter itself.
        b, i, j = edges[:, 0], edges[:, 1] + 1, edges[:, 2] + 1
        adjacency[b, i, j] = True
        adjacency[b, j, i] = True
    return adjacency


def graph_mask_mod(doc_index: Tensor, adjacency: Tensor) -> MaskMod:
    """Document-causal plus attention to earlier linked documents of the pack.

    `adjacency` comes from `doc_adjacency` (slot = doc index + 1). Because documents are laid out
    in order, "earlier document" is `doc(kv) < doc(q)`; padding (-1) never qualifies because q is
    a real document only when doc(q) >= 0 and then slot 0 has no links.
    """
    slots = doc_index + 1

    def graph_causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        q_doc = slots[b, q_idx]
        kv_doc = slots[b, kv_idx]
        same_doc = (q_doc == kv_doc) & (q_idx >= kv_idx)
        linked_earlier = (kv_doc < q_doc) & adjacency[b, q_doc, kv_doc]
        return same_doc | linked_earlier

    return graph_causal


#: Smallest number of document slots in a graph mask's adjacency (see `adjacency_slots`).
MIN_ADJACENCY_SLOTS = 64


def adjacency_slots(n_docs: int) -> int:
    """Document slots to allocate for a pack batch with `n_docs` documents: a power of two >= 64.

    The compiled FlexAttention kernel captures the adjacency tensor and is specialised on its
    shape; sizing it by the batch's exact document count recompiled the kernel at almost every
    step. Rounding up keeps one shape for all batches of up to 63 documents per pack.
    """
    return max(MIN_ADJACENCY_SLOTS, 1 << max(n_docs, 1).bit_length())


def _graph_mask_from_edges(doc_index: Tensor, edges: Tensor | None, n_docs: int | None) -> MaskMod:
    if n_docs is None:  # callers without the batch's host-side layout pay a device read here
        n_docs = int(doc_index.max().item()) + 1 if doc_index.numel() else 0
        if edges is not None and edges.numel():
            if int(edges[:, 1:].min().item()) < 0:
                raise ValueError("edges: negative document index in the edge list")
            n_docs = max(n_docs, int(edges[:, 1:].max().item()) + 1)
    empty = torch.zeros(0, 3, dtype=torch.long, device=doc_index.device)
    # doc_adjacency adds the padding slot: slots - 1 documents keep the total a power of two.
    adjacency = doc_adjacency(edges if edges is not None else empty, doc_index.shape[0],
                              adjacency_slots(n_docs) - 1)
    return graph_mask_mod(doc_index, adjacency)


#: Mask modes by name: builder(doc_index [B, T], edges [E, 3] or None, documents per pack or None)
#: -> mask_mod. Adding a mode is one entry here plus its name in `models.graphlm.config.MASK_MODES`
#: (kept free of torch imports for `--help`; a unit test keeps the two equal).
MASK_MODES: dict[str, Callable[[Tensor, Tensor | None, int | None], MaskMod]] = {
    "causal": lambda doc_index, edges, n_docs: causal_mask_mod(),
    "doc": lambda doc_index, edges, n_docs: document_mask_mod(doc_index),
    "graph": _graph_mask_from_edges,
}


def make_mask_mod(mode: str, doc_index: Tensor, edges: Tensor | None = None, n_docs: int | None = None) -> MaskMod:
    """The mask_mod for `mode` over one batch's document layout (and edges for `graph`).

    `n_docs` bounds the document indices of a pack (the collate's `doc_ids` width); without it the
    graph mode reads it from the tensors, which waits for the device.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask: {mode!r} is not one of {tuple(MASK_MODES)}")
    return MASK_MODES[mode](doc_index, edges, n_docs)


def dense_mask(mask_mod: MaskMod, batch_size: int, q_positions: Tensor, kv_len: int) -> Tensor:
    """Evaluate a mask_mod densely by broadcasting: bool [B, 1, len(q_positions), kv_len]."""
    device = q_positions.device
    b = torch.arange(batch_size, device=device).view(-1, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    q = q_positions.view(1, 1, -1, 1)
    kv = torch.arange(kv_len, device=device).view(1, 1, 1, -1)
    return mask_mod(b, h, q, kv).expand(batch_size, 1, q_positions.numel(), kv_len)


@dataclass
class AttentionMask:
    """One batch's attention pattern, shared by all layers.

    Exactly one representation is set, or none for plain causal (SDPA `is_causal`).
    """

    mode: str
    block_mask: BlockMask | None = None
    dense: Tensor | None = None
    #: bool [B, T_q]: the query's previous position is in the same document (smeared keys only
    #: blend keys inside a document, so a doc-mask model never sees its neighbour through them).
    continues: Tensor | None = None

    @property
    def kernel(self) -> str:
        if self.block_mask is not None:
            return "flex"
        return "sdpa-dense" if self.dense is not None else "sdpa-causal"

    def block_density(self, block: int = DENSITY_BLOCK) -> Tensor:
        """Share of the [T, T] score blocks the kernel computes, as a 0-dim tensor on the mask's
        device (no sync): the block mask's kept blocks, the dense mask's blocks with any kept
        entry, or the causal triangle's blocks. Model FLOPs utilisation counts attention with it."""
        if self.block_mask is not None:
            kept = self.block_mask.kv_num_blocks.sum()
            if self.block_mask.full_kv_num_blocks is not None:
                kept = kept + self.block_mask.full_kv_num_blocks.sum()
            rows, q_blocks = self.block_mask.kv_num_blocks.shape[:2], self.block_mask.kv_num_blocks.shape[-1]
            kv_blocks = -(-self.block_mask.seq_lengths[1] // self.block_mask.BLOCK_SIZE[1])
            return kept.float() / float(rows[0] * rows[1] * q_blocks * kv_blocks)
        if self.dense is not None:
            batch, heads, q_len, kv_len = self.dense.shape
            pad = (0, -kv_len % block, 0, -q_len % block)
            blocks = torch.nn.functional.pad(self.dense, pad).view(
                batch, heads, -(-q_len // block), block, -(-kv_len // block), block)
            return blocks.any(dim=5).any(dim=3).float().mean()
        n = -(-self.continues.shape[1] // block)
        return torch.tensor(n * (n + 1) / 2 / n**2, device=self.continues.device)


def document_continues(doc_index: Tensor, q_positions: Tensor) -> Tensor:
    """bool [B, len(q_positions)]: position q - 1 exists and belongs to q's document."""
    previous = (q_positions - 1).clamp(min=0)
    return (doc_index[:, q_positions] == doc_index[:, previous]) & (q_positions > 0)


def resolve_attention_impl(impl: str, device: torch.device) -> str:
    """`auto` -> flex on CUDA, sdpa elsewhere (FlexAttention cannot run backward on CPU)."""
    if impl == "auto":
        return "flex" if device.type == "cuda" else "sdpa"
    return impl


def build_attention_mask(
    mode: str, doc_index: Tensor, edges: Tensor | None = None, impl: str = "auto", n_docs: int | None = None
) -> AttentionMask:
    """Build the mask for one batch; `doc_index` is int64 [B, T], `edges` int64 [E, 3], `n_docs`
    the documents per pack when known on the host (see `make_mask_mod`).

    On CUDA the block mask is built compiled: eagerly it would materialise [B, 1, T, T] scores.
    """
    if doc_index.dim() != 2:
        raise ValueError(f"doc_index: expected [B, T], got shape {tuple(doc_index.shape)}")
    batch_size, seq_len = doc_index.shape
    positions = torch.arange(seq_len, device=doc_index.device)
    continues = document_continues(doc_index, positions)
    if mode == "causal":
        return AttentionMask(mode, continues=continues)
    mask_mod = make_mask_mod(mode, doc_index, edges, n_docs)
    if resolve_attention_impl(impl, doc_index.device) == "flex":
        block = create_block_mask(mask_mod, batch_size, None, seq_len, seq_len, device=doc_index.device,
                                  _compile=doc_index.device.type == "cuda")
        return AttentionMask(mode, block_mask=block, continues=continues)
    return AttentionMask(mode, dense=dense_mask(mask_mod, batch_size, positions, seq_len), continues=continues)
