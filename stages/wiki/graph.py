"""`graph`: the article link graph as CSR numpy arrays, `graph.jsonl` and stats.

Node id = article id (index into `titles.json`). Edges are article -> linked article, with
self-links, duplicates and links to titles that are not articles (dangling) dropped.

Built like `extract`, over ranks x worker processes, with each process's memory bounded by
`memory_mb` whatever the number of links or nodes (one exception: rank 0's components hold a
parent and a size array, 4 B per node each), and an artifact that depends on neither the world
size, the workers nor `memory_mb`. Files are read in bounded windows, not mapped whole: a mapped
page a process has read stays in its RSS.
1. lookup (rank 0): over the extract artifact's `titles.txt`, its line starts and a
   `tables.HashFile` (24 B per title: two hashes, length, row; sorted by hash), both written
   in bounded pieces under the partial directory.
2. map: the units are the extract artifact's article shards; rank r takes the shards
   `s % world_size == r`, its workers one shard each. A worker hashes the links as it reads
   them, resolves a batch of them by one pass over the hash file in windows, and writes the
   (source id, target id) pairs as sorted runs of int64 keys, `src * n + dst` (out) and
   `dst * n + src` (in), each run deduplicated, at most `memory_mb` of links each.
3. reduce: the node ids are cut into ranges whose edges fit `memory_mb` (counted on the runs,
   so every rank computes the same cut); rank r takes the ranges `p % world_size == r`. A
   worker reads its slice of every run (binary search on the mapped run), sorts and
   deduplicates them, and writes that range's out-, in- and undirected (`both`) rows and its
   `graph.jsonl` lines.
4. commit (rank 0): the range pieces are joined into the artifact's files a piece at a time
   (indptr summed as it is written, the rest by byte copy; degree statistics from per-degree
   counts), the weakly connected components are found by union-find over the pieces' edges
   read in chunks (`components.weakly_connected_components_chunks`), and the stats are written.
All scratch ("spill") files live in `_work/` under the partial directory and are removed
before the commit; a crash leaves them there for a relaunch, which redoes only the units and
ranges without a completion marker (`force=true` discards them with the partial directory).
"""

from __future__ import annotations

import contextlib
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
from stages.formats.tables import (
    HASH_RECORD,
    HashFile,
    NpyWriter,
    TableSlices,
    hashes_of,
    read_npy_slice,
    write_lines,
    write_starts,
)
from stages.wiki.components import DegreeCounts, csr_chunks, weakly_connected_components_chunks
from stages.wiki.config import GraphConfig
from stages.wiki.parallel import bounded_imap, wait_for_markers, worker_pool

_WORK = "_work"
_HASH_BATCH = 1 << 16  # links hashed together
#: Bytes of working memory per buffered link in the map phase: its source id, two hashes and
#: length (28), their joined copies while resolving, the sort order and result of the lookup,
#: then the two int64 keys with their sorts and dedup masks.
_MAP_BYTES_PER_LINK = 96
#: The map's share of `memory_mb` for the index window it reads (the rest buffers links).
_WINDOW_SHARE = 4
#: Bytes per (out + in) edge of a range at the reduce peak: both key sets (8 + 8), their union
#: before dedup (16), its mask and the deduplicated copy.
_REDUCE_BYTES_PER_EDGE = 40
#: Bytes per edge of a components chunk: its source and target ids, their roots and the
#: pointer-jumping temporaries (int32 each), the mask of the edges that join two trees.
_COMPONENT_BYTES_PER_EDGE = 32
#: Ranges are unions of this many equal slices of the node ids at most (the cut's resolution).
_BUCKETS = 4096


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

_TITLES = "titles.txt"
_INDEX = "titles.index.npy"


def _build_lookup(extract_dir: Path, work: Path, memory: int) -> None:
    """`_work/titles.txt` (a link to the extract artifact's, or written from `titles.json` for
    artifacts older than it), its line starts and its `HashFile`, each written in bounded
    pieces; the workers read them in windows."""
    table = work / _TITLES
    if table.is_symlink() or table.exists():
        table.unlink()
    source = extract_dir / _TITLES
    if source.is_file():
        try:
            table.symlink_to(source.resolve())
        except OSError:
            shutil.copyfile(source, table)
    else:
        write_lines(table, read_titles(extract_dir))
    write_starts(table)
    HashFile.build(TableSlices(table), work / _INDEX, memory)


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


def map_shard(task: tuple[int, str, str, int, int, int]) -> dict:
    """Worker: one article shard -> sorted, deduplicated runs of out and in keys (self-links
    dropped, dangling links counted). Links are hashed as they are read and resolved together,
    `chunk_links` at a time, by one pass over the title index in windows of `window` records."""
    shard, shard_path, work, n, chunk_links, window = task
    _fixed_malloc_threshold()
    work_dir = Path(work)
    for stale in work_dir.glob(f"map-{shard:05d}-*"):  # a crashed earlier try of this shard
        stale.unlink()
    index = HashFile(work_dir / _INDEX)
    span = max(n, 1)
    counts = {"shard": shard, "runs": 0, "links": 0, "found": 0, "dangling": 0, "self_links": 0,
              "out_keys": 0, "in_keys": 0}
    pending: dict[str, list[np.ndarray]] = {"src": [], "hash": [], "second": [], "length": []}
    buffered = 0
    batch_src: list[int] = []
    batch_links: list[str] = []

    def hash_batch() -> None:
        nonlocal buffered
        for name, array in zip(("src", "hash", "second", "length"),
                               (np.asarray(batch_src, np.int64), *hashes_of(batch_links))):
            pending[name].append(array)
        buffered += len(batch_links)
        batch_src.clear()
        batch_links.clear()

    def joined(name: str) -> np.ndarray:
        array = np.concatenate(pending[name])
        pending[name].clear()
        return array

    def spill() -> None:
        nonlocal buffered
        src = joined("src")
        hashes, second, lengths = joined("hash"), joined("second"), joined("length")
        dst = index.find_hashed(hashes, second, lengths, window)
        del hashes, second, lengths
        keep = dst >= 0
        counts["links"] += int(src.size)
        counts["dangling"] += int(src.size - keep.sum())
        src, dst = src[keep], dst[keep]
        del keep
        counts["found"] += int(src.size)
        other = src != dst
        counts["self_links"] += int(src.size - other.sum())
        src, dst = src[other], dst[other]
        del other
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
        if len(batch_links) >= min(_HASH_BATCH, chunk_links):
            hash_batch()
            if buffered >= chunk_links:
                spill()
    if batch_links or not pending["src"]:  # a shard without links still writes (empty) runs
        hash_batch()
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


def _gather(run_files: list[Path], lo_key: int, hi_key: int) -> np.ndarray:
    """The keys in [lo_key, hi_key) of every (sorted) run, sorted and deduplicated: found by
    binary search on the mapped run (a few pages), then read (not mapped: a pass over a mapped
    array would keep all of it resident)."""
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
        gathered[at:at + b - a] = read_npy_slice(path, a, b)
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
    titles = TableSlices(work_dir / _TITLES)  # this range's titles are read, not mapped
    indptr = np.concatenate([[0], np.cumsum(out_counts)])
    indices = np.asarray(np.load(work_dir / _piece_name(part, "out", "indices"), mmap_mode="r"))  # plain slices
    write_graph_jsonl(work_dir / f"part-{part}.jsonl", titles, indptr, indices, first=lo)
    del indptr, indices, out_counts
    _trim()
    return edges


# ---------------------------------------------------------------- commit (rank 0)


_KINDS = ("out", "in", "both")


def _assemble(out: Path, work: Path, parts: list[str], n: int, percentiles: list[int]) -> dict:
    """Join the range pieces into the artifact's CSR files, a piece at a time (indptr written as
    it is summed, indices and `graph.jsonl` by byte copy); returns the degree statistics and
    the isolated nodes, counted on the way."""
    totals = dict.fromkeys(_KINDS, 0)
    degrees = {"out": DegreeCounts(), "in": DegreeCounts()}
    isolated = 0
    with contextlib.ExitStack() as stack:
        writers = {kind: stack.enter_context(NpyWriter(out / f"{kind}_indptr.npy", np.int64, n + 1))
                   for kind in _KINDS}
        for writer in writers.values():
            writer.append(np.zeros(1, np.int64))
        for part in parts:
            counts = {kind: np.load(work / _piece_name(part, kind, "counts")) for kind in _KINDS}
            for kind in _KINDS:
                writers[kind].append(np.cumsum(counts[kind]) + totals[kind])
                totals[kind] += int(counts[kind].sum())
            isolated += int(((counts["out"] == 0) & (counts["in"] == 0)).sum())
            degrees["out"].add(counts["out"])
            degrees["in"].add(counts["in"])
    for kind in _KINDS:
        concat_npy(out / f"{kind}_indices.npy", [work / _piece_name(p, kind, "indices") for p in parts], np.int32)
    concat_files(out / JSONL_FILE, [work / f"part-{p}.jsonl" for p in parts])
    return {"edges": totals["out"], "isolated_nodes": isolated, **degrees["out"].stats("out", percentiles),
            **degrees["in"].stats("in", percentiles)}


def _piece_edges(work: Path, ranges: list[tuple[int, int]], chunk_edges: int):
    """The out-edges of every range piece as (src, dst) chunks of about `chunk_edges` edges."""
    for lo, hi in ranges:
        part = _range_key(lo, hi)
        counts = np.load(work / _piece_name(part, "out", "counts"))
        indices = work / _piece_name(part, "out", "indices")
        indptr = np.concatenate([[0], np.cumsum(counts)])
        yield from csr_chunks(indptr, lambda e0, e1, f=indices: read_npy_slice(f, e0, e1), chunk_edges, first=lo)


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
        _build_lookup(extract_dir, work, memory)
        ctx.mark_shard_done("lookup", {})
    timings["lookup_cpu_s"] = round(_cpu_s() - cpu0, 2)
    wait_for_markers(ctx, ["lookup"])
    n = len(TableSlices(work / _TITLES))
    if ctx.rank == 0 and len(shards) < ctx.world_size * cfg.workers:
        ctx.log.warning("graph: the extract artifact has %d shards for %d processes (%d ranks x %d workers): the "
                        "map runs on %d of them; give extract shards= at least that many", len(shards),
                        ctx.world_size * cfg.workers, ctx.world_size, cfg.workers, len(shards))
    pool = worker_pool(min(cfg.workers, max(1, len(shards))))
    try:
        # map: this rank's shards
        cpu1 = _cpu_s()
        window = max(64, memory // _WINDOW_SHARE // HASH_RECORD.itemsize)
        chunk_links = max(64, (memory - memory // _WINDOW_SHARE) // _MAP_BYTES_PER_LINK)
        tasks = [(s, str(path), str(work), n, chunk_links, window) for s, path in enumerate(shards)
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
    stats = _commit(cfg, ctx, work, n, ranges, mapped, memory)
    timings["commit_cpu_s"] = round(_cpu_s() - cpu3, 2)
    shutil.rmtree(work)
    ctx.record["graph_stats"] = stats
    ctx.log.info("graph: %(nodes)d nodes, %(edges)d edges, %(components)d components", stats)
    serial = timings["lookup_cpu_s"] + timings["commit_cpu_s"]
    return {**stats, **timings, "serial_cpu_s": round(serial, 2), "map_units": len(shards),
            "reduce_ranges": len(ranges), "runs": len(out_runs), "memory_mb": cfg.memory_mb,
            "wall_s": round(time.perf_counter() - started, 2)}


def _commit(cfg: GraphConfig, ctx, work: Path, n: int, ranges: list[tuple[int, int]], mapped: list[dict],
            memory: int) -> dict:
    """Rank 0: the artifact's files from the pieces, the components and `stats.json`; memory is
    bounded by `memory` except the components' parent and size arrays (4 B per node each)."""
    out = ctx.out_dir
    write_titles_json(out / TITLES_FILE, TableSlices(work / _TITLES))
    joined = _assemble(out, work, [_range_key(lo, hi) for lo, hi in ranges], n, cfg.percentiles)
    chunk_edges = max(256, memory // _COMPONENT_BYTES_PER_EDGE)
    labels = weakly_connected_components_chunks(n, _piece_edges(work, ranges, chunk_edges))
    sizes = np.zeros(n, labels.dtype)
    for lo in range(0, n, chunk_edges):
        roots, members = np.unique(labels[lo:lo + chunk_edges], return_counts=True)
        sizes[roots] += members.astype(labels.dtype)
    del labels
    found = sum(m["found"] for m in mapped)
    self_links = sum(m["self_links"] for m in mapped)
    edges = joined.pop("edges")
    stats = {
        "nodes": n,
        "edges": edges,
        "dangling": sum(m["dangling"] for m in mapped),
        "self_links": self_links,
        "duplicate_links": int(found - self_links - edges),
        "components": int(np.count_nonzero(sizes)),
        "largest_component": int(sizes.max()) if n else 0,
        "isolated_nodes": joined.pop("isolated_nodes"),
        **joined,
    }
    write_json_atomic(out / "stats.json", stats)
    return stats
