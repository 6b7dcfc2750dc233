"""Disk-backed string tables: millions of titles without a Python object per title.

A table is a file of newline-terminated UTF-8 strings (titles never hold a newline:
`normalize_title` folds whitespace) that is memory-mapped, plus an int64 array of line
starts (8 bytes per string, the only per-string memory of an open table). On top of that:
- `sorted_order`: the stable sort of the strings in code-point order (what Python's `sorted`
  gives), with numpy on 16-byte prefixes and Python only for ties beyond them;
- `HashIndex`: exact lookup by a 64-bit hash (sorted hashes + `searchsorted`, every hit
  verified against the bytes), saved as `.npy` files that worker processes map read-only,
  so the page cache holds one copy for all of them.
An index costs 16 bytes per string (hash, row) on disk, mapped.
- `TableSlices`, `HashFile`, `NpyWriter`: the same tables read and written in bounded windows
  (never mapped whole), for processes whose memory must not grow with the number of strings.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

import numpy as np

_NEWLINE = 10
_CHUNK = 1 << 14  # strings per vectorized step: bounds the temporaries (~15 MB)


class StringTable:
    """Newline-terminated strings in a file, memory-mapped: `table[i]` -> str."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        size = self.path.stat().st_size
        self.blob = np.memmap(self.path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        saved = self.path.with_name(self.path.name + ".starts.npy")
        if saved.is_file():  # mapped: processes that open the same table share it
            self.starts = np.load(saved, mmap_mode="r")
        else:
            ends = np.flatnonzero(self.blob == _NEWLINE) if size else np.zeros(0, np.int64)
            self.starts = np.concatenate([[0], ends + 1]).astype(np.int64)

    def save_starts(self) -> None:
        """Store the line starts beside the table, so that other processes map them instead of
        each computing its own copy (8 bytes per string per process)."""
        tmp = self.path.with_name(self.path.name + ".starts.tmp.npy")
        np.save(tmp, np.asarray(self.starts))
        tmp.replace(self.path.with_name(self.path.name + ".starts.npy"))  # a new file: live maps keep the old

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> str:
        return bytes(self.blob[self.starts[i]:self.starts[i + 1] - 1]).decode("utf-8")

    def slice(self, lo: int, hi: int) -> list[str]:
        """Strings lo..hi-1 (one decode for the whole run)."""
        if hi <= lo:
            return []
        return bytes(self.blob[self.starts[lo]:self.starts[hi] - 1]).decode("utf-8").split("\n")

    def lengths(self) -> np.ndarray:
        return np.diff(self.starts) - 1


def write_lines(path: Path, strings: Iterable[str]) -> int:
    """Write strings as a table file; returns how many."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for s in strings:
            out.write(s)
            out.write("\n")
            count += 1
    return count


def concatenate(parts: Sequence[Path], path: Path) -> StringTable:
    """One table from several table files, in order (a byte copy)."""
    with open(path, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    return StringTable(path)


def hash_strings(table: StringTable, rows: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """64-bit hash of each string (polynomial over the bytes, then a mixing step), vectorized.
    Two seeds give two independent hashes."""
    rows = np.arange(len(table)) if rows is None else rows
    out = np.empty(len(rows), np.uint64)
    for lo in range(0, len(rows), _CHUNK):
        chunk = rows[lo:lo + _CHUNK]
        starts, ends = table.starts[chunk], table.starts[chunk + 1] - 1
        out[lo:lo + _CHUNK] = _hash_ranges(table.blob, starts, ends, seed)
    return out


def hash_list(strings: list[str], seed: int = 0) -> np.ndarray:
    """`hash_strings` of Python strings (the same values)."""
    data = ("\n".join(strings) + "\n").encode("utf-8") if strings else b""
    blob = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(blob == _NEWLINE)
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
    return _hash_ranges(blob, starts, ends, seed)


_PRIMES = (np.uint64(0x100000001B3), np.uint64(0xC2B2AE3D27D4EB4F))


def _hash_ranges(blob: np.ndarray, starts: np.ndarray, ends: np.ndarray, seed: int) -> np.ndarray:
    lengths = (ends - starts).astype(np.int64)
    with np.errstate(over="ignore"):
        hashes = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)
        nonempty = np.flatnonzero(lengths)
        if len(nonempty):
            lengths_ne = lengths[nonempty]
            first = np.cumsum(lengths_ne) - lengths_ne
            position = np.arange(int(lengths_ne.sum())) - np.repeat(first, lengths_ne)
            index = np.repeat(starts[nonempty], lengths_ne) + position
            terms = (blob[index].astype(np.uint64) + np.uint64(1)) * _powers(int(lengths_ne.max()), seed)[position]
            hashes[nonempty] += np.add.reduceat(terms, first)
        # splitmix64's finalizer: spread the bits
        hashes ^= hashes >> np.uint64(30)
        hashes *= np.uint64(0xBF58476D1CE4E5B9)
        hashes ^= hashes >> np.uint64(27)
        hashes *= np.uint64(0x94D049BB133111EB)
        hashes ^= hashes >> np.uint64(31)
    return hashes


def _powers(n: int, seed: int) -> np.ndarray:
    powers = np.ones(max(n, 1), np.uint64)
    with np.errstate(over="ignore"):
        for i in range(1, n):
            powers[i] = powers[i - 1] * _PRIMES[seed % 2]
    return powers


def sorted_order(table: StringTable) -> np.ndarray:
    """Row order that sorts the strings in code-point order; equal strings keep row order."""
    n = len(table)
    if n == 0:
        return np.zeros(0, np.int64)
    high, low = np.empty(n, np.uint64), np.empty(n, np.uint64)
    for lo in range(0, n, _CHUNK):
        rows = np.arange(lo, min(lo + _CHUNK, n))
        high[rows], low[rows] = _prefix_words(table, rows)
    order = np.lexsort((low, high))  # stable: ties keep row order
    # Runs that share their first 16 bytes and hold a longer string: finish those in Python.
    same = (high[order][1:] == high[order][:-1]) & (low[order][1:] == low[order][:-1])
    if same.any():
        long = table.lengths()[order] > 16
        edges = np.flatnonzero(np.diff(np.concatenate([[0], same.astype(np.int8), [0]])))
        for begin, end in zip(edges[::2].tolist(), (edges[1::2] + 1).tolist()):
            if not long[begin:end].any():
                continue  # equal short strings: already in row order
            group = order[begin:end].tolist()
            group.sort(key=lambda row: (bytes(table.blob[table.starts[row]:table.starts[row + 1] - 1]), row))
            order[begin:end] = group
    return order


def _prefix_words(table: StringTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first 16 bytes of each string (zero-padded) as two big-endian words."""
    starts = table.starts[rows]
    lengths = table.starts[rows + 1] - 1 - starts
    column = np.arange(16)
    index = np.minimum(starts[:, None] + column, max(len(table.blob) - 1, 0))
    prefix = np.where(column < lengths[:, None], table.blob[index], 0).astype(np.uint8)
    words = np.ascontiguousarray(prefix).view(">u8")
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


def equal_rows(table: StringTable, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: is string a[i] == string b[i] (length and two independent 64-bit hashes)."""
    same = (table.starts[a + 1] - table.starts[a]) == (table.starts[b + 1] - table.starts[b])
    for seed in (0, 1):
        same &= hash_strings(table, a, seed) == hash_strings(table, b, seed)
    return same


class HashIndex:
    """Exact string -> row lookup over a StringTable, saved beside it as `.hash.npy` and
    `.rows.npy` (hashes sorted, rows in hash order), read through memory maps."""

    def __init__(self, table: StringTable, prefix: str | Path | None = None):
        self.table = table
        prefix = prefix or table.path
        self.hashes = np.load(f"{prefix}.hash.npy", mmap_mode="r")
        self.rows = np.load(f"{prefix}.rows.npy", mmap_mode="r")

    @staticmethod
    def build(table: StringTable, rows: np.ndarray | None = None, prefix: str | Path | None = None) -> HashIndex:
        """Index the given rows of `table` (all of them by default), saved as `{prefix}.hash.npy`
        and `{prefix}.rows.npy` (prefix: the table's path)."""
        prefix = prefix or table.path
        rows = np.arange(len(table), dtype=np.int64) if rows is None else rows.astype(np.int64)
        hashes = hash_strings(table, rows)
        order = np.argsort(hashes, kind="stable")
        np.save(f"{prefix}.hash.npy", hashes[order])
        np.save(f"{prefix}.rows.npy", rows[order])
        return HashIndex(table, prefix)

    def find(self, strings: list[str]) -> np.ndarray:
        """Row of each string, -1 where absent (see `find_table` for how a hit is confirmed)."""
        if not strings:
            return np.full(0, -1, np.int64)
        data = ("\n".join(strings) + "\n").encode("utf-8")
        blob = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(blob == _NEWLINE)
        starts = np.concatenate([[0], ends[:-1] + 1])
        return self._confirm(_hash_ranges(blob, starts, ends, 0), _hash_ranges(blob, starts, ends, 1), ends - starts)

    def _confirm(self, hashes: np.ndarray, second: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        result = np.full(len(hashes), -1, np.int64)
        if not len(self.hashes):
            return result
        pos = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        found = np.asarray(self.rows[pos])
        hit = np.asarray(self.hashes[pos]) == hashes
        hit &= lengths == self.table.starts[found + 1] - self.table.starts[found] - 1
        hit[hit] &= second[hit] == hash_strings(self.table, found[hit], 1)
        result[hit] = found[hit]
        return result

    def find_table(self, other: StringTable) -> np.ndarray:
        """Row of each string of another table, -1 where absent. Vectorized: a hit must match
        the length and a second independent hash too (a false match needs two 64-bit
        collisions at once; two indexed strings with one equal 64-bit hash, which is as
        unlikely, would hide the second one)."""
        result = np.full(len(other), -1, np.int64)
        for lo in range(0, len(other), _CHUNK):
            rows = np.arange(lo, min(lo + _CHUNK, len(other)))
            result[rows] = self._confirm(hash_strings(other, rows), hash_strings(other, rows, 1),
                                         other.starts[rows + 1] - other.starts[rows] - 1)
        return result


# ---------------------------------------------------------------- read in windows, never mapped
#
# A mapped page that a process has read stays in its RSS until the map is closed, so a pass
# over a whole mapped table (or lookups spread over it) grows the process by the table's size.
# What follows reads files in bounded pieces instead: a process holds its window, whatever n.


def read_npy_slice(path: Path, a: int, b: int) -> np.ndarray:
    """Items a..b-1 of a 1-D `.npy` file, read (not mapped)."""
    array = np.load(path, mmap_mode="r")
    dtype, offset = array.dtype, array.offset
    del array
    return np.fromfile(path, dtype=dtype, count=max(0, b - a), offset=offset + a * dtype.itemsize)


def npy_length(path: Path) -> int:
    """The length of a 1-D `.npy` file, from its header."""
    array = np.load(path, mmap_mode="r")
    return len(array)


class NpyWriter:
    """A 1-D `.npy` file of known length written in pieces (the bytes `np.save` writes for the
    whole array), through a temporary name: in a `with` block, `append` the pieces; at its end
    the length is checked and the file renamed into place (an error leaves no file)."""

    def __init__(self, path: Path, dtype, length: int):
        self.path, self.dtype, self.length, self.written = Path(path), np.dtype(dtype), length, 0
        self.tmp = self.path.with_name(self.path.name + ".tmp")

    def __enter__(self) -> Self:
        self.handle = open(self.tmp, "wb")  # closed by __exit__
        np.lib.format.write_array_header_1_0(
            self.handle, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                          "shape": (self.length,)})
        return self

    def append(self, piece: np.ndarray) -> None:
        np.ascontiguousarray(piece, dtype=self.dtype).tofile(self.handle)
        self.written += len(piece)

    def __exit__(self, kind, error, trace) -> None:
        self.handle.close()
        if kind is None and self.written != self.length:
            error = ValueError(f"{self.path}: {self.written} items written for a header of {self.length}")
        if kind is not None or error is not None:
            self.tmp.unlink(missing_ok=True)
            if kind is None:
                raise error
            return
        self.tmp.replace(self.path)


def starts_path(table: Path) -> Path:
    """Where a table's line starts are saved (what `StringTable` maps when it is there)."""
    return table.with_name(table.name + ".starts.npy")


def write_starts(table: Path, block: int = 1 << 24) -> int:
    """Save the line starts of a table file beside it (`starts_path`), computed over blocks of
    the file (two passes: count, then write): O(block) memory however many strings. Returns
    the number of strings."""
    def blocks():
        with open(table, "rb") as handle:
            at = 0
            while chunk := handle.read(block):
                yield at, np.frombuffer(chunk, np.uint8)
                at += len(chunk)

    count = sum(int(np.count_nonzero(chunk == _NEWLINE)) for _, chunk in blocks())
    with NpyWriter(starts_path(table), np.int64, count + 1) as writer:
        writer.append(np.zeros(1, np.int64))
        for at, chunk in blocks():
            writer.append(np.flatnonzero(chunk == _NEWLINE) + (at + 1))
    return count


class TableSlices:
    """A table file whose line starts are saved (`write_starts`), read by slices with plain file
    reads: `len` and `slice(lo, hi)` like `StringTable`, in memory of the slice only."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.starts_file = starts_path(self.path)
        if not self.starts_file.is_file():
            raise FileNotFoundError(f"{self.starts_file} is missing; save the table's starts first (write_starts)")
        self.length = npy_length(self.starts_file) - 1

    def __len__(self) -> int:
        return self.length

    def bytes_of(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """The bytes of strings lo..hi-1 (newline-terminated) and their starts within them."""
        starts = read_npy_slice(self.starts_file, lo, hi + 1)
        if hi <= lo:
            return np.zeros(0, np.uint8), starts[:0]
        blob = np.fromfile(self.path, dtype=np.uint8, count=int(starts[-1] - starts[0]), offset=int(starts[0]))
        return blob, starts - starts[0]

    def slice(self, lo: int, hi: int) -> list[str]:
        """Strings lo..hi-1."""
        blob, _ = self.bytes_of(lo, hi)
        return blob[:-1].tobytes().decode("utf-8").split("\n") if hi > lo else []


def hashes_of(strings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two hashes (`hash_list` with seeds 0 and 1) and the byte length of each string:
    what `HashFile.find_hashed` looks up."""
    data = ("\n".join(strings) + "\n").encode("utf-8") if strings else b""
    blob = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(blob == _NEWLINE)
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
    return _hash_ranges(blob, starts, ends, 0), _hash_ranges(blob, starts, ends, 1), (ends - starts).astype(np.uint32)


_MAX_BUCKET_BITS = 8  # at most 256 bucket files open at once

#: One record of a `HashFile`: the string's hash, its second independent hash, its length in
#: bytes and its row (24 bytes).
HASH_RECORD = np.dtype([("hash", "<u8"), ("second", "<u8"), ("length", "<u4"), ("row", "<u4")])


class HashFile:
    """Exact string -> row lookup like `HashIndex`, with the same answers, for processes whose
    memory must not grow with the table: one `.npy` of `HASH_RECORD`s sorted by hash (ties in
    row order) that a lookup streams in windows, and that is built by a radix pass over hash
    buckets. A hit matches the hash, the byte length and the second hash, as in `HashIndex`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.length = npy_length(self.path)

    def __len__(self) -> int:
        return self.length

    @staticmethod
    def build(table: TableSlices, path: Path, memory_bytes: int, chunk: int = _CHUNK) -> HashFile:
        """Index every row of `table` into `path`; about `memory_bytes` of working memory: the
        records go to 2^k bucket files by the top bits of their hash (k such that a bucket's
        sort fits), then each bucket is sorted and appended in bucket order."""
        n = len(table)
        if n >= 2**32:
            raise ValueError(f"{table.path}: {n} strings; HashFile rows are uint32, split the table")
        bits = 0
        while (n >> bits) * HASH_RECORD.itemsize * 3 > memory_bytes and bits < _MAX_BUCKET_BITS:
            bits += 1
        buckets = [path.with_name(f"{path.name}.bucket{b:05d}") for b in range(1 << bits)]
        with contextlib.ExitStack() as stack:
            handles = [stack.enter_context(open(b, "wb")) for b in buckets]
            for lo in range(0, n, chunk):
                hi = min(lo + chunk, n)
                blob, starts = table.bytes_of(lo, hi)
                ends = starts[1:] - 1
                records = np.empty(hi - lo, HASH_RECORD)
                records["hash"] = _hash_ranges(blob, starts[:-1], ends, 0)
                records["second"] = _hash_ranges(blob, starts[:-1], ends, 1)
                records["length"] = ends - starts[:-1]
                records["row"] = np.arange(lo, hi)
                which = (records["hash"] >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(hi - lo, int)
                for b in np.unique(which).tolist():
                    records[which == b].tofile(handles[b])
        with NpyWriter(path, HASH_RECORD, n) as writer:
            for bucket in buckets:
                records = np.fromfile(bucket, HASH_RECORD)
                writer.append(records[np.argsort(records["hash"], kind="stable")])  # rows came in order
                del records
                bucket.unlink()
        return HashFile(path)

    def find_hashed(self, hashes: np.ndarray, second: np.ndarray, lengths: np.ndarray,
                    window: int) -> np.ndarray:
        """Row of each query string given by its two hashes and byte length, -1 where absent.
        The queries are sorted and the file is read `window` records at a time; a window is
        skipped when the next query is above its last possible hash (the first hash of the
        next window, read beforehand)."""
        result = np.full(len(hashes), -1, np.int64)
        if not len(hashes) or not self.length:
            return result
        window = max(1, window)
        mapped = np.load(self.path, mmap_mode="r")
        fences = np.array(mapped["hash"][window::window])  # a page per window
        offset = mapped.offset
        del mapped
        order = np.argsort(hashes, kind="stable")
        wanted = hashes[order]
        at = 0
        for w in range(-(-self.length // window)):
            if at == len(wanted):
                break
            if w < len(fences) and wanted[at] > fences[w]:
                continue  # every hash of window w is <= fences[w]
            count = min(window, self.length - w * window)
            records = np.fromfile(self.path, HASH_RECORD, count=count,
                                  offset=offset + w * window * HASH_RECORD.itemsize)
            end = int(np.searchsorted(wanted, records["hash"][-1], side="right"))
            if end > at:
                pick = order[at:end]
                found = records[np.searchsorted(records["hash"], wanted[at:end])]
                hit = (found["hash"] == wanted[at:end]) & (found["second"] == second[pick])
                hit &= found["length"] == lengths[pick]
                result[pick[hit]] = found["row"][hit]
                at = end
            del records
        return result
