"""CUDA-only checks of the FlexAttention training path; skipped cleanly without a GPU."""

import pytest
import torch
import torch.nn.functional as F

from models.graphlm import GraphLMConfig, GraphLMForTraining, dense_mask, make_mask_mod
from tests.fixtures import random_packed_batch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (FlexAttention backward)")]


@pytest.mark.parametrize("mode", ["doc", "graph"])
def test_flex_training_step_matches_dense_sdpa_on_cuda(mode):
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in random_packed_batch(2, 256, 97, seed=1).items()}
    losses, grads = {}, {}
    for impl in ("flex", "sdpa"):
        torch.manual_seed(0)
        config = GraphLMConfig.from_preset("tiny", vocab_size=97, mask=mode, attention_impl=impl)
        model = GraphLMForTraining(config).cuda()
        out = model(batch)
        out.loss.backward()
        losses[impl] = out.loss.detach()
        grads[impl] = model.embed.weight.grad.detach()
    torch.testing.assert_close(losses["flex"], losses["sdpa"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads["flex"], grads["sdpa"], atol=1e-4, rtol=1e-3)


def test_compiled_flex_attention_equals_dense_reference_on_cuda():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    batch = random_packed_batch(2, 512, 50, seed=2)
    doc_index, edges = batch["doc_index"].cuda(), batch["edges"].cuda()
    mask_mod = make_mask_mod("graph", doc_index, edges)
    q, k, v = (torch.randn(2, 4, 512, 64, device="cuda", requires_grad=True) for _ in range(3))
    block = create_block_mask(mask_mod, 2, None, 512, 512, device="cuda")
    out = torch.compile(flex_attention)(q, k, v, block_mask=block)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask(mask_mod, 2, torch.arange(512, device="cuda"), 512))
    torch.testing.assert_close(out, reference, atol=2e-3, rtol=2e-3)


def test_bf16_autocast_training_step_is_finite():
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in random_packed_batch(2, 256, 97, seed=3).items()}
    model = GraphLMForTraining(GraphLMConfig.from_preset("tiny", vocab_size=97, mask="graph")).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("num_workers", [0, 1])
def test_the_training_loader_pins_its_batches_on_cuda(tmp_path, num_workers):
    """Pinned host memory, so the trainer's non_blocking copies overlap with compute."""
    from stages.packing.config import PackingConfig
    from stages.packing.loader import PackLoader
    from tests.fixtures import write_markov_corpus

    graph, tokens = write_markov_corpus(tmp_path, n_docs=40, vocab=64, mean_length=40)
    cfg = PackingConfig(token_budget=64, batch_size=2, num_workers=num_workers)
    batch = next(iter(PackLoader.from_paths(graph, tokens, cfg, 0, pin_memory=True)))
    assert all(v.is_pinned() for v in batch.values() if torch.is_tensor(v))
