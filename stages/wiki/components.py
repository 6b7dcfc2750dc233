"""The graph's whole-graph statistics in bounded memory: weakly connected components by
union-find over edge chunks, and degree percentiles from per-degree counts."""

from __future__ import annotations

import collections
import itertools

import numpy as np


def weakly_connected_components(n_nodes: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Component label (smallest node id) per node: vectorized union-find on edge arrays.

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
        parent = _compress(parent)


def _compress(parent: np.ndarray) -> np.ndarray:
    while True:
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            return parent
        parent = jumped


def _roots(parent: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The tree root of each node (pointer jumping on the chunk's nodes only)."""
    labels = parent[nodes]
    while True:
        up = parent[labels]
        if np.array_equal(up, labels):
            return labels
        labels = up


def weakly_connected_components_chunks(n_nodes: int, chunks) -> np.ndarray:
    """`weakly_connected_components` over edges that `chunks` yields as (src, dst) arrays, one
    bounded chunk at a time, in one pass: memory is the parent array (4 B per node while ids
    fit int32) plus one chunk, however many edges there are. Per chunk: the roots of both ends
    (pointer jumping), the larger root hooked under the smaller; where several edges hooked the
    same root, only the smallest hook holds, so the pairs still apart are re-rooted and hooked
    again until none is. After each chunk every edge seen joins one tree, and later hooks only
    merge trees, so one pass suffices; then full path compression in place."""
    dtype = np.int32 if n_nodes < 2**31 else np.int64
    parent = np.arange(n_nodes, dtype=dtype)
    for src, dst in chunks:
        a, b = _roots(parent, src.astype(dtype, copy=False)), _roots(parent, dst.astype(dtype, copy=False))
        while True:
            differ = a != b
            if not differ.any():
                break
            a, b = a[differ], b[differ]
            np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
            a, b = _roots(parent, a), _roots(parent, b)
        del a, b, differ
    _compress_in_place(parent)
    return parent


def _compress_in_place(parent: np.ndarray, step: int = 1 << 20) -> None:
    """Point every node at its root, a slice at a time in increasing ids: a parent is never
    above its node (roots are hooked under smaller roots), so the slices below are already
    compressed when a slice is, and one sweep suffices with O(step) temporaries."""
    for lo in range(0, len(parent), step):
        part = parent[lo:lo + step]
        while True:
            up = parent[part]
            if np.array_equal(up, part):
                break
            part = up
        parent[lo:lo + step] = part


def csr_chunks(indptr: np.ndarray, indices, chunk_edges: int, first: int = 0):
    """(src, dst) edge chunks of about `chunk_edges` edges of a CSR (rows `first...`); `indices`:
    an array, or a function (e0, e1) -> indices[e0:e1] (to read chunks of a file unmapped)."""
    for r0, r1 in itertools.pairwise(_chunk_rows(indptr, chunk_edges)):
        e0, e1 = int(indptr[r0]), int(indptr[r1])
        if e1 > e0:
            ids = np.arange(first + r0, first + r1, dtype=np.int32 if first + r1 < 2**31 else np.int64)
            src = np.repeat(ids, np.diff(np.asarray(indptr[r0:r1 + 1])))
            yield src, (indices(e0, e1) if callable(indices) else np.asarray(indices[e0:e1]))


def _chunk_rows(indptr: np.ndarray, chunk_edges: int) -> list[int]:
    """Row cuts 0 = c0 < c1 < ... = n with about `chunk_edges` edges between cuts (one row with
    more edges than that is a chunk alone)."""
    n = len(indptr) - 1
    total = int(indptr[-1]) if n else 0
    targets = np.arange(chunk_edges, total, chunk_edges, dtype=np.int64)
    cuts = np.searchsorted(np.asarray(indptr), targets, side="right") - 1
    return sorted({0, n, *[int(c) for c in cuts if 0 < c < n]})


class DegreeCounts:
    """How many nodes have each degree, added a range of nodes at a time: the degree statistics
    of the whole graph in memory of its distinct degrees (at most sqrt(2 x edges) of them)."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()

    def add(self, degrees: np.ndarray) -> None:
        values, counts = np.unique(degrees, return_counts=True)
        self.counts.update(dict(zip(values.tolist(), counts.tolist())))

    def stats(self, prefix: str, percentiles: list[int]) -> dict:
        """Percentiles (as `np.percentile`'s default linear method gives them), max and mean."""
        if not self.counts:
            return {f"{prefix}_degree_max": 0, f"{prefix}_degree_mean": 0.0}
        values = np.array(sorted(self.counts), np.int64)
        cumulative = np.cumsum([self.counts[v] for v in values.tolist()])
        total = int(cumulative[-1])
        stats = {f"{prefix}_degree_p{p}": round(float(_percentile(values, cumulative, p)), 3) for p in percentiles}
        stats[f"{prefix}_degree_max"] = int(values[-1])
        stats[f"{prefix}_degree_mean"] = round(float(values @ np.diff(cumulative, prepend=0)) / total, 3)
        return stats


def _percentile(values: np.ndarray, cumulative: np.ndarray, p: float):
    """`np.percentile(a, p)` of the sorted array that holds `values` with these cumulative
    counts, by the same float steps as numpy's linear method (`_compute_virtual_index`, then
    `_lerp`), so that the stats are the same bytes as from the array itself."""
    total = int(cumulative[-1])
    q = np.true_divide(p, 100)
    virtual = total * q + (1 + q * (1 - 1 - 1)) - 1
    if virtual >= total - 1:  # numpy takes the last value for both neighbours
        return float(values[-1])
    previous = np.floor(virtual)  # virtual >= 0: q >= 0 and total >= 1
    gamma = virtual - previous
    previous = int(previous)
    a, b = (values[np.searchsorted(cumulative, i, side="right")] for i in (previous, previous + 1))
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
