"""The `graph` artifact format: file names, the CSR build, the writer and the reader.

Layout of a graph artifact directory (node id = article id = index into `titles.json`):
- `titles.json`: the list of titles;
- `out_indptr.npy` (int64 [n+1]), `out_indices.npy` (int32): CSR of article -> linked article,
  neighbours sorted and unique, no self-links; `in_*.npy`: the same for the reversed edges;
- `graph.jsonl` (optional, for interop): `{"id", "title", "links"}` per node.

`GraphIndex` opens it memory-mapped, so memory stays O(edges) on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from stages.formats.articles import write_titles_json

TITLES_FILE = "titles.json"
JSONL_FILE = "graph.jsonl"
CSR_FILES = ("out_indptr.npy", "out_indices.npy", "in_indptr.npy", "in_indices.npy")
GRAPH_FILES = (TITLES_FILE, *CSR_FILES)
#: The undirected union (`both`), written by the graph stage so that every training process maps
#: it instead of building it (absent from older artifacts: then it is built on first use).
BOTH_FILES = ("both_indptr.npy", "both_indices.npy")


def build_csr(n_nodes: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr int64 [n+1], indices int32) of the edges src -> dst: neighbours sorted and
    unique, self-loops dropped. The one CSR construction of the project.

    Lean on memory (it runs over hundreds of millions of links): one int64 key per edge,
    sorted in place, and the row starts found by binary search, about 25 bytes per edge at
    the peak with int32 inputs."""
    src, dst = np.asarray(src), np.asarray(dst)
    keep = src != dst
    keys = src[keep].astype(np.int64)
    keys *= max(n_nodes, 1)
    keys += dst[keep]
    del keep
    keys.sort()
    if keys.size:
        first = np.empty(keys.size, bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        keys = keys[first]
        del first
    indptr = np.searchsorted(keys, np.arange(n_nodes + 1, dtype=np.int64) * max(n_nodes, 1))
    keys %= max(n_nodes, 1)
    return indptr.astype(np.int64), keys.astype(np.int32)


def csr_rows(indptr: np.ndarray) -> np.ndarray:
    """The source node of every CSR entry, i.e. the edge list's first column (int32 while
    node ids fit, which halves what the CSR builds that use it hold)."""
    dtype = np.int32 if len(indptr) - 1 < 2**31 else np.int64
    return np.repeat(np.arange(len(indptr) - 1, dtype=dtype), np.diff(indptr))


def write_graph_jsonl(path: Path, titles, indptr: np.ndarray, indices: np.ndarray, first: int = 0) -> None:
    """`graph.jsonl`: one `{"id", "title", "links"}` line per node, through a temporary name.
    `titles`: a list, or a `tables.StringTable` (read in chunks). With `first`, the CSR holds
    rows `first..first+len(indptr)-2` only (one range of a graph built in pieces): the lines of
    that range, to be joined in order with `concat_files`."""
    tmp = path.with_name(path.name + ".tmp")
    end = first + len(indptr) - 1
    with open(tmp, "w", encoding="utf-8") as out:
        for lo in range(first, end, _CHUNK):
            hi = min(lo + _CHUNK, end)
            for node, title in zip(range(lo, hi), _titles_slice(titles, lo, hi)):
                row = node - first
                links = indices[indptr[row]:indptr[row + 1]].tolist()
                out.write(json.dumps({"id": node, "title": title, "links": links}, ensure_ascii=False) + "\n")
    tmp.replace(path)


def concat_npy(path: Path, pieces: list[Path], dtype) -> int:
    """One 1-D `.npy` file (the bytes `np.save` writes for the whole array) from `.npy`
    pieces of `dtype`, joined in order by a streamed byte copy: O(1) memory however long it
    is. Through a temporary name; returns the length."""
    dtype = np.dtype(dtype)
    lengths = []
    for piece in pieces:
        array = np.load(piece, mmap_mode="r")
        if array.dtype != dtype or array.ndim != 1:
            raise ValueError(f"{piece}: {array.dtype} {array.shape}, expected 1-D {dtype}")
        lengths.append(len(array))
        del array
    total = int(sum(lengths))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        np.lib.format.write_array_header_1_0(
            out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total,)})
        for piece in pieces:
            with open(piece, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                (np.lib.format.read_array_header_1_0 if version == (1, 0)
                 else np.lib.format.read_array_header_2_0)(handle)
                shutil.copyfileobj(handle, out, 1 << 22)
    tmp.replace(path)
    return total


def concat_files(path: Path, pieces: list[Path]) -> None:
    """Join text pieces in order (a byte copy), through a temporary name."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        for piece in pieces:
            with open(piece, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    tmp.replace(path)


_CHUNK = 100_000


def _titles_slice(titles, lo: int, hi: int) -> list[str]:
    return titles.slice(lo, hi) if hasattr(titles, "slice") else titles[lo:hi]


def write_graph(path: Path, titles, src: np.ndarray, dst: np.ndarray,
                jsonl: bool = True) -> dict[str, np.ndarray]:
    """Write a graph artifact's files from an edge list (deduplicated, self-loops dropped).

    Returns the CSR arrays by name (`out_indptr`, ..., `both_indices`), for stats."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    n = len(titles)
    out_indptr, out_indices = build_csr(n, src, dst)
    in_indptr, in_indices = build_csr(n, dst, src)
    arrays = {"out_indptr": out_indptr, "out_indices": out_indices, "in_indptr": in_indptr, "in_indices": in_indices}
    arrays["both_indptr"], arrays["both_indices"] = _union((out_indptr, out_indices), (in_indptr, in_indices), n)
    write_titles_json(path / TITLES_FILE, titles)
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", array)
    if jsonl:
        write_graph_jsonl(path / JSONL_FILE, titles, out_indptr, out_indices)
    return arrays


def _require(path: Path, name: str) -> Path:
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"graph artifact {path} lacks {name}; point to a finished `graph` stage output")
    return file


def _union(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], n: int):
    """CSR whose row i is the sorted union of row i of `a` and of `b`."""
    src = np.concatenate([csr_rows(a[0]), csr_rows(b[0])])
    return build_csr(n, src, np.concatenate([a[1], b[1]]))


class GraphIndex:
    """Link graph as CSR arrays (out, in, and lazily their union `both`).

    `neighbors(node, direction)` is an O(1) zero-copy slice of the sorted neighbour ids.
    Arrays are memory-mapped when opened from an artifact, so memory stays O(edges) on disk.
    """

    def __init__(self, titles: list[str] | None, out_indptr, out_indices, in_indptr=None, in_indices=None,
                 path=None):
        out_indptr = np.asarray(out_indptr)
        n = len(titles) if titles is not None else len(out_indptr) - 1
        out_indices = np.asarray(out_indices)
        if out_indptr.shape != (n + 1,) or int(out_indptr[-1]) != len(out_indices):
            raise ValueError(
                f"graph: out_indptr has shape {out_indptr.shape} for {n} titles; rebuild the graph artifact"
            )
        if in_indptr is None:
            in_indptr, in_indices = build_csr(n, out_indices, csr_rows(out_indptr))
        in_indptr = np.asarray(in_indptr)
        in_indices = np.asarray(in_indices)
        if in_indptr.shape != (n + 1,) or int(in_indptr[-1]) != len(in_indices):
            raise ValueError(f"graph: in_indptr has shape {in_indptr.shape} for {n} titles; rebuild the graph artifact")
        self._titles = titles  # None: read from `path` on first use
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
        arrays = {name: np.load(files[name], mmap_mode="r") for name in GRAPH_FILES[1:]}
        graph = cls(
            None,  # titles: only when asked for (a list of millions of strings per process otherwise)
            arrays["out_indptr.npy"],
            arrays["out_indices.npy"],
            arrays["in_indptr.npy"],
            arrays["in_indices.npy"],
            path=path,
        )
        if all((path / name).is_file() for name in BOTH_FILES):
            graph._csr["both"] = tuple(np.load(path / name, mmap_mode="r") for name in BOTH_FILES)
        return graph

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

    @property
    def titles(self) -> list[str]:
        """Titles by node id, read from the artifact on first use."""
        if self._titles is None:
            self._titles = json.loads((self.path / TITLES_FILE).read_text(encoding="utf-8"))
        return self._titles

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
