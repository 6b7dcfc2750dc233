"""GraphLM tiers: chunked CE, training module, inference model, KV-cached generation."""

import pytest
import torch
import torch.nn.functional as F

from models.graphlm import (
    GraphLMConfig,
    GraphLMForTraining,
    build_attention_mask,
    chunked_cross_entropy,
    pack_with_context,
)
from tests.fixtures import random_packed_batch

VOCAB = 97


def tiny(**overrides) -> GraphLMConfig:
    return GraphLMConfig.from_preset("tiny", vocab_size=VOCAB, d_model=32, n_heads=2, d_ff=64, **overrides)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_chunked_cross_entropy_equals_full(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(VOCAB, 16, requires_grad=True)
    labels = torch.randint(0, VOCAB, (50,))
    labels[::5] = -100
    loss = chunked_cross_entropy(hidden, weight, labels, chunk)
    loss.mul(3.0).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    reference = F.cross_entropy(hidden @ weight.t(), labels, ignore_index=-100)
    reference.mul(3.0).backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(grads[0], hidden.grad)
    torch.testing.assert_close(grads[1], weight.grad)
    with torch.no_grad():
        torch.testing.assert_close(chunked_cross_entropy(hidden, weight, labels, chunk), reference)


def test_chunked_cross_entropy_all_ignored_is_zero():
    hidden = torch.randn(4, 8, requires_grad=True)
    loss = chunked_cross_entropy(hidden, torch.randn(VOCAB, 8), torch.full((4,), -100), 2)
    loss.backward()
    assert loss.item() == 0.0 and hidden.grad.abs().sum().item() == 0.0


@pytest.mark.parametrize("mode", ["causal", "doc", "graph"])
@pytest.mark.parametrize("tied", [True, False])
def test_training_module_loss_matches_full_logits(mode, tied):
    torch.manual_seed(0)
    model = GraphLMForTraining.from_config(tiny(mask=mode, tie_embeddings=tied, ce_chunk_tokens=13))
    batch = random_packed_batch(2, 40, VOCAB, seed=1)
    out = model(batch)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    hidden = model.hidden_states(batch["tokens"], model.build_mask(batch))
    reference = F.cross_entropy((hidden @ model.output_weight.t()).flatten(0, 1), batch["labels"].flatten())
    torch.testing.assert_close(out.loss, reference)
    assert out.n_tokens == int((batch["labels"] != -100).sum())


def test_doc_mask_isolates_documents():
    # Under the doc mask, a document's logits must not depend on the documents before it.
    torch.manual_seed(0)
    infer = GraphLMForTraining.from_config(tiny(mask="doc")).to_inference_model()
    doc = torch.randint(0, VOCAB, (12,))
    alone = infer.forward_inference(doc, [[(0, 12, 0, False)]])
    context = torch.randint(0, VOCAB, (9,))
    packed = infer.forward_inference(torch.cat((context, doc)), [[(0, 9, 1, False), (9, 12, 0, False)]])
    torch.testing.assert_close(alone[0], packed[0, 9:], atol=1e-5, rtol=1e-4)
    # ... while the graph mask with a link does let the context in.
    tokens, spans, edges = pack_with_context(doc.tolist(), [context.tolist()])
    linked = infer.forward_inference(tokens, [spans], edges, mode="graph")
    assert not torch.allclose(alone[0], linked[0, 9:], atol=1e-4)


def test_inference_matches_training_hidden_states():
    torch.manual_seed(0)
    model = GraphLMForTraining.from_config(tiny(mask="graph"))
    batch = random_packed_batch(2, 30, VOCAB, seed=2)
    infer = model.to_inference_model()
    logits = infer.forward_inference(batch["tokens"], batch["doc_spans"], batch["edges"])
    with torch.no_grad():
        hidden = model.hidden_states(batch["tokens"], build_attention_mask("graph", batch["doc_index"], batch["edges"]))
    torch.testing.assert_close(logits, hidden @ model.output_weight.t(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("smear_keys", [False, True])
@pytest.mark.parametrize("mode", ["doc", "graph", "causal"])
def test_kv_cached_greedy_generation_equals_full_recompute(mode, smear_keys):
    torch.manual_seed(0)
    infer = GraphLMForTraining.from_config(tiny(mask=mode, smear_keys=smear_keys)).to_inference_model()
    prompt, context = [1, 2, 3, 4], [[5, 6, 7], [8, 9]]
    generated = infer.generate(prompt, context, max_new_tokens=6, temperature=0)
    sequence = list(prompt)
    for _ in range(6):
        tokens, spans, edges = pack_with_context(sequence, context)
        logits = infer.forward_inference(tokens, [spans], edges)
        sequence.append(int(logits[0, -1].argmax()))
    assert generated == sequence[len(prompt):]


def test_perplexity_in_context_and_sampling_is_seeded():
    torch.manual_seed(0)
    infer = GraphLMForTraining.from_config(tiny(mask="graph")).to_inference_model()
    nll, count = infer.context_nll([1, 2, 3, 4, 5], [[6, 7, 8]])
    assert count == 4 and 1.0 < infer.perplexity(nll, count) < 10 * VOCAB
    assert infer.generate([1, 2], seed=3, max_new_tokens=5) == infer.generate([1, 2], seed=3, max_new_tokens=5)


def test_config_validation_and_presets():
    # The field's own choices are checked where the config is resolved (the pretrain stage's
    # `model.mask`); validate() keeps the rules that span fields.
    with pytest.raises(ValueError, match="not divisible by n_heads=5"):
        GraphLMConfig(n_heads=5).validate()
    with pytest.raises(ValueError, match="even for rotary"):
        GraphLMConfig(d_model=12, n_heads=4).validate()
    assert GraphLMConfig.__dataclass_fields__["mask"].metadata["choices"] == ("causal", "doc", "graph")
    with pytest.raises(ValueError, match="preset"):
        GraphLMConfig.from_preset("huge")
    with torch.device("meta"):  # shapes only: 124M real parameters would be slow to initialise
        gpt2 = GraphLMForTraining.from_config(GraphLMConfig.from_preset("gpt2-small", vocab_size=50257))
    assert 120e6 < gpt2.num_parameters() < 128e6


def test_smeared_keys_are_wired_and_off_when_their_weight_is_zero():
    batch = random_packed_batch(2, 30, VOCAB, seed=3)
    torch.manual_seed(0)
    plain = GraphLMForTraining.from_config(tiny(mask="graph"))
    smeared = GraphLMForTraining.from_config(tiny(mask="graph", smear_keys=True))
    assert {name for name, _ in smeared.named_parameters()} - {name for name, _ in plain.named_parameters()} == {
        "backbone.layers.0.attn.smear", "backbone.layers.1.attn.smear"}
    smeared.load_state_dict(plain.state_dict(), strict=False)
    mask = build_attention_mask("graph", batch["doc_index"], batch["edges"])
    with torch.no_grad():
        hidden = plain.hidden_states(batch["tokens"], mask)
        assert not torch.allclose(smeared.hidden_states(batch["tokens"], mask), hidden)  # sigmoid(0) = 0.5
        for layer in smeared.backbone.layers:
            layer.attn.smear.fill_(-torch.inf)  # weight sigmoid(-inf) = 0: the plain model's keys
        torch.testing.assert_close(smeared.hidden_states(batch["tokens"], mask), hidden)
