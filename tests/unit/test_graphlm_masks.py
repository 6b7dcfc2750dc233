"""Attention masks: FlexAttention equals a dense SDPA reference; graph mask equals brute force."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from models.graphlm import build_attention_mask, dense_mask, make_mask_mod
from tests.fixtures import random_packed_batch


def brute_force_allowed(doc_index: torch.Tensor, edges: torch.Tensor, mode: str) -> torch.Tensor:
    """Reference [B, T, T] built with Python loops straight from the mask definitions."""
    batch, seq = doc_index.shape
    links = {(int(b), int(i), int(j)) for b, i, j in edges.tolist()}
    allowed = torch.zeros(batch, seq, seq, dtype=torch.bool)
    for b in range(batch):
        for q in range(seq):
            for k in range(q + 1):
                dq, dk = int(doc_index[b, q]), int(doc_index[b, k])
                linked = (b, dq, dk) in links or (b, dk, dq) in links
                earlier_linked = mode == "graph" and dq >= 0 and 0 <= dk < dq and linked
                allowed[b, q, k] = mode == "causal" or dq == dk or earlier_linked
    return allowed


@pytest.mark.parametrize("mode", ["causal", "doc", "graph"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_mod_matches_brute_force(mode, seed):
    batch = random_packed_batch(3, 48, 100, max_docs=5, seed=seed)
    mask_mod = make_mask_mod(mode, batch["doc_index"], batch["edges"])
    got = dense_mask(mask_mod, 3, torch.arange(48), 48)[:, 0]
    expected = brute_force_allowed(batch["doc_index"], batch["edges"], mode)
    assert torch.equal(got, expected)


def test_graph_mask_is_strictly_wider_than_doc_when_linked():
    batch = random_packed_batch(2, 64, 100, max_docs=5, edge_prob=1.0, pad_prob=0.0, seed=3)
    doc = dense_mask(make_mask_mod("doc", batch["doc_index"]), 2, torch.arange(64), 64)
    graph = dense_mask(make_mask_mod("graph", batch["doc_index"], batch["edges"]), 2, torch.arange(64), 64)
    assert bool((doc <= graph).all()) and int(graph.sum()) > int(doc.sum())


def test_edge_direction_does_not_matter_and_later_docs_stay_hidden():
    # Two docs: 0 = tokens 0..3, 1 = tokens 4..7; a single edge 0 -> 1 (earlier links to later).
    doc_index = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    forward = dense_mask(make_mask_mod("graph", doc_index, torch.tensor([[0, 0, 1]])), 1, torch.arange(8), 8)
    backward = dense_mask(make_mask_mod("graph", doc_index, torch.tensor([[0, 1, 0]])), 1, torch.arange(8), 8)
    assert torch.equal(forward, backward)
    assert bool(forward[0, 0, 5, :4].all())  # doc 1 sees all of linked earlier doc 0
    assert not bool(forward[0, 0, :4, 4:].any())  # doc 0 never sees the later doc 1


@pytest.mark.parametrize("mode", ["causal", "doc", "graph"])
def test_flex_attention_equals_dense_sdpa(mode):
    torch.manual_seed(0)
    batch_size, heads, seq, dim = 2, 2, 256, 16
    batch = random_packed_batch(batch_size, seq, 50, max_docs=6, seed=4)
    q, k, v = (torch.randn(batch_size, heads, seq, dim) for _ in range(3))
    mask_mod = make_mask_mod(mode, batch["doc_index"], batch["edges"])
    block = create_block_mask(mask_mod, batch_size, None, seq, seq, device="cpu")
    flex_out = flex_attention(q, k, v, block_mask=block)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask(mask_mod, batch_size, torch.arange(seq), seq))
    torch.testing.assert_close(flex_out, reference, atol=1e-5, rtol=1e-4)


def test_build_attention_mask_kernels():
    batch = random_packed_batch(1, 32, 50, seed=5)
    assert build_attention_mask("causal", batch["doc_index"], batch["edges"], "sdpa").kernel == "sdpa-causal"
    assert build_attention_mask("doc", batch["doc_index"], batch["edges"], "auto").kernel == "sdpa-dense"
    assert build_attention_mask("graph", batch["doc_index"], batch["edges"], "flex").kernel == "flex"
    with pytest.raises(ValueError, match="mask"):
        build_attention_mask("banana", batch["doc_index"])


def test_out_of_range_edges_are_rejected():
    with pytest.raises(ValueError, match="edges"):
        make_mask_mod("graph", torch.zeros(1, 4, dtype=torch.long), torch.tensor([[0, 0, -1]]))


def test_every_mask_mode_is_selectable_from_the_config():
    from models.graphlm.config import MASK_MODES as CONFIG_MASKS
    from models.graphlm.masks import MASK_MODES

    assert CONFIG_MASKS == tuple(MASK_MODES)
    with pytest.raises(ValueError, match="is not one of"):
        make_mask_mod("sliding", torch.zeros(1, 4, dtype=torch.long))


def test_graph_adjacency_keeps_one_shape_across_batches():
    """The compiled kernel is specialised on the captured adjacency's shape: it must not follow
    each batch's document count (that recompiled FlexAttention at almost every step)."""
    from models.graphlm.masks import MIN_ADJACENCY_SLOTS, adjacency_slots

    for n_docs in range(300):
        slots = adjacency_slots(n_docs)
        assert slots >= n_docs + 1 and slots & (slots - 1) == 0
        assert slots == MIN_ADJACENCY_SLOTS or slots < 2 * (n_docs + 1)
    shapes = set()
    for seed in range(6):
        batch = random_packed_batch(2, 64, 50, max_docs=6, seed=seed)
        mask_mod = make_mask_mod("graph", batch["doc_index"], batch["edges"])
        shapes |= {tuple(cell.cell_contents.shape) for cell in mask_mod.__closure__
                   if torch.is_tensor(cell.cell_contents) and cell.cell_contents.dim() == 3}
    assert shapes == {(2, MIN_ADJACENCY_SLOTS, MIN_ADJACENCY_SLOTS)}
