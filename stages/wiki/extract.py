"""`extract`: a Wikipedia dump -> Markdown article shards, redirects, optional Markdown tree.

Two phases, both parallel over worker processes and resumable through shard markers:
1. convert: the dump is streamed once; record i belongs to shard `i % shards`, each rank
   takes the shards `s % world_size == rank`, workers parse and convert pages, and each
   shard's output goes to `raw/part-NNNNN.jsonl` (links still unresolved);
2. write (rank 0): titles are sorted into dense ids, redirects are resolved (chains too),
   and workers render links and write `articles-NNNNN.jsonl.zst` (and `markdown/`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Container, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from stages.core.artifacts import write_json_atomic
from stages.wiki.articles import Article, ShardWriter, shard_name
from stages.wiki.config import ExtractConfig
from stages.wiki.dumps import RawRecord, iter_records, parse_record
from stages.wiki.parallel import bounded_imap, worker_pool
from stages.wiki.titles import file_stem, normalize_title
from stages.wiki.wikitext import convert, render_links

_REDIRECT_TEXT = re.compile(r"^\s*#REDIRECT\s*:?\s*\[\[([^\]|]+)", re.IGNORECASE)
_MAX_REDIRECT_HOPS = 8
_DETAILS_KEPT = 5


def convert_record(item: tuple[int, RawRecord]) -> tuple[int, tuple]:
    """Worker: one dump record -> (shard, result tuple)."""
    shard, record = item
    if record.error:
        reason = "truncated_input" if record.error.startswith("truncated") else "malformed_xml"
        return shard, ("bad", reason, f"{record.where}: {record.error}")
    try:
        page = parse_record(record)
    except ValueError as err:
        reason = "malformed_xml" if record.format == "xml" else "invalid_json"
        return shard, ("bad", reason, f"{record.where}: {err}")
    if page is None:
        return shard, ("meta",)
    if page.namespace != 0:
        return shard, ("other_ns",)
    title = normalize_title(page.title)
    redirect = page.redirect
    if redirect is None and page.wikitext:
        match = _REDIRECT_TEXT.match(page.wikitext)
        redirect = match.group(1) if match else None
    if redirect is not None:
        return shard, ("redirect", title, normalize_title(redirect))
    aliases = [normalize_title(a) for a in page.aliases]
    if page.wikitext is not None:
        converted = convert(page.wikitext)
        return shard, ("article", title, converted.text, converted.categories, [],
                       converted.links_dropped, aliases)
    # CirrusSearch without source_text: plain text, links from `outgoing_link`.
    links = [t for t in (normalize_title(x) for x in page.outgoing_links) if t]
    categories = [normalize_title(c) for c in page.categories]
    return shard, ("article", title, page.plain_text or "", categories, links, 0, aliases)


def _dump_path(cfg: ExtractConfig, out_dir: Path) -> Path:
    if cfg.dump != "sample":
        path = Path(cfg.dump).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"extract: dump {path} not found; pass dump=/path/to/dump.xml.bz2 (or .json.gz) or dump=sample")
        return path
    from stages.wiki.sample import generate_sample

    suffix = "xml" if cfg.sample_format == "xml" else "json"
    path = out_dir / "_input" / f"sample-{cfg.sample_articles}-{cfg.sample_seed}.{suffix}"
    if not path.is_file():
        corpus = generate_sample(cfg.sample_articles, cfg.sample_seed)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")  # ranks may race here
        corpus.write_xml(tmp) if suffix == "xml" else corpus.write_cirrus(tmp)
        tmp.replace(path)
    return path


def _records_for(path: Path, shards: int, wanted: set[int]) -> Iterator[tuple[int, RawRecord]]:
    for i, record in enumerate(iter_records(path)):
        if i % shards in wanted:
            yield i % shards, record


def _new_stats() -> dict:
    return {"articles": 0, "redirects": 0, "other_ns": 0, "links_dropped": 0, "bad_counts": {}, "bad_examples": []}


class _RawPart:
    """One shard's converted pages (`part-NNNNN.jsonl`) plus a small side index
    (`part-NNNNN.index.jsonl`: titles with byte offsets, and redirects), so the write
    phase can sort and resolve without decoding the texts again."""

    def __init__(self, pages: BinaryIO, index: TextIO):
        self.pages, self.index = pages, index
        self.offset = 0

    def article(self, title: str, text: str, categories: list[str], links: list[str]) -> None:
        line = json.dumps({"x": text, "c": categories, "l": links}, ensure_ascii=False).encode() + b"\n"
        self.pages.write(line)
        self.index.write(json.dumps(["a", title, self.offset], ensure_ascii=False) + "\n")
        self.offset += len(line)

    def redirect(self, alias: str, target: str) -> None:
        self.index.write(json.dumps(["r", alias, target], ensure_ascii=False) + "\n")


def _record_result(result: tuple, out: _RawPart, stat: dict, on_error: str, dump: Path) -> None:
    """Write one converted page to its shard's raw part and count it."""
    kind = result[0]
    if kind == "article":
        _, title, text, categories, links, dropped, aliases = result
        stat["articles"] += 1
        stat["links_dropped"] += dropped
        out.article(title, text, categories, links)
        for alias in aliases:
            out.redirect(alias, title)
    elif kind == "redirect":
        stat["redirects"] += 1
        out.redirect(result[1], result[2])
    elif kind == "other_ns":
        stat["other_ns"] += 1
    elif kind == "bad":
        if on_error == "fail":
            raise ValueError(f"extract: bad input in {dump}: {result[2]}; fix the dump or pass on_error=skip")
        counts = stat["bad_counts"]
        counts[result[1]] = counts.get(result[1], 0) + 1
        if len(stat["bad_examples"]) < _DETAILS_KEPT:
            stat["bad_examples"].append([result[1], result[2]])


def _convert_phase(cfg: ExtractConfig, ctx, dump: Path, raw_dir: Path, pool) -> None:
    mine = [s for s in range(cfg.shards) if s % ctx.world_size == ctx.rank]
    todo = [s for s in mine if not ctx.shard_done(f"convert-{s:05d}")]
    if not todo:
        return
    raw_dir.mkdir(parents=True, exist_ok=True)
    stats = {s: _new_stats() for s in todo}
    records = _records_for(dump, cfg.shards, set(todo))
    with contextlib.ExitStack() as files:
        outs = {s: _RawPart(files.enter_context(open(raw_dir / f"part-{s:05d}.jsonl", "wb")),
                            files.enter_context(open(raw_dir / f"part-{s:05d}.index.jsonl", "w", encoding="utf-8")))
                for s in todo}
        results = bounded_imap(pool, convert_record, records, batch=4, ahead=4 * cfg.workers)
        for shard, result in ctx.progress(results, desc="extract: convert", unit="page"):
            _record_result(result, outs[shard], stats[shard], cfg.on_error, dump)
    for s in todo:
        ctx.mark_shard_done(f"convert-{s:05d}", stats[s])


def _wait_for_shards(ctx, shards: int, poll_s: float = 2.0) -> None:
    """Rank 0 waits until every rank's convert shards are marked done (a file barrier)."""
    while not all(ctx.shard_done(f"convert-{s:05d}") for s in range(shards)):
        time.sleep(poll_s)


_OFFSET_BITS = 40  # a location packs (part, byte offset) into one int: offsets up to 1 TiB


def _index_raw(raw_dir: Path, shards: int, ctx) -> tuple[list[str], dict[str, int], dict[str, str]]:
    """Sorted titles, title -> packed (part, byte offset), and the raw redirect table, read
    from the parts' side indexes. Kept compact: it is what grows with the dump."""
    location: dict[str, int] = {}
    redirects: dict[str, str] = {}
    for part in range(shards):
        path = raw_dir / f"part-{part:05d}.index.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                kind, title, value = json.loads(line)
                if kind == "r":
                    if title and value:
                        redirects.setdefault(title, value)
                elif not title or title in location:
                    ctx.skip("duplicate_title", title)
                else:
                    location[title] = part << _OFFSET_BITS | value
    return sorted(location), location, redirects


def resolve_redirects(redirects: dict[str, str], articles: Container[str]) -> dict[str, str]:
    """Alias -> final title, following chains; an alias that is also an article is dropped."""
    resolved = {}
    for alias, target in redirects.items():
        if alias in articles:
            continue
        hops = 0
        while target in redirects and target not in articles and hops < _MAX_REDIRECT_HOPS:
            target = redirects[target]
            hops += 1
        if target != alias:
            resolved[alias] = target
    return resolved


def write_shard(task: tuple[int, int, list[tuple[str, int, int]], dict]) -> dict:
    """Worker: render links and write one output shard (and its Markdown files).

    `task` is (shard index, first id, entries, state); state holds the resolved redirects,
    the raw and output directories and the export flag.
    """
    index, first_id, entries, state = task
    redirects = state["redirects"]
    resolve = lambda title: redirects.get(title, title)
    writer = ShardWriter(state["out_dir"] / shard_name(index))
    md_dir = state["out_dir"] / "markdown"
    handles: dict[int, object] = {}
    links_kept = 0
    with contextlib.ExitStack() as files:
        for offset_in_shard, (title, part, offset) in enumerate(entries):
            if part not in handles:
                handles[part] = files.enter_context(open(state["raw_dir"] / f"part-{part:05d}.jsonl", "rb"))
            handle = handles[part]
            handle.seek(offset)
            row = json.loads(handle.readline())
            text, links = render_links(row["x"], resolve)
            links += [resolve(t) for t in row["l"]]
            links_kept += len(links)
            writer.write(Article(first_id + offset_in_shard, title, text, list(dict.fromkeys(links)), row["c"]))
            if state["export_markdown"]:
                md, _ = render_links(row["x"], resolve, target_form=file_stem)
                (md_dir / f"{file_stem(title)}.md").write_text(f"# {title}\n\n{md}\n", encoding="utf-8")
    writer.close()
    return {"shard": index, "articles": len(entries), "links_kept": links_kept}


def _write_phase(cfg: ExtractConfig, ctx, raw_dir: Path, pool) -> dict:
    titles, location, raw_redirects = _index_raw(raw_dir, cfg.shards, ctx)
    redirects = resolve_redirects(raw_redirects, location)
    del raw_redirects
    write_json_atomic(ctx.out_dir / "titles.json", titles)
    write_json_atomic(ctx.out_dir / "redirects.json", redirects)
    if cfg.export_markdown:
        (ctx.out_dir / "markdown").mkdir(exist_ok=True)
    per_shard = -(-len(titles) // cfg.shards) if titles else 0
    state = {"redirects": redirects, "raw_dir": raw_dir, "out_dir": ctx.out_dir,
             "export_markdown": cfg.export_markdown}

    def task(k: int) -> tuple:
        ids = range(k * per_shard, min((k + 1) * per_shard, len(titles)))
        mask = (1 << _OFFSET_BITS) - 1
        entries = [(titles[i], location[titles[i]] >> _OFFSET_BITS, location[titles[i]] & mask) for i in ids]
        return k, k * per_shard, entries, state

    # Built lazily: only the shards in flight hold their entry lists.
    todo = (task(k) for k in range(cfg.shards) if not ctx.shard_done(f"write-{k:05d}"))
    results = bounded_imap(pool, write_shard, todo, batch=1, ahead=cfg.workers)
    for result in ctx.progress(results, total=cfg.shards, desc="extract: write"):
        ctx.mark_shard_done(f"write-{result['shard']:05d}", result)  # as each finishes: a crash keeps it
    links_kept = sum(ctx.shard_payload(f"write-{k:05d}")["links_kept"] for k in range(cfg.shards))
    return {"articles": len(titles), "redirects": len(redirects), "links_kept": links_kept}


def run(cfg: ExtractConfig, ctx) -> dict:
    """Extract articles from `cfg.dump` into ctx.out_dir (see the module docstring)."""
    dump = _dump_path(cfg, ctx.out_dir)
    raw_dir = ctx.out_dir / "raw"
    pool = worker_pool(cfg.workers)
    try:
        _convert_phase(cfg, ctx, dump, raw_dir, pool)
        if ctx.rank != 0:
            return {}
        _wait_for_shards(ctx, cfg.shards)
        converted = [ctx.shard_payload(f"convert-{s:05d}") for s in range(cfg.shards)]
        metrics = _write_phase(cfg, ctx, raw_dir, pool)
    finally:
        if pool:
            pool.terminate()
    for payload in converted:
        shown: dict[str, int] = {}
        for reason, detail in payload["bad_examples"]:
            ctx.skip(reason, detail)
            shown[reason] = shown.get(reason, 0) + 1
        for reason, count in payload["bad_counts"].items():
            if count > shown.get(reason, 0):
                ctx.skip(reason, None, count=count - shown.get(reason, 0))
    shutil.rmtree(raw_dir, ignore_errors=True)
    shutil.rmtree(ctx.out_dir / "_input", ignore_errors=True)
    metrics.update(
        links_dropped=sum(p["links_dropped"] for p in converted),
        redirect_pages=sum(p["redirects"] for p in converted),
        other_namespace_pages=sum(p["other_ns"] for p in converted),
        skipped=sum(sum(p["bad_counts"].values()) for p in converted),
        format="sample-" + cfg.sample_format if cfg.dump == "sample" else cfg.dump,
    )
    ctx.log.info("extract: %(articles)d articles, %(redirects)d redirects, %(links_kept)d links", metrics)
    return metrics
