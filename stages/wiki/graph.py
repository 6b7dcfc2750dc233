"""`graph`: the article link graph as CSR numpy arrays, `graph.jsonl` and stats.

Node id = article id (index into `titles.json`). Edges are article -> linked article, with
self-links, duplicates and links to titles that are not articles (dangling) dropped. Memory
is O(edges): links stream in shard by shard as int32 arrays, and titles are looked up in a
memory-mapped hash index (`tables.HashIndex`), not a Python dict.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from stages.core.artifacts import write_json_atomic
from stages.formats.articles import iter_articles, title_table
from stages.formats.graph import csr_rows, write_graph
from stages.formats.tables import HashIndex
from stages.wiki.config import GraphConfig


def weakly_connected_components(n_nodes: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Component label (smallest node id) per node: vectorized union-find.

    Each round hooks the larger root of every edge under the smaller one, then compresses
    paths fully; labels only decrease, so it terminates, in few O(edges) rounds.
    """
    parent = np.arange(n_nodes, dtype=np.int64)
    while True:
        a, b = parent[src], parent[dst]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        differ = lo != hi
        if not differ.any():
            return parent
        np.minimum.at(parent, hi[differ], lo[differ])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def degree_stats(indptr: np.ndarray, prefix: str, percentiles: list[int]) -> dict:
    degrees = np.diff(indptr)
    if degrees.size == 0:
        return {f"{prefix}_degree_max": 0, f"{prefix}_degree_mean": 0.0}
    stats = {f"{prefix}_degree_p{p}": round(float(np.percentile(degrees, p)), 3) for p in percentiles}
    stats[f"{prefix}_degree_max"] = int(degrees.max())
    stats[f"{prefix}_degree_mean"] = round(float(degrees.mean()), 3)
    return stats


_LOOKUP_BATCH = 1 << 16  # links looked up together


def _collect_edges(extract_dir: Path, titles: HashIndex) -> tuple[np.ndarray, np.ndarray, int]:
    srcs, dsts, dangling = [], [], 0
    batch_src: list[int] = []
    batch_links: list[str] = []

    def flush() -> None:
        nonlocal dangling
        targets = titles.find(batch_links)
        dangling += int((targets < 0).sum())
        keep = targets >= 0
        srcs.append(np.asarray(batch_src, dtype=np.int32)[keep])
        dsts.append(targets[keep].astype(np.int32))
        batch_src.clear()
        batch_links.clear()

    for article in iter_articles(extract_dir):
        batch_src.extend([article.id] * len(article.links))
        batch_links.extend(article.links)
        if len(batch_links) >= _LOOKUP_BATCH:
            flush()
    if batch_links:
        flush()
    if not srcs:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), 0
    return np.concatenate(srcs), np.concatenate(dsts), dangling


def run(cfg: GraphConfig, ctx) -> dict:
    """Build the graph of the upstream extract artifact into ctx.out_dir."""
    extract_dir = ctx.upstream["extract"].path
    titles = title_table(extract_dir)
    n = len(titles)
    scratch = ctx.out_dir / "_lookup"
    scratch.mkdir(exist_ok=True)
    src, dst, dangling = _collect_edges(extract_dir, HashIndex.build(titles, prefix=scratch / "titles"))
    shutil.rmtree(scratch)
    self_links = int((src == dst).sum())
    out = ctx.out_dir
    csr = write_graph(out, titles, src, dst)
    out_indptr, out_indices, in_indptr = csr["out_indptr"], csr["out_indices"], csr["in_indptr"]
    labels = weakly_connected_components(n, csr_rows(out_indptr), out_indices.astype(np.int64))
    sizes = np.bincount(np.unique(labels, return_inverse=True)[1]) if n else np.zeros(0, np.int64)
    stats = {
        "nodes": n,
        "edges": int(out_indices.size),
        "dangling": dangling,
        "self_links": self_links,
        "duplicate_links": int(src.size - self_links - out_indices.size),
        "components": int(sizes.size),
        "largest_component": int(sizes.max()) if sizes.size else 0,
        "isolated_nodes": int(((np.diff(out_indptr) == 0) & (np.diff(in_indptr) == 0)).sum()),
    }
    stats.update(degree_stats(out_indptr, "out", cfg.percentiles))
    stats.update(degree_stats(in_indptr, "in", cfg.percentiles))
    write_json_atomic(out / "stats.json", stats)
    ctx.record["graph_stats"] = stats
    ctx.log.info("graph: %(nodes)d nodes, %(edges)d edges, %(components)d components", stats)
    return stats
