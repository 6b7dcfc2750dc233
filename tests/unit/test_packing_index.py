"""GraphIndex and TokenStore against hand-written artifacts in the brief's formats."""

import json

import numpy as np
import pytest

from stages.formats.generators import GPT2_META, write_synthetic
from stages.formats.graph import GraphIndex, write_graph
from stages.formats.tokens import TokenStore, write_tokens

TITLES = ["A", "B", "C", "D", "E"]
# A->B, A->C, B->C, C->A, D->C ; E isolated
SRC = np.array([0, 0, 1, 2, 3, 0])
DST = np.array([1, 2, 2, 0, 2, 0])  # the trailing self-loop must be dropped


@pytest.fixture
def graph(tmp_path):
    write_graph(tmp_path / "g", TITLES, SRC, DST)
    return GraphIndex.open(tmp_path / "g")


def test_neighbours_out_in_both(graph):
    assert graph.neighbors(0, "out").tolist() == [1, 2]
    assert graph.neighbors(2, "out").tolist() == [0]
    assert graph.neighbors(2, "in").tolist() == [0, 1, 3]
    assert graph.neighbors(0, "both").tolist() == [1, 2]
    assert graph.neighbors(2, "both").tolist() == [0, 1, 3]
    assert graph.neighbors(4, "both").tolist() == []
    assert graph.num_edges == 5


def test_neighbours_are_views_not_copies(graph):
    row = graph.neighbors(0, "out")
    assert np.shares_memory(row, graph.csr("out")[1])


def test_titles_and_edges(graph):
    assert graph.id_of("C") == 2 and graph.title(3) == "D"
    with pytest.raises(KeyError, match="'Z' is not in the graph"):
        graph.id_of("Z")
    assert graph.has_edge(0, 1) and not graph.has_edge(1, 0) and not graph.has_edge(0, 0)


def test_in_csr_derived_when_absent(graph):
    rebuilt = GraphIndex(TITLES, *graph.csr("out"))
    for node in range(5):
        assert rebuilt.neighbors(node, "in").tolist() == graph.neighbors(node, "in").tolist()


def test_edges_within_groups(graph):
    # group 0 = [A, B, C], group 1 = [C, A, E]
    groups = np.array([0, 0, 0, 1, 1, 1])
    docs = np.array([0, 1, 2, 2, 0, 4])
    src, dst = graph.edges_within(groups, docs)
    pairs = sorted(zip(src.tolist(), dst.tolist()))
    assert pairs == [(0, 1), (0, 2), (1, 2), (2, 0), (3, 4), (4, 3)]


def test_graph_jsonl_matches_csr(tmp_path, graph):
    rows = [json.loads(line) for line in (tmp_path / "g" / "graph.jsonl").read_text().splitlines()]
    assert [r["links"] for r in rows] == [graph.neighbors(i).tolist() for i in range(5)]


def test_missing_graph_file_is_named(tmp_path):
    write_graph(tmp_path / "g", TITLES, SRC, DST)
    (tmp_path / "g" / "in_indices.npy").unlink()
    with pytest.raises(FileNotFoundError, match="in_indices.npy"):
        GraphIndex.open(tmp_path / "g")


def test_token_store_zero_copy_slices(tmp_path):
    docs = {0: np.arange(5), 2: np.arange(100, 103), 3: np.arange(7)}
    write_tokens(tmp_path / "t", docs, GPT2_META, shard_tokens=6)
    store = TokenStore.open(tmp_path / "t")
    assert store.num_docs == 3 and store.num_tokens == 15
    assert store.tokens(2).tolist() == [100, 101, 102]
    assert store.tokens(3).tolist() == list(range(7))  # lives in its own shard
    assert store.length(1) == 0 and store.length(99) == 0
    assert store.tokens(0).dtype == np.uint16
    assert np.shares_memory(store.tokens(0), store.shard_arrays()[0])
    with pytest.raises(KeyError, match="document 1 has no tokens"):
        store.tokens(1)
    store.close()
    assert store.shard_arrays() == []


def test_token_store_uint32_and_bad_meta(tmp_path):
    meta = {"name": "o200k_base", "dtype": "uint32", "n_vocab": 200019, "eot_token": 199999}
    write_tokens(tmp_path / "t", {0: np.array([150000, 7])}, meta=meta)
    store = TokenStore.open(tmp_path / "t")
    assert store.tokens(0).tolist() == [150000, 7] and store.eot_token == 199999
    meta_file = tmp_path / "t" / "tokenizer.json"
    meta_file.write_text(json.dumps({**meta, "dtype": "int8"}))
    with pytest.raises(ValueError, match="dtype 'int8'"):
        TokenStore.open(tmp_path / "t")


def test_token_store_rejects_index_past_shard_end(tmp_path):
    write_tokens(tmp_path / "t", {0: np.arange(4)}, GPT2_META)
    index = np.load(tmp_path / "t" / "index.npy")
    index["length"][0] = 10
    np.save(tmp_path / "t" / "index.npy", index)
    with pytest.raises(ValueError, match="past the end of its shard"):
        TokenStore.open(tmp_path / "t")


def test_synthetic_corpus_has_communities(tmp_path):
    art = write_synthetic(tmp_path, n_docs=400, n_communities=8, missing_fraction=0.1, seed=1)
    graph, store = GraphIndex.open(art.graph), TokenStore.open(art.tokens)
    out_indptr, out_indices = graph.csr("out")
    src = np.repeat(np.arange(400), np.diff(out_indptr))
    within = np.mean(art.community[src] == art.community[out_indices])
    assert within > 0.8
    assert 300 < store.num_docs < 400  # some documents have no tokens
    assert np.any(np.diff(out_indptr) == 0)  # dead ends exist
