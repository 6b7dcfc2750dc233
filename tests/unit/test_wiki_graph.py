"""The graph stage: CSR arrays against a plain-Python reference, components, stats."""

import json

import numpy as np

from stages.core import config as config_lib
from stages.core.artifacts import load_artifact
from stages.core.runner import execute
from stages.formats.articles import iter_articles, read_titles
from stages.formats.graph import build_csr
from stages.wiki.components import weakly_connected_components
from stages.wiki.spec import EXTRACT, GRAPH


def run_chain(root, **extract_overrides):
    extract_overrides.setdefault("workers", 1)
    extract_overrides.setdefault("sample_articles", 60)
    ex = execute(EXTRACT, config_lib.resolve(EXTRACT.config_cls, extract_overrides), root, {})
    upstream = {"extract": load_artifact(root, "extract", ex.signature)}
    return ex, execute(GRAPH, config_lib.resolve(GRAPH.config_cls, {}), root, upstream)


def test_build_csr_sorts_dedupes_and_drops_self_loops():
    src = np.array([2, 0, 0, 0, 1, 2, 2], dtype=np.int32)
    dst = np.array([0, 2, 1, 2, 1, 0, 1], dtype=np.int32)
    indptr, indices = build_csr(4, src, dst)
    assert indptr.dtype == np.int64 and indices.dtype == np.int32
    assert indptr.tolist() == [0, 2, 2, 4, 4]
    assert indices.tolist() == [1, 2, 0, 1]


def test_components_match_a_breadth_first_search():
    rng = np.random.default_rng(0)
    n = 200
    src, dst = rng.integers(0, n, 150), rng.integers(0, n, 150)
    labels = weakly_connected_components(n, src, dst)
    neighbours = {i: set() for i in range(n)}
    for a, b in zip(src.tolist(), dst.tolist()):
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen, reference = set(), np.zeros(n, dtype=np.int64)
    for start in range(n):
        if start in seen:
            continue
        frontier, members = [start], {start}
        while frontier:
            node = frontier.pop()
            for nxt in neighbours[node] - members:
                members.add(nxt)
                frontier.append(nxt)
        seen |= members
        reference[list(members)] = min(members)
    assert labels.tolist() == reference.tolist()


def test_graph_artifact_matches_the_articles(tmp_path):
    ex, graph = run_chain(tmp_path)
    out = graph.artifact
    titles = read_titles(ex.artifact)
    assert json.loads((out / "titles.json").read_text()) == titles
    out_indptr, out_indices = np.load(out / "out_indptr.npy"), np.load(out / "out_indices.npy")
    in_indptr, in_indices = np.load(out / "in_indptr.npy"), np.load(out / "in_indices.npy")
    assert out_indptr.dtype == in_indptr.dtype == np.int64 and out_indices.dtype == np.int32
    ids = {t: i for i, t in enumerate(titles)}
    expected_out = {a.id: sorted({ids[t] for t in a.links if t in ids} - {a.id}) for a in iter_articles(ex.artifact)}
    jsonl = [json.loads(line) for line in (out / "graph.jsonl").read_text().splitlines()]
    for node in range(len(titles)):
        neighbours = out_indices[out_indptr[node]:out_indptr[node + 1]].tolist()
        assert neighbours == expected_out[node]
        assert jsonl[node] == {"id": node, "title": titles[node], "links": neighbours}
        incoming = in_indices[in_indptr[node]:in_indptr[node + 1]].tolist()
        assert incoming == sorted(s for s, targets in expected_out.items() if node in targets)
    stats = graph.metrics
    assert stats["nodes"] == 60 and stats["edges"] == out_indices.size
    assert stats["components"] == 1 and stats["dangling"] == 0
    assert stats["in_degree_max"] > stats["in_degree_p50"]  # hubs


def test_both_sample_formats_give_the_same_graph(tmp_path):
    _, xml = run_chain(tmp_path, sample_format="xml")
    _, cirrus = run_chain(tmp_path, sample_format="cirrus")
    for name in ("out_indptr", "out_indices", "in_indptr", "in_indices"):
        assert np.array_equal(np.load(xml.artifact / f"{name}.npy"), np.load(cirrus.artifact / f"{name}.npy"))
    assert (xml.artifact / "graph.jsonl").read_bytes() == (cirrus.artifact / "graph.jsonl").read_bytes()


def test_the_undirected_union_is_stored_and_mapped_not_rebuilt(tmp_path):
    from stages.formats.graph import GraphIndex

    _, graph = run_chain(tmp_path)
    opened = GraphIndex.open(graph.artifact)
    indptr, indices = opened.csr("both")
    assert isinstance(indices, np.memmap)  # read from the artifact, not built in this process
    out_p, out_i = opened.csr("out")
    in_p, in_i = opened.csr("in")
    for node in range(len(opened)):
        expected = sorted(set(out_i[out_p[node]:out_p[node + 1]].tolist()) | set(in_i[in_p[node]:in_p[node + 1]].tolist()))
        assert indices[indptr[node]:indptr[node + 1]].tolist() == expected
    assert opened._titles is None and opened.title(0) == read_titles(graph.artifact)[0]  # titles on first use


def test_build_csr_matches_a_python_reference_on_random_edges():
    rng = np.random.default_rng(3)
    n = 300
    src, dst = rng.integers(0, n, 5000).astype(np.int32), rng.integers(0, n, 5000).astype(np.int32)
    indptr, indices = build_csr(n, src, dst)
    rows = {i: sorted({int(d) for s, d in zip(src, dst) if s == i and d != i}) for i in range(n)}
    assert [indices[indptr[i]:indptr[i + 1]].tolist() for i in range(n)] == [rows[i] for i in range(n)]
