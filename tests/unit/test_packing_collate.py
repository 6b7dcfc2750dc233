"""Collate: tokens, shifted labels, document index, positions, doc ids, edges and spans."""

import numpy as np
import pytest
import torch

from stages.formats.generators import write_synthetic
from stages.formats.graph import GraphIndex
from stages.formats.tokens import TokenStore
from stages.packing.collate import collate_packs
from stages.packing.config import PackingConfig
from stages.packing.sampler import PackSampler


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    art = write_synthetic(tmp_path_factory.mktemp("c"), n_docs=500, n_communities=10, mean_length=100, seed=11)
    return GraphIndex.open(art.graph), TokenStore.open(art.tokens)


def make_batch(corpus, batch_size=4, **overrides):
    graph, store = corpus
    cfg = PackingConfig(**{"token_budget": 300, "strategy": "random_walk", **overrides})
    sampler = PackSampler(graph, store, cfg, seed=0)
    packs = [sampler.next_pack() for _ in range(batch_size)]
    return packs, collate_packs(packs, store, graph, cfg.token_budget, cfg.reset_positions)


@pytest.mark.parametrize("layout", ["none", "bos_eos"])
@pytest.mark.parametrize("overflow", ["truncate", "skip", "split"])
def test_tokens_match_the_store(corpus, layout, overflow):
    store = corpus[1]
    eot = store.eot_token
    packs, batch = make_batch(corpus, layout=layout, overflow=overflow)
    tokens = batch["tokens"]
    assert tokens.dtype == torch.int64 and tokens.shape == (4, 300)
    for b, (pack, spans) in enumerate(zip(packs, batch["doc_spans"])):
        end = 0
        for (doc, offset, n, bos, eos, truncated), (start, length, doc_id, trunc) in zip(pack, spans):
            assert (doc_id, trunc, length) == (doc, truncated, n + bos + eos) and start == end
            row = tokens[b, start : start + length].numpy()
            assert (row[0] == eot) == bool(bos) and (row[-1] == eot) == bool(eos)
            np.testing.assert_array_equal(row[bos : bos + n], store.tokens(doc)[offset : offset + n])
            end = start + length
        assert (tokens[b, end:] == eot).all()


def test_labels_are_next_tokens_within_a_document(corpus):
    _, batch = make_batch(corpus, layout="bos_eos", overflow="skip")
    tokens, labels, doc_index = batch["tokens"], batch["labels"], batch["doc_index"]
    for b, spans in enumerate(batch["doc_spans"]):
        for start, length, _, _ in spans:
            last = start + length - 1
            assert torch.equal(labels[b, start:last], tokens[b, start + 1 : last + 1])
            assert labels[b, last] == -100  # never predict across a document boundary
        assert (labels[b, doc_index[b] < 0] == -100).all()
    assert labels[:, -1].eq(-100).all()


def test_doc_index_and_positions(corpus):
    _, batch = make_batch(corpus, reset_positions=True)
    _, plain = make_batch(corpus, reset_positions=False)
    for b, spans in enumerate(batch["doc_spans"]):
        for i, (start, length, _, _) in enumerate(spans):
            assert (batch["doc_index"][b, start : start + length] == i).all()
            assert batch["positions"][b, start : start + length].tolist() == list(range(length))
    assert (plain["positions"] == torch.arange(300)).all()


def test_doc_ids_and_edges(corpus):
    graph = corpus[0]
    _, batch = make_batch(corpus, batch_size=6)
    doc_ids = batch["doc_ids"]
    assert doc_ids.shape[1] == max(len(s) for s in batch["doc_spans"])
    for b, spans in enumerate(batch["doc_spans"]):
        assert doc_ids[b, : len(spans)].tolist() == [s[2] for s in spans]
        assert (doc_ids[b, len(spans) :] == -1).all()
    expected = {
        (b, i, j)
        for b, spans in enumerate(batch["doc_spans"])
        for i, si in enumerate(spans)
        for j, sj in enumerate(spans)
        if i != j and graph.has_edge(si[2], sj[2])
    }
    edges = batch["edges"]
    assert edges.dtype == torch.int64 and edges.shape[1] == 3
    assert {tuple(e) for e in edges.tolist()} == expected and len(expected) > 0


def test_a_batch_of_one_pack(corpus):
    _, batch = make_batch(corpus, batch_size=1)
    assert batch["tokens"].shape == (1, 300) and len(batch["doc_spans"]) == 1
