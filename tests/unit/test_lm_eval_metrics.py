"""LM evaluation pieces: the closed held-out split, the copyable-token and fact-value masks,
mask-honest scoring (a doc-mask model ignores its context) and RoPE positions per document."""

import numpy as np
import pytest
import torch

from models.graphlm import GraphLMConfig, GraphLMForTraining
from models.graphlm.inference import positions_from_doc_index
from stages.formats.generators import GPT2_META, write_synthetic
from stages.formats.graph import GraphIndex, write_graph
from stages.formats.tokens import TokenStore, write_tokens
from stages.pretrain.data import split_documents
from stages.pretrain.lm_metrics import copyable_mask, value_mask
from stages.pretrain.vocab import CompactVocab
from tests.fixtures import random_packed_batch


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    art = write_synthetic(tmp_path_factory.mktemp("c"), n_docs=600, n_communities=12, mean_length=60,
                          missing_fraction=0.05, seed=3)
    return GraphIndex.open(art.graph), TokenStore.open(art.tokens)


@pytest.mark.parametrize("fraction", [0.01, 0.03, 0.1])
def test_closed_split_leaves_no_training_document_adjacent_to_a_heldout_one(corpus, fraction):
    graph, store = corpus
    split = split_documents(graph, store, fraction, "closed")
    train = set(split.train.tolist())
    assert len(split.heldout) > 0 and len(train) > 0
    assert not train & set(split.heldout.tolist()) and not train & set(split.buffer.tolist())
    for doc in split.heldout:
        linked = set(graph.neighbors(int(doc), "both").tolist())
        assert not linked & train, f"held-out {doc} is linked to training documents {linked & train}"
    # the per-document split does leak: some training document is adjacent to a held-out one
    leaky = split_documents(graph, store, fraction, "doc")
    assert any(set(graph.neighbors(int(d), "both").tolist()) & set(leaky.train.tolist()) for d in leaky.heldout)


def test_closed_split_never_holds_out_a_hub(tmp_path):
    # document 0 is a hub linked from everything; 1..39 form a ring
    n = 40
    src = np.array([*range(1, n), *range(1, n)])
    dst = np.array([0] * (n - 1) + [(i % (n - 1)) + 1 for i in range(1, n)])
    write_graph(tmp_path / "g", [f"d{i}" for i in range(n)], src, dst)
    write_tokens(tmp_path / "t", {i: np.full(5, i) for i in range(n)}, GPT2_META)
    graph, store = GraphIndex.open(tmp_path / "g"), TokenStore.open(tmp_path / "t")
    split = split_documents(graph, store, 0.45, "closed", hub_degree=4)
    assert 0 not in split.heldout.tolist()
    # the hub is buffered (held-out documents link to it), the ring neighbours too; the rest trains
    assert 0 in split.buffer.tolist()
    assert len(split.train) > 0 and split.sizes()["hub_degree"] == 4


def _brute_copyable(target, context, n):
    out = []
    for j in range(1, len(target)):
        gram = target[j - n + 1:j + 1] if j >= n - 1 else None
        hit = gram is not None and any(
            doc[i:i + n] == gram for doc in context for i in range(len(doc) - n + 1))
        out.append(hit)
    return np.array(out, dtype=bool)


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("seed", range(5))
def test_copyable_mask_matches_a_brute_force_count(n, seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 6, size=80).tolist()
    context = [rng.integers(0, 6, size=int(k)).tolist() for k in rng.integers(0, 60, size=3)]
    mask = copyable_mask(target, context, n)
    expected = _brute_copyable(target, context, n)
    assert mask.shape == (79,)
    assert (mask == expected).all() and mask.sum() == expected.sum()


def test_value_mask_marks_the_predictions_of_each_value_token():
    target = [9, 5, 1, 2, 7, 1, 2, 3]
    mask = value_mask(target, [[1, 2]])
    # token positions 2,3 and 5,6 -> prediction entries 1,2 and 4,5
    assert np.flatnonzero(mask).tolist() == [1, 2, 4, 5]


def _tiny(mask: str, reset_positions: bool = False, vocab: int = 64, smear_keys: bool = False) -> GraphLMForTraining:
    torch.manual_seed(0)
    config = GraphLMConfig(vocab_size=vocab, n_layers=2, d_model=32, n_heads=2, d_ff=64, mask=mask,
                           attention_impl="sdpa", reset_positions=reset_positions, smear_keys=smear_keys)
    return GraphLMForTraining.from_config(config).eval()


@pytest.mark.parametrize(("reset_positions", "smear_keys"), [(False, False), (True, False), (False, True)])
def test_doc_mask_scores_do_not_depend_on_the_context(reset_positions, smear_keys):
    # smeared keys blend only inside a document: the target's first key never sees the context's last
    infer = _tiny("doc", reset_positions, smear_keys=smear_keys).to_inference_model()
    target = list(range(3, 40))
    isolated = infer.context_token_nll(target, [])
    for context in ([[5, 6, 7] * 20], [list(range(10, 50)), [1, 2, 3, 4]]):
        with_context = infer.context_token_nll(target, context)
        torch.testing.assert_close(with_context, isolated, atol=1e-5, rtol=1e-5)
    # the graph mask does read the same context
    graph = _tiny("graph", reset_positions, smear_keys=smear_keys).to_inference_model()
    assert not torch.allclose(graph.context_token_nll(target, [list(range(10, 50))]), graph.context_token_nll(target, []))


def test_positions_restart_per_document():
    doc_index = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2, -1]])
    assert positions_from_doc_index(doc_index).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3, 0]]


@pytest.mark.parametrize("mask", ["causal", "graph"])
def test_reset_positions_is_honoured_and_changes_the_output(mask):
    batch = random_packed_batch(2, 64, 64, max_docs=4, edge_prob=1.0, pad_prob=0.0, seed=1)
    assert not torch.equal(batch["positions"], torch.arange(64).expand(2, 64))
    honoured, absolute = _tiny(mask, reset_positions=True), _tiny(mask, reset_positions=False)
    absolute.load_state_dict(honoured.state_dict())
    with torch.no_grad():
        assert honoured(batch).loss.item() != pytest.approx(absolute(batch).loss.item(), abs=1e-6)
        # and the model reads the batch's positions: absolute positions give the plain result
        plain = dict(batch, positions=torch.arange(64).expand(2, 64))
        assert honoured(plain).loss.item() == pytest.approx(absolute(batch).loss.item(), abs=1e-6)


def test_compact_vocab_round_trip(tmp_path):
    write_tokens(tmp_path / "t", {0: np.array([5, 900, 5, 7]), 1: np.array([7, 42])},
                 meta={"name": "toy", "dtype": "uint16", "n_vocab": 1000, "eot_token": 999})
    vocab = CompactVocab.from_store(TokenStore.open(tmp_path / "t"))
    assert vocab.table.tolist() == [5, 7, 42, 900, 999] and vocab.size == 6
    assert vocab.encode([5, 42, 6]).tolist() == [0, 2, vocab.unk]
    assert vocab.decode([0, 2, vocab.unk]) == [5, 42]
    batch = {"tokens": torch.tensor([[5, 7]]), "labels": torch.tensor([[7, -100]])}
    encoded = vocab.encode_batch(batch)
    assert encoded["tokens"].tolist() == [[0, 1]] and encoded["labels"].tolist() == [[1, -100]]
    vocab.save(tmp_path)
    assert CompactVocab.load(tmp_path, 1000).table.tolist() == vocab.table.tolist()
