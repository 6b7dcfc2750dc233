"""Traversal strategies: each proposes what its definition says, and the registry is open."""

import random

import numpy as np
import pytest

from stages.formats.generators import write_synthetic
from stages.formats.graph import GraphIndex, write_graph
from stages.packing.strategies import (
    STRATEGIES,
    CompositeStrategy,
    StrategyMix,
    TraversalContext,
    make_strategy,
    parse_strategy,
    register_strategy,
)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    art = write_synthetic(tmp_path_factory.mktemp("g"), n_docs=300, n_communities=6, seed=3, jsonl=False)
    return GraphIndex.open(art.graph)


def ctx(graph, direction="out", restart=0.0, seed=0):
    return TraversalContext(graph, random.Random(seed), direction, restart)


def test_random_never_moves(graph):
    strategy = make_strategy(parse_strategy("random"), ctx(graph))
    strategy.start(5)
    assert strategy.propose() is None


@pytest.mark.parametrize("direction", ["out", "in", "both"])
def test_random_walk_follows_edges(graph, direction):
    strategy = make_strategy(parse_strategy("random_walk"), ctx(graph, direction))
    root = next(n for n in range(300) if graph.degree(n, direction) > 0)
    strategy.start(root)
    prev = root
    for _ in range(200):
        nxt = strategy.propose()
        # either a step along an edge, or (dead end) a step from the root
        assert nxt in graph.neighbors(prev, direction) or nxt in graph.neighbors(root, direction)
        prev = nxt


def test_random_walk_restarts_at_root(graph):
    strategy = make_strategy(parse_strategy("random_walk"), ctx(graph, "out", restart=0.5))
    root = int(np.argmax([graph.degree(n) for n in range(300)]))
    strategy.start(root)
    from_root = sum(strategy.propose() in set(graph.neighbors(root).tolist()) for _ in range(400))
    assert from_root > 150  # about half the steps restart from the root


def test_random_walk_dead_end(tmp_path):
    write_graph(tmp_path, ["a", "b", "c"], np.array([0]), np.array([1]))  # a->b, b dead end, c isolated
    g = GraphIndex.open(tmp_path)
    strategy = make_strategy(parse_strategy("random_walk"), ctx(g, "out"))
    strategy.start(0)
    assert [strategy.propose() for _ in range(4)] == [1, 1, 1, 1]  # dead end at b: back to a, then b
    strategy.start(2)
    assert strategy.propose() is None


def test_bfs_visits_by_depth_without_repeats(graph):
    strategy = make_strategy(parse_strategy("bfs"), ctx(graph, "both"))
    root = 0
    strategy.start(root)
    first_ring = set(graph.neighbors(root, "both").tolist())
    seen = []
    while (node := strategy.propose()) is not None:
        seen.append(node)
    assert len(seen) == len(set(seen)) and root not in seen
    assert set(seen[: len(first_ring)]) == first_ring
    depth = {root: 0}
    for node in seen:  # every node's depth is non-decreasing along the BFS order
        depth[node] = 1 + min(depth[p] for p in graph.neighbors(node, "both").tolist() if p in depth)
    depths = [depth[n] for n in seen]
    assert depths == sorted(depths)


def test_dfs_goes_deep_without_repeats(graph):
    strategy = make_strategy(parse_strategy("dfs"), ctx(graph, "both"))
    strategy.start(0)
    path, seen = [0], []
    while (node := strategy.propose()) is not None:
        # a DFS proposal is a neighbour of some node on the current path (after backtracking)
        while node not in set(graph.neighbors(path[-1], "both").tolist()):
            path.pop()
        path.append(node)
        seen.append(node)
    assert len(seen) == len(set(seen)) and len(seen) > 10


def test_composite_mixes_by_weight(graph):
    rng = random.Random(0)
    context = TraversalContext(graph, rng, "both", 0.0)
    strategy = make_strategy(parse_strategy("composite:random_walk=0.75,random=0.25"), context)
    assert isinstance(strategy, CompositeStrategy)
    strategy.start(next(n for n in range(300) if graph.degree(n, "both") > 0))
    nones = sum(strategy.propose() is None for _ in range(2000))
    assert 400 < nones < 600


def test_parse_strategy_and_errors():
    assert parse_strategy("bfs") == StrategyMix((("bfs", 1.0),), composite=False)
    assert parse_strategy("composite:random_walk=0.7, random=0.3").parts == (("random_walk", 0.7), ("random", 0.3))
    assert parse_strategy("composite:bfs,dfs") == StrategyMix((("bfs", 1.0), ("dfs", 1.0)), composite=True)
    assert parse_strategy("composite(random_walk=0.7,random=0.3)").parts == (("random_walk", 0.7), ("random", 0.3))
    with pytest.raises(ValueError, match="unknown 'walk'"):
        parse_strategy("walk")
    with pytest.raises(ValueError, match="unknown part 'nope'"):
        parse_strategy("composite:nope=1")
    with pytest.raises(ValueError, match="must be > 0"):
        parse_strategy("composite:bfs=0")
    with pytest.raises(ValueError, match="names no parts"):
        parse_strategy("composite:")
    with pytest.raises(ValueError, match="names no parts"):
        parse_strategy("composite(bfs")


def test_new_strategy_is_one_class_and_a_registry_entry(graph):
    @register_strategy("lowest_neighbour")
    class LowestNeighbour:
        def __init__(self, context):
            self.graph = context.graph

        def start(self, root):
            self.node = root

        def propose(self):
            row = self.graph.neighbors(self.node, "out")
            if len(row) == 0:
                return None
            self.node = int(row[0])
            return self.node

    try:
        strategy = make_strategy(parse_strategy("composite:lowest_neighbour=1"), ctx(graph))
        strategy.start(0)
        assert strategy.propose() == int(graph.neighbors(0)[0])
        with pytest.raises(ValueError, match="registered twice"):
            register_strategy("lowest_neighbour")(LowestNeighbour)
    finally:
        STRATEGIES.pop("lowest_neighbour")
