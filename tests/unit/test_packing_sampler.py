"""Pack sampler: dedup, budgets, overflow policies, order modes, layouts, epochs, held-out docs."""

import dataclasses
import itertools

import numpy as np
import pytest

from stages.core.config import ConfigError, resolve
from stages.formats.generators import GPT2_META, write_synthetic
from stages.formats.graph import GraphIndex, write_graph
from stages.formats.tokens import TokenStore, write_tokens
from stages.packing.config import PackingConfig
from stages.packing.sampler import PackSampler, allowed_mask

STRATEGIES = ["random", "random_walk", "bfs", "dfs", "composite:random_walk=0.6,bfs=0.2,random=0.2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    art = write_synthetic(
        tmp_path_factory.mktemp("c"), n_docs=600, n_communities=12, mean_length=120, missing_fraction=0.05, seed=7
    )
    return GraphIndex.open(art.graph), TokenStore.open(art.tokens)


def sampler(corpus, stream=0, num_streams=1, mask=None, seed=0, **overrides):
    graph, store = corpus
    cfg = PackingConfig(**{"token_budget": 512, **overrides})
    cfg.validate()
    return PackSampler(graph, store, cfg, seed, stream, num_streams, mask)


def used(pack):
    return sum(n + bos + eos for _, _, n, bos, eos, _ in pack)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("overflow", ["truncate", "skip", "split"])
def test_no_duplicates_and_within_budget(corpus, strategy, overflow):
    s = sampler(corpus, strategy=strategy, overflow=overflow)
    packs = [s.next_pack() for _ in range(60)]
    for pack in packs:
        docs = [seg[0] for seg in pack]
        assert len(docs) == len(set(docs))
        assert 0 < used(pack) <= 512
    fill = np.mean([used(p) / 512 for p in packs])
    if overflow in ("truncate", "split"):
        assert fill >= 0.99
    else:
        assert fill > 0.7  # skip leaves room it cannot fill


@pytest.mark.parametrize("layout", ["none", "bos_eos"])
def test_doc_budget_caps_content(corpus, layout):
    s = sampler(corpus, strategy="random_walk", doc_budget=40, layout=layout)
    lengths = corpus[1].lengths
    for _ in range(40):
        for doc, offset, n, bos, eos, truncated in s.next_pack():
            assert n <= 40
            if lengths[doc] > 40:
                assert truncated and not eos  # a capped document does not end, so no EOS


def test_layouts_decorate_whole_documents_only(corpus):
    lengths = corpus[1].lengths
    plain = sampler(corpus, layout="none", strategy="bfs")
    for _ in range(20):
        assert all(bos == 0 and eos == 0 for _, _, _, bos, eos, _ in plain.next_pack())
    decorated = sampler(corpus, layout="bos_eos", strategy="bfs")
    for _ in range(20):
        for doc, offset, n, bos, eos, truncated in decorated.next_pack():
            assert bos == (offset == 0)
            assert eos == (offset + n == lengths[doc])
            assert truncated == (offset + n < lengths[doc] or offset > 0)


def test_truncate_keeps_a_prefix(corpus):
    s = sampler(corpus, overflow="truncate", strategy="random_walk")
    for _ in range(30):
        for doc, offset, n, _, _, truncated in s.next_pack():
            assert offset == 0
            assert truncated == (n < corpus[1].lengths[doc])


def test_skip_never_truncates_a_fitting_document(corpus):
    s = sampler(corpus, overflow="skip", strategy="random_walk")
    for _ in range(60):
        pack = s.next_pack()
        for k, (doc, offset, n, bos, eos, truncated) in enumerate(pack):
            if truncated:  # only a pack-opening document longer than the whole pack
                assert k == 0 and corpus[1].lengths[doc] + 2 > 512


def test_skip_defers_a_start_point_to_the_next_pack(corpus):
    s = sampler(corpus, overflow="skip", strategy="random")
    for _ in range(40):
        s.next_pack()
        if s.pending is not None:
            deferred = s.pending[0]
            assert s.next_pack()[0][0] == deferred
            return
    pytest.fail("no start point was deferred in 40 packs")


def test_split_continues_the_remainder_in_the_next_pack(corpus):
    s = sampler(corpus, overflow="split", strategy="dfs", token_budget=256)
    lengths = corpus[1].lengths
    prev = s.next_pack()
    continued = 0
    for _ in range(80):
        pack = s.next_pack()
        doc, offset, n, *_ = prev[-1]
        if offset + n < lengths[doc]:  # split: the next pack opens with the rest
            first = pack[0]
            assert first[0] == doc and first[1] == offset + n and first[3] == 0
            continued += 1
        else:
            assert pack[0][1] == 0
        prev = pack
    assert continued > 20


def chain_corpus(tmp_path, src, dst, n=4, length=10):
    write_graph(tmp_path / "g", [f"n{i}" for i in range(n)], np.array(src), np.array(dst))
    write_tokens(tmp_path / "t", {i: np.full(length, i) for i in range(n)}, GPT2_META)
    return GraphIndex.open(tmp_path / "g"), TokenStore.open(tmp_path / "t")


@pytest.mark.parametrize("seed", range(4))
def test_prefer_targets_first_puts_link_targets_first(tmp_path, seed):
    corpus = chain_corpus(tmp_path, [0, 1, 2, 0], [1, 2, 3, 3])  # a DAG: 0->1->2->3, 0->3
    traversed = sampler(corpus, strategy="bfs", walk_direction="out", token_budget=100, seed=seed).next_pack()
    assert sorted(seg[0] for seg in traversed) == [0, 1, 2, 3]
    ordered = sampler(
        corpus, strategy="bfs", walk_direction="out", token_budget=100, seed=seed, order_mode="prefer_targets_first"
    ).next_pack()
    assert [seg[0] for seg in ordered] == [3, 2, 1, 0]


def test_prefer_targets_first_is_stable_and_breaks_cycles(tmp_path):
    corpus = chain_corpus(tmp_path, [0, 1, 2], [1, 0, 0], n=5)  # 0<->1 cycle, 2->0, 3 and 4 unlinked
    s = sampler(corpus, strategy="random", token_budget=200, order_mode="prefer_targets_first", seed=1)
    plain = sampler(corpus, strategy="random", token_budget=200, seed=1).next_pack()
    order = [seg[0] for seg in s.next_pack()]
    assert sorted(order) == [0, 1, 2, 3, 4]
    assert order.index(0) < order.index(2)
    unlinked = [d for d in (seg[0] for seg in plain) if d in (3, 4)]
    assert [d for d in order if d in (3, 4)] == unlinked  # unconstrained documents keep their order


def test_prefer_targets_first_keeps_split_pieces_at_the_ends(corpus):
    s = sampler(corpus, overflow="split", order_mode="prefer_targets_first", strategy="random_walk", token_budget=256)
    lengths = corpus[1].lengths
    prev = s.next_pack()
    for _ in range(60):
        pack = s.next_pack()
        for k, (doc, offset, n, *_rest) in enumerate(pack):
            if offset > 0:
                assert k == 0
            if offset + n < lengths[doc] and s.cfg.doc_budget == 0:
                assert k == len(pack) - 1
        prev = pack
    assert prev


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_epoch_makes_every_document_a_start_point(corpus, strategy):
    graph, store = corpus
    mask = allowed_mask(graph, store)
    streams = [sampler(corpus, stream=k, num_streams=3, strategy=strategy, overflow="skip") for k in range(3)]
    starts = [s.epoch_starts(0) for s in streams]
    joined = np.concatenate(starts)
    assert len(joined) == len(set(joined.tolist())) == mask.sum()  # disjoint, complete
    for s in streams:
        seen = set()
        while s.epoch == 0:
            seen.update(seg[0] for seg in s.next_pack())
        assert set(s.epoch_starts(0).tolist()) <= seen
    assert streams[0].epoch_progress < 1.0


def test_random_strategy_is_a_shuffled_concatenation(corpus):
    s = sampler(corpus, strategy="random", token_budget=2048)
    order = []
    while s.epoch == 0:
        order.extend(seg[0] for seg in s.next_pack())
    expected = s.epoch_starts(0).tolist()
    assert order[: len(expected)] == expected


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_held_out_documents_never_appear(corpus, strategy):
    graph, store = corpus
    train = np.arange(0, graph.num_nodes, 3)
    mask = allowed_mask(graph, store, train)
    s = sampler(corpus, strategy=strategy, mask=mask)
    for _ in range(50):
        assert all(seg[0] % 3 == 0 for seg in s.next_pack())


@pytest.mark.parametrize(
    ("strategy", "low", "high"),
    [("random", 0.0, 0.05), ("random_walk", 0.5, 1.0), ("bfs", 0.25, 1.0), ("dfs", 0.5, 1.0)],
)
def test_adjacent_documents_are_linked_for_graph_strategies(corpus, strategy, low, high):
    graph = corpus[0]
    s = sampler(corpus, strategy=strategy)
    linked = pairs = 0
    for _ in range(100):
        docs = [seg[0] for seg in s.next_pack()]
        for a, b in itertools.pairwise(docs):
            pairs += 1
            linked += graph.has_edge(a, b) or graph.has_edge(b, a)
    assert low <= linked / pairs <= high


def test_state_round_trip_continues_identically(corpus):
    a = sampler(corpus, strategy="composite:random_walk=0.5,dfs=0.5", overflow="split")
    for _ in range(7):
        a.next_pack()
    state = a.state_dict()
    expected = [a.next_pack() for _ in range(10)]
    b = sampler(corpus, strategy="composite:random_walk=0.5,dfs=0.5", overflow="split")
    b.load_state_dict(state)
    assert [b.next_pack() for _ in range(10)] == expected
    wrong = sampler(corpus, stream=1, num_streams=2)
    with pytest.raises(ValueError, match="stream 0/1"):
        wrong.load_state_dict(state)


def test_config_validation_messages():
    # The rule that spans fields stays in validate(); a field's own range is declared on its knob.
    with pytest.raises(ValueError, match="token_budget: 2 is too small for layout=bos_eos"):
        PackingConfig(token_budget=2).validate()
    with pytest.raises(ValueError, match="unknown 'walker'"):
        PackingConfig(strategy="walker").validate()
    for key, value, message in (("restart_prob", "1.0", "must be < 1.0"), ("token_budget", "1", "must be >= 2"),
                                ("batch_size", "0", "must be >= 1"), ("num_workers", "-1", "must be >= 0"),
                                ("doc_budget", "-1", "must be >= 0")):
        with pytest.raises(ConfigError, match=f"`{key}`: .*{message}"):
            resolve(PackingConfig, {key: value})
    assert dataclasses.asdict(PackingConfig())["strategy"] == "random_walk"


def test_prefer_targets_first_reorders_a_linked_two_document_pack(tmp_path):
    corpus = chain_corpus(tmp_path, [0], [1], n=2)  # 0 -> 1, room for both documents
    traversed = sampler(corpus, strategy="bfs", walk_direction="out", token_budget=30, seed=0).next_pack()
    assert [seg[0] for seg in traversed] == [0, 1]
    ordered = sampler(corpus, strategy="bfs", walk_direction="out", token_budget=30, seed=0,
                      order_mode="prefer_targets_first").next_pack()
    assert [seg[0] for seg in ordered] == [1, 0]
