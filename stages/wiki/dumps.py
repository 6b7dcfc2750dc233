"""Streaming dump readers: MediaWiki XML and CirrusSearch JSON, plain or compressed.

The format is detected from the bytes, never from the file name: compression by its magic
number (bzip2 incl. multistream, gzip, zstd), then the first non-space character of the
decompressed stream (`<` XML, `{` CirrusSearch).

Memory stays bounded: the reader keeps at most one page (or one line) plus a read block
in memory. XML is cut into `<page>...</page>` byte chunks that are parsed one by one, so a
malformed page costs only that page, and a page cut off by a truncated file is never
yielded. The cheap cutting runs in the reading process; parsing and conversion run in
worker processes (`parse_record`).

Parallel reading (`plan_units`, `iter_unit_records`): the dump files (one, a directory, a
glob or a `;` list) are cut into units of work, byte ranges of whole bzip2 streams of a
multistream file located through its index, or whole files; a worker seeks to its unit and
decompresses only that.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import itertools
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

_READ_BLOCK = 1 << 20
_PAGE_OPEN, _PAGE_CLOSE, _ROOT_CLOSE = b"<page>", b"</page>", b"</mediawiki>"
_TITLE = re.compile(rb"<title>(.*?)</title>", re.DOTALL)


@dataclasses.dataclass
class RawRecord:
    """One page (XML chunk) or one line (CirrusSearch), or a problem found while reading.

    `where` locates it for messages: a byte offset (XML) or a line number (CirrusSearch).
    """

    format: str
    where: str
    data: bytes = b""
    error: str | None = None  # set for a bad record: the data is not usable


@dataclasses.dataclass
class Page:
    """A parsed page. `wikitext` is None for CirrusSearch documents without `source_text`."""

    title: str
    namespace: int
    wikitext: str | None = None
    redirect: str | None = None
    plain_text: str | None = None
    outgoing_links: list[str] = dataclasses.field(default_factory=list)
    categories: list[str] = dataclasses.field(default_factory=list)
    aliases: list[str] = dataclasses.field(default_factory=list)  # CirrusSearch redirects


def _open_decompressed(path: Path) -> tuple[BinaryIO, BinaryIO, str]:
    """(decompressed stream, raw file, compression name) chosen from the magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes it with the stream
    magic = raw.read(4)
    raw.seek(0)
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw), raw, "bz2"
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw), raw, "gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw), raw, "zstd"
    return raw, raw, "none"


def detect_format(path: str | Path) -> tuple[str, str]:
    """(format, compression) of a dump: format is "xml" or "cirrus"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dump {path} not found; pass dump=/path/to/dump (.xml[.bz2|.gz] or .json[.gz]) or dump=sample")
    stream, raw, compression = _open_decompressed(path)
    try:
        head = stream.read(4096)
    except (EOFError, OSError) as err:
        raise ValueError(f"dump {path}: cannot decompress ({compression}): {err}") from None
    finally:
        raw.close()
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or head[:4] in (b"<\x00?\x00", b"\x00<\x00?"):
        # A compressed file must be decompressed before it is converted: iconv on the .bz2 itself
        # would read compressed bytes.
        unpack = {"bz2": "bzip2 -dc", "gzip": "gzip -dc", "zstd": "zstd -dc"}.get(compression)
        stem = path.name.split(".")[0]
        source = f"{unpack} {path.name} | iconv -f UTF-16 -t UTF-8" if unpack else \
            f"iconv -f UTF-16 -t UTF-8 {path.name}"
        raise ValueError(
            f"dump {path} is UTF-16 encoded XML ({compression}); MediaWiki exports are UTF-8: convert it first "
            f"({source} > {stem}.utf8.xml) and pass dump= the converted file"
        )
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if first == b"<":
        return "xml", compression
    if first == b"{":
        return "cirrus", compression
    raise ValueError(
        f"dump {path}: not a MediaWiki XML export or CirrusSearch JSON dump "
        f"(starts with {head[:16]!r}); pass an .xml/.json dump, optionally bz2/gzip compressed"
    )


def iter_records(path: str | Path) -> Iterator[RawRecord]:
    """Yield the dump's records in order; problems come as records with `error` set."""
    path = Path(path)
    fmt, compression = detect_format(path)
    stream, raw, _ = _open_decompressed(path)
    try:
        if fmt == "xml":
            yield from _xml_records(stream, raw, compression)
        else:
            yield from _cirrus_records(stream, raw, compression)
    finally:
        raw.close()


def _truncated(fmt: str, raw: BinaryIO, compression: str, where: str, err: Exception) -> RawRecord:
    return RawRecord(fmt, where, error=f"truncated {compression} input near compressed byte "
                     f"{raw.tell()} ({where}): {err}")


def _xml_records(stream: BinaryIO, raw: BinaryIO, compression: str) -> Iterator[RawRecord]:
    yield from cut_pages(_stream_blocks(stream, raw, compression), expect_end=True)


def _stream_blocks(stream: BinaryIO, raw: BinaryIO, compression: str) -> Iterator[bytes | RawRecord]:
    """Decompressed blocks of a stream; a truncated stream ends with an error record."""
    done = 0
    while True:
        try:
            # read1: hand over what is decompressed so far, so a cut file loses only its tail
            block = stream.read1(_READ_BLOCK)
        except (EOFError, OSError) as err:
            yield _truncated("xml", raw, compression, f"decompressed byte {done}", err)
            return
        if not block:
            return
        done += len(block)
        yield block


def cut_pages(blocks: Iterable[bytes | RawRecord], expect_end: bool, base: int = 0) -> Iterator[RawRecord]:
    """Cut decompressed XML blocks into `<page>` records.

    An error record among the blocks (a truncated or corrupt stream) is passed on and drops
    the page it cut; reading resumes with the next block. `expect_end`: the blocks end the
    document, so a missing `</mediawiki>` is reported. `base` is the decompressed offset of
    the first block (for messages)."""
    buf = b""
    pos = 0  # where the unconsumed part of buf starts
    seen_root_close = False
    ended_by_error = False
    for block in itertools.chain(blocks, [None]):
        while True:
            start = buf.find(_PAGE_OPEN, pos)
            end = buf.find(_PAGE_CLOSE, start + 1) if start >= 0 else -1
            if start < 0 or end < 0:
                break
            nested = buf.find(_PAGE_OPEN, start + len(_PAGE_OPEN), end)
            if nested >= 0:  # a page without its `</page>`: skip it, resync at the next one
                yield RawRecord("xml", f"byte {base + start}", buf[start:nested],
                                error=f"page without </page> at byte {base + start}{_title_hint(buf[start:nested])}")
                pos = nested
                continue
            pos = end + len(_PAGE_CLOSE)
            yield RawRecord("xml", f"byte {base + start}", buf[start:pos])
        if block is None:
            break
        seen_root_close = seen_root_close or _ROOT_CLOSE in buf[pos:]
        if isinstance(block, RawRecord):  # the input broke here: what was cut is lost with it
            yield block
            base, buf, pos, ended_by_error = base + len(buf), b"", 0, True
            continue
        # Keep only the unfinished page (or a tag's worth of bytes), then read on.
        keep = start if start >= 0 else max(pos, len(buf) - len(_PAGE_OPEN))
        buf, base, pos, ended_by_error = buf[keep:] + block, base + keep, 0, False
    if ended_by_error:
        return
    seen_root_close = seen_root_close or _ROOT_CLOSE in buf[pos:]
    start = buf.find(_PAGE_OPEN, pos)
    if start >= 0:
        yield RawRecord("xml", f"byte {base + start}", buf[start:],
                        error=f"page cut off at end of input, byte {base + start}{_title_hint(buf[start:])}")
    elif expect_end and not seen_root_close:
        yield RawRecord("xml", f"byte {base + len(buf)}",
                        error=f"XML ends without </mediawiki> at byte {base + len(buf)} (truncated file?)")


def _title_hint(chunk: bytes) -> str:
    match = _TITLE.search(chunk)
    return f", title {match.group(1).decode('utf-8', 'replace')!r}" if match else ""


def _cirrus_records(stream: BinaryIO, raw: BinaryIO, compression: str) -> Iterator[RawRecord]:
    """Lines of a CirrusSearch dump. Blocks are handed over as they are decompressed, so a
    truncated file keeps every complete line before the cut; the cut line is reported (and
    counted) as one error record."""
    line_no, rest = 0, b""
    for block in _stream_blocks(stream, raw, compression):
        if isinstance(block, RawRecord):
            lost = " and the partial line after it" if rest.strip() else ""
            yield RawRecord("cirrus", f"after line {line_no}", error=f"{block.error} (input ends after line "
                            f"{line_no}{lost}: the lines before the cut are kept)")
            return
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            line_no += 1
            if line.strip():
                yield RawRecord("cirrus", f"line {line_no}", line)
    if rest.strip():
        yield RawRecord("cirrus", f"line {line_no + 1}", rest)


def parse_record(record: RawRecord) -> Page | None:
    """Parse one record into a Page; None for metadata lines. Raises ValueError if malformed."""
    if record.format == "xml":
        return _parse_xml_page(record.data)
    return _parse_cirrus_line(record.data)


def _parse_xml_page(chunk: bytes) -> Page:
    try:
        elem = ET.fromstring(chunk)
    except ET.ParseError as err:
        raise ValueError(f"malformed XML page{_title_hint(chunk)}: {err}") from None
    title = elem.findtext("title")
    ns = elem.findtext("ns")
    if title is None or ns is None:
        raise ValueError(f"page without <title> or <ns>{_title_hint(chunk)}")
    redirect = elem.find("redirect")
    text = elem.findtext("revision/text") or ""
    return Page(
        title=title, namespace=int(ns), wikitext=text,
        redirect=redirect.get("title") if redirect is not None else None,
    )


def _parse_cirrus_line(line: bytes) -> Page | None:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err}") from None
    kind = type(doc).__name__
    if kind != "dict":  # a ValueError like any other malformed line, so on_error applies
        raise ValueError(f"expected a JSON object, got {kind}")
    if "index" in doc and len(doc) == 1:
        return None
    if "title" not in doc:
        raise ValueError("document without `title`")
    _check_cirrus_types(doc)
    aliases = [r["title"] for r in doc.get("redirect") or [] if r.get("namespace", 0) == 0 and r.get("title")]
    return Page(
        title=doc["title"], namespace=int(doc.get("namespace", 0)),
        wikitext=doc.get("source_text"), plain_text=doc.get("text") or "",
        outgoing_links=list(doc.get("outgoing_link") or []),
        categories=list(doc.get("category") or []), aliases=aliases,
    )


#: CirrusSearch fields this reader uses and the JSON types each may have (None: absent/null).
_CIRRUS_TYPES = {"title": (str,), "namespace": (int, type(None)), "source_text": (str, type(None)),
                 "text": (str, type(None)), "outgoing_link": (list, type(None)), "category": (list, type(None)),
                 "redirect": (list, type(None))}


class FieldTypeError(ValueError):
    """Valid JSON whose field has the wrong type."""


def _check_cirrus_types(doc: dict) -> None:
    """Valid JSON with a wrong field type is a bad line (ValueError, so on_error applies), not a crash."""
    for key, types in _CIRRUS_TYPES.items():
        value = doc.get(key)
        if not isinstance(value, types) or isinstance(value, bool):
            raise FieldTypeError(f"field `{key}` is a JSON {type(value).__name__}, expected "
                             f"{' or '.join(t.__name__ for t in types if t is not type(None))}")
    for key in ("outgoing_link", "category"):
        if any(not isinstance(item, str) for item in doc.get(key) or []):
            raise FieldTypeError(f"field `{key}` must be a list of strings")
    if any(not isinstance(r, dict) or not isinstance(r.get("title", ""), str)
           or not isinstance(r.get("namespace", 0), int) for r in doc.get("redirect") or []):
        raise FieldTypeError("field `redirect` must be a list of {title: str, namespace: int} objects")


# --- Parallel reading: dump files, multistream indexes and units of work -----------------

_STREAM_MAGIC = re.compile(rb"BZh[1-9]1AY&SY")  # a bzip2 stream header and its first block
_INDEX_OFFSET = re.compile(rb"^(\d+):", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    """A piece of the input that one worker reads alone, seeking straight to it.

    `streams` are the bzip2 stream starts of a multistream byte range `[streams[0], end)`;
    empty for a whole file read by one reader (single-stream bz2, gzip, plain)."""

    path: str
    streams: tuple[int, ...] = ()
    end: int = 0
    last: bool = True  # holds the end of its file (where `</mediawiki>` belongs)

    def describe(self) -> str:
        name = Path(self.path).name
        return f"{name} bytes {self.streams[0]}..{self.end}" if self.streams else name


@dataclasses.dataclass
class ReadPlan:
    """How a dump is read: the units in dump order, and why a file is read serially."""

    units: list[WorkUnit]
    notes: list[str]
    index_problems: list[str]

    @property
    def parallel(self) -> bool:
        return len(self.units) > 1

    def to_json(self) -> dict:
        """The plan as JSON data (`from_json` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ReadPlan:
        units = [WorkUnit(u["path"], tuple(u["streams"]), u["end"], u["last"]) for u in data["units"]]
        return cls(units, list(data["notes"]), list(data["index_problems"]))


def dump_files(dump: str) -> list[Path]:
    """The files of `dump=`: one file, a directory of split dumps, a glob, or a `;` list."""
    files: list[Path] = []
    for item in (part.strip() for part in dump.split(";")):
        if not item:
            continue
        path = Path(item).expanduser()
        if any(ch in item for ch in "*?["):
            matches = sorted((p for p in path.parent.glob(path.name) if p.is_file()), key=_split_order)
            if not matches:
                raise FileNotFoundError(f"dump: no file matches {item}; pass dump=/path/to/dump or a glob that matches")
            files += [p for p in matches if not _is_index(p)]
        elif path.is_dir():
            found = sorted((p for p in path.iterdir() if p.is_file() and not _is_index(p)), key=_split_order)
            if not found:
                raise FileNotFoundError(f"dump: directory {path} holds no dump files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"dump {path} not found; pass dump=/path/to/dump.xml.bz2 (or .json.gz), "
                                    "a directory of split dumps, a glob, or dump=sample")
    if not files:
        raise FileNotFoundError("dump: empty; pass a dump file path, a directory, a glob or `sample`")
    return files


def _is_index(path: Path) -> bool:
    return "-index" in path.name and ".txt" in path.name


def _split_order(path: Path) -> tuple:
    """Split dumps sort by their first page id (`...-p1p41242.bz2`), others by name."""
    match = re.search(r"-p(\d+)p\d+", path.name)
    return (0, int(match.group(1)), path.name) if match else (1, 0, path.name)


def find_index(dump: Path) -> Path | None:
    """The multistream index beside `dump` under its standard name, if there is one."""
    from stages.wiki.dump_writer import index_name

    candidate = index_name(dump)
    return candidate if candidate != dump and candidate.is_file() else None


def read_index_offsets(index: str | Path, workers: int = 1) -> list[int]:
    """Sorted distinct stream offsets of a multistream index (`offset:page_id:title` lines).

    The lines are parsed with numpy (no Python object per line). An index that is itself
    several bzip2 streams is cut at its stream starts into `workers` byte ranges decompressed in
    parallel; a single-stream index (or a plain one) is decompressed by one reader, serially."""
    index = Path(index)
    if _magic(index)[:3] != b"BZh":
        with open(index, "rb") as handle:
            return _offsets_of_blocks(iter(lambda: handle.read(_READ_BLOCK), b"")).tolist()
    ranges = _index_ranges(index, workers)
    if workers <= 1 or len(ranges) <= 1:
        return _index_range_offsets((str(index), *ranges[0][:1], ranges[-1][1])).tolist()
    from stages.wiki.parallel import worker_pool

    pool = worker_pool(min(workers, len(ranges)))
    try:
        parts = pool.map(_index_range_offsets, [(str(index), a, b) for a, b in ranges])
    finally:
        pool.terminate()
    return np.unique(np.concatenate(parts)).tolist()


def _index_ranges(index: Path, parts: int) -> list[tuple[int, int]]:
    """`parts` byte ranges of about equal size that start at bzip2 stream starts of `index`
    (candidates found by their header; one that is not a real start fails to decompress and is
    reported as corrupt, never silently misread)."""
    size = index.stat().st_size
    if parts <= 1:
        return [(0, size)]
    starts = [0]
    with open(index, "rb") as handle:
        for k in range(1, parts):
            handle.seek(k * size // parts)
            window = handle.read(1 << 20)
            match = _STREAM_MAGIC.search(window)
            if match:
                start = k * size // parts + match.start()
                if start > starts[-1]:
                    starts.append(start)
    return list(itertools.pairwise([*starts, size]))


#: Compressed bytes fed to a decompressor at a time: an index stream is a few KB, and what a
#: stream leaves unread is copied into the next decompressor.
_INDEX_FEED = 1 << 16


def _index_range_offsets(task: tuple[str, int, int]) -> np.ndarray:
    path, start, end = task

    def blocks() -> Iterator[bytes]:
        with open(path, "rb") as raw:
            raw.seek(start)
            data = memoryview(raw.read(end - start))
        pos, pending, size = 0, [], 0
        while pos < len(data):
            decompressor = bz2.BZ2Decompressor()
            while not decompressor.eof:
                if decompressor.needs_input:
                    if pos >= len(data):
                        raise EOFError(f"{path}: the index ends inside a bzip2 stream")
                    chunk, pos = data[pos:pos + _INDEX_FEED], min(pos + _INDEX_FEED, len(data))
                else:
                    chunk = b""
                out = decompressor.decompress(chunk, max_length=_READ_BLOCK)
                pending.append(out)
                size += len(out)
                if size >= _READ_BLOCK:
                    yield b"".join(pending)
                    pending, size = [], 0
            pos -= len(decompressor.unused_data)  # the next stream starts there
        yield b"".join(pending)

    return _offsets_of_blocks(blocks())


def _offsets_of_blocks(blocks: Iterable[bytes]) -> np.ndarray:
    """Distinct values of the leading `digits:` of each line, vectorized per block."""
    found = [np.zeros(0, np.int64)]
    tail = b""
    for block in itertools.chain(blocks, [b"\n"]):
        block = tail + block
        cut = block.rfind(b"\n") + 1
        block, tail = block[:cut], block[cut:]
        if block:
            found.append(np.unique(_leading_numbers(np.frombuffer(block, np.uint8))))
    return np.unique(np.concatenate(found))


_MAX_DIGITS = 18


def _leading_numbers(blob: np.ndarray) -> np.ndarray:
    """The number before the first `:` of each newline-terminated line that has one."""
    ends = np.flatnonzero(blob == 10)
    starts = np.concatenate([[0], ends[:-1] + 1])
    width = np.arange(_MAX_DIGITS + 1)
    index = np.minimum(starts[:, None] + width, len(blob) - 1)
    window = blob[index]
    window[width > (ends - starts)[:, None]] = 10  # nothing past the line's end
    colon = np.argmax(window == ord(":"), axis=1)
    digits = (window >= ord("0")) & (window <= ord("9"))
    has = (window[np.arange(len(starts)), colon] == ord(":")) & (colon > 0)
    valid = has & (np.cumsum(~digits, axis=1)[np.arange(len(starts)), np.maximum(colon - 1, 0)] == 0)
    window, colon = window[valid], colon[valid]
    values = np.zeros(len(window), np.int64)
    for k in range(_MAX_DIGITS):
        inside = k < colon
        values[inside] = values[inside] * 10 + (window[inside, k] - ord("0"))
    return values


def _magic(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def _bad_stream_starts(dump: Path, offsets: list[int]) -> list[int]:
    """Offsets that are not the start of a bzip2 stream (an index of another dump)."""
    bad = []
    with open(dump, "rb") as handle:
        for offset in offsets:
            handle.seek(offset)
            if not _STREAM_MAGIC.match(handle.read(10)):
                bad.append(offset)
                if len(bad) >= _DETAILS_BAD_OFFSETS:
                    break
    return bad


_DETAILS_BAD_OFFSETS = 3
_MIN_UNITS = 64  # units per multistream file at least (when it has the streams): work for many workers


def plan_units(files: list[Path], dump_index: str = "", unit_bytes: int = 16 << 20, workers: int = 1) -> ReadPlan:
    """Split the dump files into units of work, in dump order.

    A multistream `.bz2` with its index (beside it, or `dump_index=` for a single file) is
    cut into byte ranges of whole streams of about `unit_bytes` compressed bytes, smaller for
    a small file so that it still makes about _MIN_UNITS units. Any other
    file is one unit, read by one reader: a single bzip2/gzip stream cannot be entered in
    the middle. The units depend only on the input, never on ranks or workers. An index
    whose offsets do not land on stream starts is reported in `index_problems`, and that
    file is read serially."""
    if dump_index and len(files) != 1:
        raise ValueError(f"dump_index: given for {len(files)} dump files; it names the index of one "
                         "multistream file (split files find theirs by the standard name)")
    units: list[WorkUnit] = []
    notes: list[str] = []
    problems: list[str] = []
    for path in files:
        index = Path(dump_index).expanduser() if dump_index else find_index(path)
        if dump_index and not index.is_file():
            raise FileNotFoundError(f"dump_index: {index} not found; pass the dump's "
                                    "...-multistream-index.txt.bz2 or leave dump_index empty")
        if index is None or _magic(path)[:3] != b"BZh":
            units.append(WorkUnit(str(path)))
            notes.append(f"{path.name}: read by one reader (no multistream index beside it"
                         f"{'' if _magic(path)[:3] == b'BZh' else '; not bzip2'}), so its decompression is serial")
            continue
        size = path.stat().st_size
        listed = [o for o in read_index_offsets(index, workers) if o > 0]
        offsets = [o for o in listed if o < size]  # the rest: a truncated dump, reported when read
        if len(offsets) < len(listed):
            notes.append(f"{path.name}: its index lists {len(listed) - len(offsets)} streams past the end "
                         "of the file (truncated dump?)")
        bad = _bad_stream_starts(path, offsets)
        if bad or not offsets:
            problems.append(f"index {index.name} does not match dump {path.name}: "
                            + (f"offsets {bad} are not bzip2 stream starts" if bad else "it lists no streams"))
            units.append(WorkUnit(str(path)))
            notes.append(f"{path.name}: its index does not match it, so it is read by one reader")
            continue
        starts = [0, *offsets]
        target = max(1, min(unit_bytes, size // _MIN_UNITS))
        group: list[int] = []
        for i, start in enumerate(starts):
            group.append(start)
            end = starts[i + 1] if i + 1 < len(starts) else size
            if end - group[0] >= target or i + 1 == len(starts):
                units.append(WorkUnit(str(path), tuple(group), end, last=i + 1 == len(starts)))
                group = []
    return ReadPlan(units, notes, problems)


def iter_unit_records(unit: WorkUnit) -> Iterator[RawRecord]:
    """The records of one unit: a whole file, or its streams decompressed one by one (a
    corrupt stream costs that stream only; reading resumes at the next one)."""
    if not unit.streams:
        yield from iter_records(unit.path)
        return
    yield from cut_pages(_unit_blocks(unit), expect_end=unit.last)


def _unit_blocks(unit: WorkUnit) -> Iterator[bytes | RawRecord]:
    bounds = [*unit.streams, unit.end]
    with open(unit.path, "rb") as raw:
        for start, end in itertools.pairwise(bounds):
            raw.seek(start)
            data = raw.read(end - start)
            where = f"{Path(unit.path).name} stream at byte {start}"
            if not _STREAM_MAGIC.match(data):
                yield RawRecord("xml", where, error=f"corrupt bz2 stream: no stream header at byte {start}")
                continue
            try:
                while data:  # a range may hold several streams when the index skipped one
                    decompressor = bz2.BZ2Decompressor()
                    yield decompressor.decompress(data)
                    if not decompressor.eof:
                        yield RawRecord("xml", where, error=f"truncated bz2 input near compressed byte {end} "
                                        f"({where} ends before its stream does)")
                        break
                    data = decompressor.unused_data
            except (OSError, EOFError) as err:
                yield RawRecord("xml", where, error=f"corrupt bz2 stream at byte {start}: {err}")
