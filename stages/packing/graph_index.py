"""Read-only access to the link graph artifact: title <-> id and CSR neighbour slices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GRAPH_FILES = ("titles.json", "out_indptr.npy", "out_indices.npy", "in_indptr.npy", "in_indices.npy")


def _require(path: Path, name: str) -> Path:
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"graph artifact {path} lacks {name}; point to a finished `graph` stage output")
    return file


def _transpose(indptr: np.ndarray, indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the reversed edges, neighbours sorted."""
    src = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    order = np.lexsort((src, indices))
    t_indices = src[order].astype(np.int32)
    t_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=n), out=t_indptr[1:])
    return t_indptr, t_indices


def _union(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], n: int):
    """CSR whose row i is the sorted union of row i of `a` and of `b`."""
    rows = [np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr)) for indptr, _ in (a, b)]
    keys = np.concatenate([rows[0] * n + a[1], rows[1] * n + b[1]])
    keys = np.unique(keys)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n, minlength=n), out=indptr[1:])
    return indptr, (keys % n).astype(np.int32)


class GraphIndex:
    """Link graph as CSR arrays (out, in, and lazily their union `both`).

    `neighbors(node, direction)` is an O(1) zero-copy slice of the sorted neighbour ids.
    Arrays are memory-mapped when opened from an artifact, so memory stays O(edges) on disk.
    """

    def __init__(self, titles: list[str], out_indptr, out_indices, in_indptr=None, in_indices=None, path=None):
        n = len(titles)
        out_indptr = np.asarray(out_indptr)
        out_indices = np.asarray(out_indices)
        if out_indptr.shape != (n + 1,) or int(out_indptr[-1]) != len(out_indices):
            raise ValueError(
                f"graph: out_indptr has shape {out_indptr.shape} for {n} titles; rebuild the graph artifact"
            )
        if in_indptr is None:
            in_indptr, in_indices = _transpose(out_indptr, out_indices, n)
        in_indptr = np.asarray(in_indptr)
        in_indices = np.asarray(in_indices)
        if in_indptr.shape != (n + 1,) or int(in_indptr[-1]) != len(in_indices):
            raise ValueError(f"graph: in_indptr has shape {in_indptr.shape} for {n} titles; rebuild the graph artifact")
        self.titles = titles
        self.num_nodes = n
        self.path = Path(path) if path is not None else None
        self._csr = {"out": (out_indptr, out_indices), "in": (in_indptr, in_indices)}
        self._title_to_id: dict[str, int] | None = None

    @classmethod
    def open(cls, path) -> GraphIndex:
        """Open a `graph` stage artifact directory (CSR arrays memory-mapped)."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"graph artifact directory {path} does not exist; run the `graph` stage first")
        files = {name: _require(path, name) for name in GRAPH_FILES}
        titles = json.loads(files["titles.json"].read_text())
        arrays = {name: np.load(files[name], mmap_mode="r") for name in GRAPH_FILES[1:]}
        return cls(
            titles,
            arrays["out_indptr.npy"],
            arrays["out_indices.npy"],
            arrays["in_indptr.npy"],
            arrays["in_indices.npy"],
            path=path,
        )

    def __reduce__(self):
        # Re-open from disk in worker processes instead of pickling the arrays.
        if self.path is None:
            return (GraphIndex, (self.titles, *self._csr["out"], *self._csr["in"]))
        return (GraphIndex.open, (self.path,))

    def __len__(self) -> int:
        return self.num_nodes

    @property
    def num_edges(self) -> int:
        return len(self._csr["out"][1])

    def csr(self, direction: str = "out") -> tuple[np.ndarray, np.ndarray]:
        """(indptr, indices) for `out`, `in` or `both` (the union, built on first use)."""
        if direction not in self._csr:
            if direction != "both":
                raise ValueError(f"direction: {direction!r} is not one of out, in, both")
            self._csr["both"] = _union(self._csr["out"], self._csr["in"], self.num_nodes)
        return self._csr[direction]

    def neighbors(self, node: int, direction: str = "out") -> np.ndarray:
        """Sorted neighbour ids of `node` (a view into the CSR array)."""
        indptr, indices = self.csr(direction)
        return indices[indptr[node] : indptr[node + 1]]

    def degree(self, node: int, direction: str = "out") -> int:
        indptr, _ = self.csr(direction)
        return int(indptr[node + 1] - indptr[node])

    def has_edge(self, src: int, dst: int) -> bool:
        """True if article `src` links to article `dst`."""
        row = self.neighbors(src, "out")
        pos = int(np.searchsorted(row, dst))
        return pos < len(row) and int(row[pos]) == dst

    def title(self, node: int) -> str:
        return self.titles[node]

    def id_of(self, title: str) -> int:
        """Node id of an exact (normalized) title; KeyError naming the title if absent."""
        if self._title_to_id is None:
            self._title_to_id = {t: i for i, t in enumerate(self.titles)}
        try:
            return self._title_to_id[title]
        except KeyError:
            raise KeyError(f"title {title!r} is not in the graph ({self.num_nodes} articles)") from None

    def edges_within(self, group_of_doc: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Links among documents of the same group, vectorized over all groups at once.

        `docs[k]` is a document id and `group_of_doc[k]` its group (e.g. its pack). Returns
        (src_pos, dst_pos): positions k -> k' in `docs` such that docs[k] links to docs[k']
        and both are in the same group. Self-links and links across groups are excluded.
        """
        docs = np.asarray(docs, dtype=np.int64)
        group_of_doc = np.asarray(group_of_doc, dtype=np.int64)
        indptr, indices = self._csr["out"]
        starts = np.asarray(indptr[docs], dtype=np.int64)
        lengths = np.asarray(indptr[docs + 1], dtype=np.int64) - starts
        total = int(lengths.sum())
        if total == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        row = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        first = np.cumsum(lengths) - lengths
        flat = np.arange(total, dtype=np.int64) - np.repeat(first - starts, lengths)
        targets = np.asarray(indices[flat], dtype=np.int64)
        # Key (group, doc) identifies a document inside a group; look the targets up.
        span = self.num_nodes
        keys = group_of_doc * span + docs
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        wanted = group_of_doc[row] * span + targets
        pos = np.searchsorted(sorted_keys, wanted)
        pos_clipped = np.minimum(pos, len(sorted_keys) - 1)
        hit = sorted_keys[pos_clipped] == wanted
        src = row[hit]
        dst = order[pos_clipped[hit]]
        keep = src != dst
        return src[keep], dst[keep]
