"""Streaming dump readers: MediaWiki XML and CirrusSearch JSON, plain or compressed.

The format is detected from the bytes, never from the file name: compression by its magic
number (bzip2 incl. multistream, gzip, zstd), then the first non-space character of the
decompressed stream (`<` XML, `{` CirrusSearch).

Memory stays bounded: the reader keeps at most one page (or one line) plus a read block
in memory. XML is cut into `<page>...</page>` byte chunks that are parsed one by one, so a
malformed page costs only that page, and a page cut off by a truncated file is never
yielded. The cheap cutting runs in the reading process; parsing and conversion run in
worker processes (`parse_record`).
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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
    first = head.lstrip()[:1]
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
    buf = b""
    pos = 0  # where the unconsumed part of buf starts
    base = 0  # decompressed offset of buf[0]
    eof = False
    seen_root_close = False
    while True:
        start = buf.find(_PAGE_OPEN, pos)
        end = buf.find(_PAGE_CLOSE, start + 1) if start >= 0 else -1
        if start >= 0 and end >= 0:
            nested = buf.find(_PAGE_OPEN, start + len(_PAGE_OPEN), end)
            if nested >= 0:  # a page without its `</page>`: skip it, resync at the next one
                yield RawRecord("xml", f"byte {base + start}", buf[start:nested],
                                error=f"page without </page> at byte {base + start}{_title_hint(buf[start:nested])}")
                pos = nested
                continue
            pos = end + len(_PAGE_CLOSE)
            yield RawRecord("xml", f"byte {base + start}", buf[start:pos])
            continue
        if eof:
            break
        # Keep only the unfinished page (or a tag's worth of bytes), then read on.
        keep = start if start >= 0 else max(pos, len(buf) - len(_PAGE_OPEN))
        seen_root_close = seen_root_close or _ROOT_CLOSE in buf[pos:]
        buf, base, pos = buf[keep:], base + keep, 0
        try:
            # read1: hand over what is decompressed so far, so a cut file loses only its tail
            block = stream.read1(_READ_BLOCK)
        except (EOFError, OSError) as err:
            yield _truncated("xml", raw, compression, f"decompressed byte {base + len(buf)}", err)
            return
        if not block:
            eof = True
        buf += block
    seen_root_close = seen_root_close or _ROOT_CLOSE in buf[pos:]
    start = buf.find(_PAGE_OPEN, pos)
    if start >= 0:
        yield RawRecord("xml", f"byte {base + start}", buf[start:],
                        error=f"page cut off at end of input, byte {base + start}{_title_hint(buf[start:])}")
    elif not seen_root_close:
        yield RawRecord("xml", f"byte {base + len(buf)}",
                        error=f"XML ends without </mediawiki> at byte {base + len(buf)} (truncated file?)")


def _title_hint(chunk: bytes) -> str:
    match = _TITLE.search(chunk)
    return f", title {match.group(1).decode('utf-8', 'replace')!r}" if match else ""


def _cirrus_records(stream: BinaryIO, raw: BinaryIO, compression: str) -> Iterator[RawRecord]:
    reader = io.BufferedReader(stream, _READ_BLOCK) if not isinstance(stream, io.BufferedReader) else stream
    line_no = 0
    while True:
        try:
            line = reader.readline()
        except (EOFError, OSError) as err:
            yield _truncated("cirrus", raw, compression, f"after line {line_no}", err)
            return
        if not line:
            return
        line_no += 1
        if line.strip():
            yield RawRecord("cirrus", f"line {line_no}", line)


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
    aliases = [r["title"] for r in doc.get("redirect") or [] if r.get("namespace", 0) == 0 and r.get("title")]
    return Page(
        title=doc["title"], namespace=int(doc.get("namespace", 0)),
        wikitext=doc.get("source_text"), plain_text=doc.get("text") or "",
        outgoing_links=list(doc.get("outgoing_link") or []),
        categories=list(doc.get("category") or []), aliases=aliases,
    )
