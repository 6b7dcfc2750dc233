"""`graph`: the article link graph as CSR numpy arrays, `graph.jsonl` and stats.

Node id = article id (index into `titles.json`). Edges are article -> linked article, with
self-links, duplicates and links to titles that are not articles (dangling) dropped.

Built like `extract`, over ranks x worker processes, with working memory bounded by `memory_mb`
per process whatever the number of links (what still grows is O(nodes): the mapped title index,
~40 B per title, and rank 0's per-node arrays at the commit), and an artifact that depends on
neither the world size, the workers nor `memory_mb`:
1. lookup (rank 0): a hash index over the extract artifact's `titles.txt` (`tables.HashIndex`,
   16 B per title on disk), written once under the partial directory; every process maps it.
2. map: the units are the extract artifact's article shards; rank r takes the shards
   `s % world_size == r`, its workers one shard each. A worker resolves the links into
   (source id, target id) pairs and writes them as sorted runs of int64 keys, `src * n + dst`
   (out) and `dst * n + src` (in), each run deduplicated, at most `memory_mb` of links each.
3. reduce: the node ids are cut into ranges whose edges fit `memory_mb` (counted on the runs,
   so every rank computes the same cut); rank r takes the ranges `p % world_size == r`. A
   worker reads its slice of every run (binary search on the mapped run), sorts and
   deduplicates them, and writes that range's out-, in- and undirected (`both`) rows and its
   `graph.jsonl` lines.
4. commit (rank 0): the range pieces are joined into the artifact's files by a byte copy,
   the weakly connected components are found by union-find over the out-CSR read back in chunks
   (`weakly_connected_components_csr`), and the stats are written.
All scratch ("spill") files live in `_work/` under the partial directory and are removed
before the commit; a crash leaves them there for a relaunch, which redoes only the units and
ranges without a completion marker (`force=true` discards them with the partial directory).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

import numpy as np

from stages.core.artifacts import write_json_atomic
from stages.formats.articles import iter_shard, read_titles, shard_paths, write_titles_json
from stages.formats.graph import (
    JSONL_FILE,
    TITLES_FILE,
    concat_files,
    concat_npy,
    write_graph_jsonl,
)
from stages.formats.tables import HashIndex, StringTable, write_lines
from stages.wiki.config import GraphConfig
from stages.wiki.parallel import bounded_imap, wait_for_markers, worker_pool

_WORK = "_work"
_LOOKUP_BATCH = 1 << 16  # links looked up together
#: Bytes of working memory per buffered link in the map phase: the source/target id lists and
#: arrays, two int64 keys, their sorts and dedup masks.
_MAP_BYTES_PER_LINK = 48
#: Bytes per (out + in) edge of a range at the reduce peak: both key sets (8 + 8), their union
#: before dedup (16), its mask and the deduplicated copy.
_REDUCE_BYTES_PER_EDGE = 40
#: Bytes per edge of a components chunk: its source and target ids, their roots and the
#: pointer-jumping temporaries (int32 each), the mask of the edges that join two trees.
_COMPONENT_BYTES_PER_EDGE = 32
#: Ranges are unions of this many equal slices of the node ids at most (the cut's resolution).
_BUCKETS = 4096


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


def weakly_connected_components_csr(indptr: np.ndarray, indices,
                                    chunk_edges: int = 1 << 22) -> tuple[np.ndarray, int]:
    """`weakly_connected_components` over a (memory-mapped) CSR, reading `chunk_edges` edges at
    a time: memory is the parent array (O(nodes), int32 while ids fit) plus one chunk, however
    many edges there are. Per chunk: the roots of both ends (pointer jumping), the larger root
    hooked under the smaller; after each pass over all edges, full path compression. It ends
    after a pass in which no edge joined two trees. Returns (labels, passes). `indices`: an
    array, or a function (e0, e1) -> indices[e0:e1] (to read chunks of a file unmapped)."""
    n = len(indptr) - 1
    dtype = np.int32 if n < 2**31 else np.int64
    parent = np.arange(n, dtype=dtype)
    cuts = _chunk_rows(indptr, chunk_edges)
    passes = 0
    while True:
        passes += 1
        joined = False
        for r0, r1 in itertools.pairwise(cuts):
            e0, e1 = int(indptr[r0]), int(indptr[r1])
            if e1 == e0:
                continue
            src = np.repeat(np.arange(r0, r1, dtype=dtype), np.diff(np.asarray(indptr[r0:r1 + 1])))
            dst = indices(e0, e1) if callable(indices) else np.asarray(indices[e0:e1])
            a, b = _roots(parent, src), _roots(parent, dst.astype(dtype, copy=False))
            del dst
            del src
            differ = a != b
            if differ.any():
                joined = True
                a, b = a[differ], b[differ]
                np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
            del a, b, differ
        parent = _compress(parent)
        if not joined:
            return parent, passes


def _chunk_rows(indptr: np.ndarray, chunk_edges: int) -> list[int]:
    """Row cuts 0 = c0 < c1 < ... = n with about `chunk_edges` edges between cuts (one row with
    more edges than that is a chunk alone)."""
    n = len(indptr) - 1
    total = int(indptr[-1]) if n else 0
    targets = np.arange(chunk_edges, total, chunk_edges, dtype=np.int64)
    cuts = np.searchsorted(np.asarray(indptr), targets, side="right") - 1
    return sorted({0, n, *[int(c) for c in cuts if 0 < c < n]})


def degree_stats(indptr: np.ndarray, prefix: str, percentiles: list[int]) -> dict:
    degrees = np.diff(indptr)
    if degrees.size == 0:
        return {f"{prefix}_degree_max": 0, f"{prefix}_degree_mean": 0.0}
    stats = {f"{prefix}_degree_p{p}": round(float(np.percentile(degrees, p)), 3) for p in percentiles}
    stats[f"{prefix}_degree_max"] = int(degrees.max())
    stats[f"{prefix}_degree_mean"] = round(float(degrees.mean()), 3)
    return stats


def _libc():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return None


_M_MMAP_THRESHOLD = -3


def _fixed_malloc_threshold() -> None:
    """Large buffers straight from mmap, returned to the OS when freed. (glibc raises its mmap
    threshold to the size of the largest buffer freed, up to 32 MB; buffers below it then come
    from the heap, and the heap stays resident after they are freed: RSS that grew with the
    input instead of staying at the budget.)"""
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def _trim() -> None:
    """Give freed heap memory back to the OS between units of work."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


# ---------------------------------------------------------------- lookup (rank 0, once)


def _build_lookup(extract_dir: Path, work: Path) -> None:
    """`_work/titles.txt` (a link to the extract artifact's, or written from `titles.json` for
    artifacts older than it), its line starts and its hash index, all mapped by the workers."""
    table = work / "titles.txt"
    if table.is_symlink() or table.exists():
        table.unlink()
    source = extract_dir / "titles.txt"
    if source.is_file():
        try:
            table.symlink_to(source.resolve())
        except OSError:
            shutil.copyfile(source, table)
    else:
        write_lines(table, read_titles(extract_dir))
    titles = StringTable(table)
    titles.save_starts()
    HashIndex.build(titles, prefix=work / "titles")


_LOOKUP: dict[str, tuple[StringTable, HashIndex]] = {}


def _lookup_of(work: str) -> tuple[StringTable, HashIndex]:
    """The title table and its index, mapped once per process."""
    if work not in _LOOKUP:
        _LOOKUP.clear()
        titles = StringTable(Path(work) / "titles.txt")
        _LOOKUP[work] = (titles, HashIndex(titles, prefix=Path(work) / "titles"))
    return _LOOKUP[work]


# ---------------------------------------------------------------- map: shards -> sorted runs


def _run_name(shard: int, run: int, kind: str) -> str:
    return f"map-{shard:05d}-{run:04d}.{kind}.npy"


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    keys.sort()
    if keys.size < 2:
        return keys
    keep = np.empty(keys.size, bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def map_shard(task: tuple[int, str, str, int, int]) -> dict:
    """Worker: one article shard -> sorted, deduplicated runs of out and in keys (self-links
    dropped, dangling links counted), at most `chunk_links` links per run."""
    shard, shard_path, work, n, chunk_links = task
    _fixed_malloc_threshold()
    work_dir = Path(work)
    for stale in work_dir.glob(f"map-{shard:05d}-*"):  # a crashed earlier try of this shard
        stale.unlink()
    _, index = _lookup_of(work)
    span = max(n, 1)
    counts = {"shard": shard, "runs": 0, "links": 0, "found": 0, "dangling": 0, "self_links": 0,
              "out_keys": 0, "in_keys": 0}
    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    buffered = 0
    batch_src: list[int] = []
    batch_links: list[str] = []

    def lookup() -> None:
        nonlocal buffered
        found = index.find(batch_links)
        keep = found >= 0
        counts["links"] += len(batch_links)
        counts["dangling"] += int((~keep).sum())
        src, dst = np.asarray(batch_src, dtype=np.int64)[keep], found[keep]
        self_link = src == dst
        counts["self_links"] += int(self_link.sum())
        counts["found"] += int(keep.sum())
        sources.append(src[~self_link])
        targets.append(dst[~self_link])
        buffered += int((~self_link).sum())
        batch_src.clear()
        batch_links.clear()

    def spill() -> None:
        nonlocal buffered
        src, dst = np.concatenate(sources), np.concatenate(targets)
        sources.clear()
        targets.clear()
        keys = src * span
        keys += dst
        keys = _sorted_unique(keys)
        counts["out_keys"] += int(keys.size)
        _save(work_dir / _run_name(shard, counts["runs"], "out"), keys)
        del keys
        dst *= span
        dst += src
        del src
        dst = _sorted_unique(dst)
        counts["in_keys"] += int(dst.size)
        _save(work_dir / _run_name(shard, counts["runs"], "in"), dst)
        counts["runs"] += 1
        buffered = 0

    for article in iter_shard(Path(shard_path)):
        batch_src.extend([article.id] * len(article.links))
        batch_links.extend(article.links)
        if len(batch_links) >= min(_LOOKUP_BATCH, chunk_links):
            lookup()
            if buffered >= chunk_links:
                spill()
    if batch_links:
        lookup()
    if buffered or counts["runs"] == 0:
        spill()
    _trim()
    return counts


# ---------------------------------------------------------------- reduce: id ranges -> CSR pieces


def _runs(work: Path, shards: int, counts: list[dict], kind: str) -> list[Path]:
    return [work / _run_name(s, r, kind) for s in range(shards) for r in range(counts[s]["runs"])]


def plan_ranges(n: int, run_files: list[Path], budget_edges: int) -> list[tuple[int, int]]:
    """Cut the node ids 0..n-1 into ranges whose keys (in all runs: out and in) stay within
    `budget_edges`, at the resolution of `_BUCKETS` equal slices (a slice over budget is a
    range alone). Counted by binary search on the mapped runs: the same cut on every rank."""
    if n == 0:
        return [(0, 0)]
    buckets = min(n, _BUCKETS)
    bounds = (np.arange(buckets + 1, dtype=np.int64) * n) // buckets
    per_bucket = np.zeros(buckets, np.int64)
    for path in run_files:
        keys = np.load(path, mmap_mode="r")
        per_bucket += np.diff(np.searchsorted(keys, bounds * n))
        del keys
    ranges, start, load = [], 0, 0
    for b in range(buckets):
        count = int(per_bucket[b])
        if b > start and load + count > budget_edges:
            ranges.append((int(bounds[start]), int(bounds[b])))
            start, load = b, 0
        load += count
    ranges.append((int(bounds[start]), n))
    return ranges


def read_slice(path: Path, a: int, b: int) -> np.ndarray:
    """Items a..b-1 of a 1-D `.npy` file, read (not mapped: mapped pages that were touched count
    in the process's RSS, so a pass over a mapped array would grow it to the array's size)."""
    array = np.load(path, mmap_mode="r")
    dtype, offset = array.dtype, array.offset
    del array
    return np.fromfile(path, dtype=dtype, count=max(0, b - a), offset=offset + a * dtype.itemsize)


def _gather(run_files: list[Path], lo_key: int, hi_key: int) -> np.ndarray:
    """The keys in [lo_key, hi_key) of every (sorted) run, sorted and deduplicated: found by
    binary search on the mapped run (a few pages), then read."""
    bounds = []
    for path in run_files:
        keys = np.load(path, mmap_mode="r")
        a, b = (int(v) for v in np.searchsorted(keys, [lo_key, hi_key]))
        del keys
        if b > a:
            bounds.append((path, a, b))
    gathered = np.empty(sum(b - a for _, a, b in bounds), np.int64)
    at = 0
    for path, a, b in bounds:
        gathered[at:at + b - a] = read_slice(path, a, b)
        at += b - a
    return _sorted_unique(gathered)


def _range_key(lo: int, hi: int) -> str:
    """A range's name, from its bounds: a relaunch whose cut differs (another world size or
    memory_mb) reuses only the pieces of ranges with the same bounds."""
    return f"{lo:010d}-{hi:010d}"


def _piece_name(part: str, kind: str, what: str) -> str:
    return f"part-{part}.{kind}.{what}.npy"


def _write_piece(work: Path, part: str, kind: str, keys: np.ndarray, lo: int, hi: int, n: int) -> np.ndarray:
    """Rows lo..hi-1 of one CSR from its sorted unique keys: degree counts and int32 indices."""
    span = max(n, 1)
    counts = np.diff(np.searchsorted(keys, np.arange(lo, hi + 1, dtype=np.int64) * span))
    keys %= span
    indices = keys.astype(np.int32)
    _save(work / _piece_name(part, kind, "counts"), counts.astype(np.int64))
    _save(work / _piece_name(part, kind, "indices"), indices)
    return counts


def reduce_range(task: tuple[str, int, int, str, int, list[str], list[str]]) -> dict:
    """Worker: the out, in and `both` rows of node ids lo..hi-1, and their `graph.jsonl` lines."""
    part, lo, hi, work, n, out_runs, in_runs = task
    _fixed_malloc_threshold()
    work_dir = Path(work)
    span = max(n, 1)
    out_keys = _gather([Path(p) for p in out_runs], lo * span, hi * span)
    in_keys = _gather([Path(p) for p in in_runs], lo * span, hi * span)
    both = np.concatenate([out_keys, in_keys])
    edges = {"part": part, "out": int(out_keys.size), "in": int(in_keys.size)}
    out_counts = _write_piece(work_dir, part, "out", out_keys, lo, hi, n)
    del out_keys
    _write_piece(work_dir, part, "in", in_keys, lo, hi, n)
    del in_keys
    both = _sorted_unique(both)
    edges["both"] = int(both.size)
    _write_piece(work_dir, part, "both", both, lo, hi, n)
    del both
    titles, _ = _lookup_of(work)
    indptr = np.concatenate([[0], np.cumsum(out_counts)])
    indices = np.asarray(np.load(work_dir / _piece_name(part, "out", "indices"), mmap_mode="r"))  # plain slices
    write_graph_jsonl(work_dir / f"part-{part}.jsonl", titles, indptr, indices, first=lo)
    del indptr, indices, out_counts
    _trim()
    return edges


# ---------------------------------------------------------------- commit (rank 0)


def _assemble(out: Path, work: Path, parts: list[str], n: int) -> dict[str, np.ndarray]:
    """Join the range pieces into the artifact's CSR files; returns the out and in indptr."""
    indptrs = {}
    for kind in ("out", "in", "both"):
        counts = np.concatenate([np.load(work / _piece_name(p, kind, "counts")) for p in parts])
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(counts[:n], out=indptr[1:])
        del counts
        np.save(out / f"{kind}_indptr.npy", indptr)
        if kind != "both":  # the stats need out and in
            indptrs[kind] = indptr
        del indptr
        concat_npy(out / f"{kind}_indices.npy", [work / _piece_name(p, kind, "indices") for p in parts],
                   np.int32)
    concat_files(out / JSONL_FILE, [work / f"part-{p}.jsonl" for p in parts])
    return indptrs


def _cpu_s() -> float:
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def run(cfg: GraphConfig, ctx) -> dict:
    """Build the graph of the upstream extract artifact into ctx.out_dir (see the module docstring)."""
    extract_dir = Path(ctx.upstream["extract"].path)
    shards = shard_paths(extract_dir)
    out = ctx.out_dir
    work = out / _WORK
    work.mkdir(parents=True, exist_ok=True)
    memory = int(cfg.memory_mb * (1 << 20))
    _fixed_malloc_threshold()
    timings: dict[str, float] = {}
    started, cpu0 = time.perf_counter(), _cpu_s()
    if ctx.rank == 0 and not ctx.shard_done("lookup"):
        _build_lookup(extract_dir, work)
        ctx.mark_shard_done("lookup", {})
    timings["lookup_cpu_s"] = round(_cpu_s() - cpu0, 2)
    wait_for_markers(ctx, ["lookup"])
    n = len(_lookup_of(str(work))[0])
    if ctx.rank == 0 and len(shards) < ctx.world_size * cfg.workers:
        ctx.log.warning("graph: the extract artifact has %d shards for %d processes (%d ranks x %d workers): the "
                        "map runs on %d of them; give extract shards= at least that many", len(shards),
                        ctx.world_size * cfg.workers, ctx.world_size, cfg.workers, len(shards))
    pool = worker_pool(min(cfg.workers, max(1, len(shards))))
    try:
        # map: this rank's shards
        cpu1 = _cpu_s()
        chunk_links = max(64, memory // _MAP_BYTES_PER_LINK)
        tasks = [(s, str(path), str(work), n, chunk_links) for s, path in enumerate(shards)
                 if s % ctx.world_size == ctx.rank and not ctx.shard_done(f"map-{s:05d}")]
        results = pool.imap_unordered(map_shard, tasks) if pool else map(map_shard, tasks)
        for counts in ctx.progress(results, total=len(tasks), desc="graph: map", unit="shard"):
            ctx.mark_shard_done(f"map-{counts['shard']:05d}", counts)  # as each finishes: a crash keeps it
        wait_for_markers(ctx, [f"map-{s:05d}" for s in range(len(shards))])
        mapped = [ctx.shard_payload(f"map-{s:05d}") for s in range(len(shards))]
        out_runs, in_runs = _runs(work, len(shards), mapped, "out"), _runs(work, len(shards), mapped, "in")
        timings["map_cpu_s"] = round(_cpu_s() - cpu1, 2)
        # reduce: this rank's id ranges
        cpu2 = _cpu_s()
        keys = sum(m["out_keys"] + m["in_keys"] for m in mapped)  # an upper bound of the reduce's edges
        spread = -(-keys // (ctx.world_size * cfg.workers))  # at least one range per process
        ranges = plan_ranges(n, out_runs + in_runs, max(1, min(memory // _REDUCE_BYTES_PER_EDGE, spread)))
        tasks = [(_range_key(lo, hi), lo, hi, str(work), n, [str(r) for r in out_runs], [str(r) for r in in_runs])
                 for p, (lo, hi) in enumerate(ranges)
                 if p % ctx.world_size == ctx.rank and not ctx.shard_done(f"reduce-{_range_key(lo, hi)}")]
        results = bounded_imap(pool, reduce_range, tasks, batch=1, ahead=max(1, cfg.workers))
        for edges in ctx.progress(results, total=len(tasks), desc="graph: reduce", unit="range"):
            ctx.mark_shard_done(f"reduce-{edges['part']}", edges)
        timings["reduce_cpu_s"] = round(_cpu_s() - cpu2, 2)
    finally:
        if pool:
            pool.terminate()
    if ctx.rank != 0:
        return {f"rank_{k}": v for k, v in timings.items()}
    parts = [_range_key(lo, hi) for lo, hi in ranges]
    wait_for_markers(ctx, [f"reduce-{key}" for key in parts])
    cpu3 = _cpu_s()
    _trim()
    stats, passes = _commit(cfg, ctx, work, n, parts, mapped, memory)
    timings["commit_cpu_s"] = round(_cpu_s() - cpu3, 2)
    shutil.rmtree(work)
    ctx.record["graph_stats"] = stats
    ctx.log.info("graph: %(nodes)d nodes, %(edges)d edges, %(components)d components", stats)
    serial = timings["lookup_cpu_s"] + timings["commit_cpu_s"]
    return {**stats, **timings, "serial_cpu_s": round(serial, 2), "map_units": len(shards),
            "reduce_ranges": len(ranges), "runs": len(out_runs), "components_passes": passes, "memory_mb": cfg.memory_mb,
            "wall_s": round(time.perf_counter() - started, 2)}


def _commit(cfg: GraphConfig, ctx, work: Path, n: int, parts: list[str], mapped: list[dict],
            memory: int) -> tuple[dict, int]:
    out = ctx.out_dir
    titles, _ = _lookup_of(str(work))
    write_titles_json(out / TITLES_FILE, titles)
    indptrs = _assemble(out, work, parts, n)
    _LOOKUP.clear()
    out_indptr, in_indptr = indptrs["out"], indptrs["in"]
    labels, passes = weakly_connected_components_csr(
        out_indptr, lambda e0, e1: read_slice(out / "out_indices.npy", e0, e1), max(256, memory // _COMPONENT_BYTES_PER_EDGE))
    sizes = np.bincount(labels)
    sizes = sizes[sizes > 0]
    del labels
    found = sum(m["found"] for m in mapped)
    self_links = sum(m["self_links"] for m in mapped)
    edges = int(out_indptr[-1])
    stats = {
        "nodes": n,
        "edges": edges,
        "dangling": sum(m["dangling"] for m in mapped),
        "self_links": self_links,
        "duplicate_links": int(found - self_links - edges),
        "components": int(sizes.size),
        "largest_component": int(sizes.max()) if sizes.size else 0,
        "isolated_nodes": int(((np.diff(out_indptr) == 0) & (np.diff(in_indptr) == 0)).sum()),
    }
    stats.update(degree_stats(out_indptr, "out", cfg.percentiles))
    stats.update(degree_stats(in_indptr, "in", cfg.percentiles))
    write_json_atomic(out / "stats.json", stats)
    return stats, passes

