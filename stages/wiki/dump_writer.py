"""Writing MediaWiki XML dumps the way Wikimedia publishes them, at any size.

- `write_multistream`: a `.xml.bz2` made of many bzip2 streams (the header, then
  `pages_per_stream` pages per stream, then the footer) and its index
  `...-multistream-index.txt.bz2`, one `offset:page_id:title` line per page, where `offset`
  is the byte position of the stream that holds the page. Streams are compressed in parallel
  processes; the bytes do not depend on how many.
- `split`: several complete dump files (`<stem>1.xml-p1p5000.bz2`, ...), each multistream
  with its own index, or single-stream like the classic split dumps.
- `tiled_pages`: a big dump from a small corpus. Copy k > 0 of every page is renamed
  (`Title (k)`), and so is every link target inside it, so each copy is a self-contained
  replica of the base link graph; this is how benchmarks get 1M articles in minutes from a
  20k-article generated corpus, or a large real-text dump from the 206 real enwiki pages.
"""

from __future__ import annotations

import bz2
import dataclasses
import itertools
import multiprocessing
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

XML_HEADER = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
              'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="0.10" xml:lang="en">\n')
SITEINFO = """  <siteinfo>
    <sitename>Samplepedia</sitename>
    <dbname>samplewiki</dbname>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""
XML_FOOTER = "</mediawiki>\n"
_LINK_TARGET = re.compile(r"\[\[([^\[\]|#:\n]+)(?=[\]|#])")  # namespace-0 targets only


@dataclasses.dataclass
class DumpPage:
    """One page of a dump: `redirect` is the target title of a redirect page."""

    title: str
    text: str
    namespace: int = 0
    redirect: str | None = None


def page_xml(page_id: int, page: DumpPage) -> str:
    """A `<page>` element as MediaWiki's export 0.10 writes it."""
    redirect = f"    <redirect title={quoteattr(page.redirect)} />\n" if page.redirect else ""
    return (
        f"  <page>\n    <title>{escape(page.title)}</title>\n    <ns>{page.namespace}</ns>\n"
        f"    <id>{page_id}</id>\n{redirect}    <revision>\n      <id>{1000 + page_id}</id>\n"
        f"      <timestamp>2020-01-01T00:00:00Z</timestamp>\n"
        f"      <contributor>\n        <username>SampleBot</username>\n        <id>1</id>\n      </contributor>\n"
        f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
        f'      <text xml:space="preserve" bytes="{len(page.text.encode())}">{escape(page.text)}</text>\n'
        f"    </revision>\n  </page>\n"
    )


def index_name(dump: Path) -> Path:
    """The standard index name beside a multistream dump:
    `x-multistream.xml.bz2` -> `x-multistream-index.txt.bz2`, and for split files
    `x-multistream3.xml-p1p9.bz2` -> `x-multistream-index3.txt-p1p9.bz2`."""
    name = dump.name
    if "multistream" in name:
        head, _, tail = name.rpartition("multistream")
        name = f"{head}multistream-index{tail}"
    else:
        name = name.replace(".xml", "-index.xml", 1)
    return dump.with_name(name.replace(".xml", ".txt", 1))


def _compress(data: bytes) -> bytes:
    return bz2.compress(data, 9)


def _chunks(pages: Iterable[DumpPage], first_id: int, size: int) -> Iterator[list[tuple[int, DumpPage]]]:
    numbered = zip(itertools.count(first_id), pages)
    while chunk := list(itertools.islice(numbered, size)):
        yield chunk


def write_multistream(pages: Iterable[DumpPage], path: str | Path, pages_per_stream: int = 100,
                      processes: int = 1, first_id: int = 1, index: bool = True,
                      siteinfo: str = SITEINFO) -> dict:
    """Write `pages` as a multistream `.xml.bz2` (plus its index unless `index=False`).

    Returns {"pages", "streams", "bytes", "last_id", "path", "index"}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    index_path = index_name(path)
    index_lines: list[str] = []
    streams = pages_done = 0
    last_id = first_id - 1
    pool = multiprocessing.get_context("fork").Pool(processes) if processes > 1 else None
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(_compress((XML_HEADER + siteinfo).encode()))
            chunks = _chunks(pages, first_id, pages_per_stream)
            texts = (("".join(page_xml(i, p) for i, p in chunk).encode(), chunk) for chunk in chunks)
            if pool is None:
                compressed = ((_compress(data), chunk) for data, chunk in texts)
            else:
                compressed = _ordered_parallel(pool, texts, ahead=4 * processes)
            for blob, chunk in compressed:
                offset = out.tell()
                if index:
                    index_lines.extend(f"{offset}:{i}:{p.title}\n" for i, p in chunk)
                out.write(blob)
                streams += 1
                pages_done += len(chunk)
                last_id = chunk[-1][0]
            out.write(_compress(XML_FOOTER.encode()))
            size = out.tell()
        tmp.replace(path)
        if index:
            index_tmp = index_path.with_name(index_path.name + ".tmp")
            index_tmp.write_bytes(bz2.compress("".join(index_lines).encode()))
            index_tmp.replace(index_path)
    finally:
        if pool is not None:
            pool.terminate()
    return {"pages": pages_done, "streams": streams, "bytes": size, "last_id": last_id,
            "path": str(path), "index": str(index_path) if index else None}


def _ordered_parallel(pool, items: Iterator[tuple[bytes, list]], ahead: int) -> Iterator[tuple[bytes, list]]:
    """Compress in the pool, in order, at most `ahead` streams in flight (bounded memory)."""
    pending: list = []
    for data, chunk in items:
        pending.append((pool.apply_async(_compress, (data,)), chunk))
        if len(pending) >= ahead:
            result, done = pending.pop(0)
            yield result.get(), done
    for result, done in pending:
        yield result.get(), done


def write_split(pages: Iterable[DumpPage], directory: str | Path, stem: str, files: int, total: int,
                multistream: bool = True, processes: int = 1, pages_per_stream: int = 100) -> list[Path]:
    """Write `total` pages as `files` complete dumps `<stem>K.xml-pFIRSTpLAST.bz2` (K from 1),
    multistream with an index each, or single-stream (one bzip2 stream per file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    iterator = iter(pages)
    per_file = -(-total // files)
    written, first_id = [], 1
    for k in range(1, files + 1):
        part = list(itertools.islice(iterator, per_file))
        if not part:
            break
        last_id = first_id + len(part) - 1
        path = directory / f"{stem}{k}.xml-p{first_id}p{last_id}.bz2"
        if multistream:
            write_multistream(part, path, pages_per_stream, processes, first_id=first_id)
        else:
            body = "".join(page_xml(i, p) for i, p in zip(itertools.count(first_id), part))
            path.write_bytes(bz2.compress((XML_HEADER + SITEINFO + body + XML_FOOTER).encode(), 9))
        written.append(path)
        first_id = last_id + 1
    return written


def rename_copy(page: DumpPage, copy: int) -> DumpPage:
    """Copy `copy` of a page: its title, redirect target and namespace-0 link targets get
    the suffix ` (copy)` (copy 0 is the page itself)."""
    if copy == 0:
        return page
    suffix = f" ({copy})"
    text = _LINK_TARGET.sub(lambda m: f"[[{m.group(1).rstrip()}{suffix}", page.text)
    title = page.title + suffix if page.namespace == 0 else f"{page.title}{suffix}"
    return DumpPage(title, text, page.namespace, page.redirect + suffix if page.redirect else None)


def tiled_pages(base: list[DumpPage], articles: int) -> Iterator[DumpPage]:
    """Copies of `base` (renamed, see `rename_copy`) until `articles` namespace-0 non-redirect
    pages have been written; redirects and other pages of a copy come along with it."""
    per_copy = sum(1 for p in base if p.namespace == 0 and p.redirect is None)
    if per_copy == 0:
        raise ValueError("tiled_pages: the base holds no articles")
    written = 0
    for copy in itertools.count():
        for page in base:
            is_article = page.namespace == 0 and page.redirect is None
            if is_article and written >= articles:
                continue
            written += is_article
            yield rename_copy(page, copy)
        if written >= articles:
            return


def sample_pages(n_articles: int, seed: int = 0, fact_style: str = "whose") -> list[DumpPage]:
    """The generated sample corpus as dump pages, in the order of its XML export."""
    from stages.wiki.sample import _pages, generate_sample

    corpus = generate_sample(n_articles, seed, fact_style)
    return [DumpPage(title, text, ns, target) for _, ns, title, text, target in _pages(corpus)]


def read_pages(path: str | Path) -> list[DumpPage]:
    """The pages of a (small) MediaWiki XML dump, plain or compressed, for `tiled_pages`."""
    from stages.wiki.dumps import iter_records

    pages = []
    for record in iter_records(path):
        if record.error:
            continue
        elem = ET.fromstring(record.data)
        redirect = elem.find("redirect")
        pages.append(DumpPage(elem.findtext("title") or "", elem.findtext("revision/text") or "",
                              int(elem.findtext("ns") or 0),
                              redirect.get("title") if redirect is not None else None))
    return pages


def main(argv: list[str] | None = None) -> None:
    """Command line: a big generated (or real-text) dump for benchmarks."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="write a big multistream (or split) MediaWiki dump")
    parser.add_argument("--articles", type=int, required=True, help="namespace-0 articles to write")
    parser.add_argument("--out", type=Path, required=True,
                        help="dump path (x-multistream.xml.bz2), or a directory with --split")
    parser.add_argument("--split", type=int, default=0, help="write this many split files into --out")
    parser.add_argument("--single-stream", action="store_true", help="split files as single bzip2 streams")
    parser.add_argument("--base", type=int, default=20000, help="articles of the generated base corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from-dump", type=Path, help="tile the pages of this dump instead of a generated corpus")
    parser.add_argument("--processes", type=int, default=2, help="compressing processes")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    base = read_pages(args.from_dump) if args.from_dump else sample_pages(min(args.base, args.articles), args.seed)
    pages = tiled_pages(base, args.articles)
    if args.split:
        total = sum(1 for _ in tiled_pages(base, args.articles))
        files = write_split(pages, args.out, "pages-articles-multistream" if not args.single_stream
                            else "pages-articles", args.split, total, not args.single_stream, args.processes)
        print(f"wrote {len(files)} files into {args.out} in {time.perf_counter() - started:.1f}s")
    else:
        info = write_multistream(pages, args.out, processes=args.processes)
        print(f"wrote {info['pages']} pages, {info['streams']} streams, {info['bytes'] / 1e6:.1f} MB "
              f"to {info['path']} (+ {info['index']}) in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
