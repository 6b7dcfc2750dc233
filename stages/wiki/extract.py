"""`extract`: a Wikipedia dump -> Markdown article shards, redirects, optional Markdown tree.

Two phases, both parallel over worker processes and resumable through completion markers:
1. convert: the dump is cut into units of work (`dumps.plan_units`): byte ranges of whole
   bzip2 streams of a multistream dump (found through its index), or whole files of a split
   dump. Rank 0 makes this plan and shares it as a checked file (`shared_plan`), so the index
   is read once whatever the number of ranks. Rank r takes the units `u % world_size == r`; each worker process seeks to its unit,
   decompresses only that, converts its pages and writes `raw/part-UUUUU.*` (links still
   unresolved). A single-stream file is one unit: one reader decompresses it, and the
   workers convert its pages.
2. write (rank 0): titles are sorted into dense ids and redirects resolved (chains too) in
   disk-backed tables (`tables.py`, numpy arrays, no Python object per title), then workers
   render links and write `articles-NNNNN.jsonl.zst` (and `markdown/`). The workers map the
   tables read-only: the redirects reach each worker once, through the page cache.
The units depend only on the input, and everything is put in dump order before ids are
given out, so the artifact does not depend on ranks, workers or the unit size.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from stages.formats.articles import Article, ShardWriter, shard_name, write_titles_json
from stages.formats.tables import (
    HashIndex,
    StringTable,
    concatenate,
    equal_rows,
    hash_strings,
    sorted_order,
    write_lines,
)
from stages.wiki.config import ExtractConfig
from stages.wiki.dumps import (
    FieldTypeError,
    RawRecord,
    ReadPlan,
    WorkUnit,
    dump_files,
    iter_unit_records,
    parse_record,
    plan_units,
)
from stages.wiki.parallel import bounded_imap, worker_pool
from stages.wiki.titles import file_stem, normalize_title
from stages.wiki.wikitext import convert, marked_link_titles, render_links

_REDIRECT_TEXT = re.compile(r"^\s*#REDIRECT\s*:?\s*\[\[([^\]|]+)", re.IGNORECASE)
_DETAILS_KEPT = 5
_WRITE_BATCH = 256  # articles whose link targets are looked up together


def convert_record(record: RawRecord) -> tuple:
    """Worker: one dump record -> a result tuple ("article" | "redirect" | "other_ns" | "meta" | "bad", ...)."""
    if record.error:
        reason = ("truncated_input" if record.error.startswith("truncated")
                  else "corrupt_stream" if record.error.startswith("corrupt") else "malformed_xml")
        return ("bad", reason, f"{record.where}: {record.error}")
    try:
        page = parse_record(record)
    except FieldTypeError as err:
        return ("bad", "wrong_field_type", f"{record.where}: {err}")
    except ValueError as err:
        reason = "malformed_xml" if record.format == "xml" else "invalid_json"
        return ("bad", reason, f"{record.where}: {err}")
    if page is None:
        return ("meta",)
    if page.namespace != 0:
        return ("other_ns",)
    title = normalize_title(page.title)
    if not title:
        return ("bad", "empty_title", f"{record.where}: page without a usable title ({page.title!r})")
    redirect = page.redirect
    if redirect is None and page.wikitext:
        match = _REDIRECT_TEXT.match(page.wikitext)
        redirect = match.group(1) if match else None
    if redirect is not None:
        return ("redirect", title, normalize_title(redirect))
    aliases = [normalize_title(a) for a in page.aliases]
    if page.wikitext is not None:
        converted = convert(page.wikitext)
        return ("article", title, converted.text, converted.categories, [], converted.links_dropped, aliases)
    # CirrusSearch without source_text: plain text, links from `outgoing_link`.
    links = [t for t in (normalize_title(x) for x in page.outgoing_links) if t]
    categories = [normalize_title(c) for c in page.categories]
    return ("article", title, page.plain_text or "", categories, links, 0, aliases)


def _dump_spec(cfg: ExtractConfig, out_dir: Path) -> str:
    """`cfg.dump`, or the generated sample written in `cfg.sample_format` (ranks may race
    to write it: each writes a private temporary and renames it into place)."""
    if cfg.dump != "sample":
        return cfg.dump
    from stages.wiki import dump_writer
    from stages.wiki.sample import generate_sample

    stem = f"sample-{cfg.sample_articles}-{cfg.sample_seed}-{cfg.sample_fact_style}"
    inputs = out_dir / "_input"
    if cfg.sample_format in ("xml", "cirrus"):
        path = inputs / f"{stem}.{cfg.sample_format.replace('cirrus', 'json')}"
        if not path.is_file():
            corpus = generate_sample(cfg.sample_articles, cfg.sample_seed, cfg.sample_fact_style)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
            corpus.write_xml(tmp) if cfg.sample_format == "xml" else corpus.write_cirrus(tmp)
            tmp.replace(path)
        return str(path)
    pages = dump_writer.sample_pages(cfg.sample_articles, cfg.sample_seed, cfg.sample_fact_style)
    if cfg.sample_format == "multistream":
        path = inputs / f"{stem}-multistream.xml.bz2"
        if not path.is_file():
            dump_writer.write_multistream(pages, path, pages_per_stream=_SAMPLE_PAGES_PER_STREAM)
        return str(path)
    split_dir = inputs / f"{stem}-split"
    if not split_dir.is_dir():
        tmp = inputs / f"{stem}-split.{os.getpid()}.tmp"
        dump_writer.write_split(pages, tmp, "pages-articles-multistream", _SAMPLE_SPLIT_FILES, len(pages),
                                pages_per_stream=_SAMPLE_PAGES_PER_STREAM)
        with contextlib.suppress(OSError):  # another rank won the race: its copy is the same
            tmp.rename(split_dir)
        shutil.rmtree(tmp, ignore_errors=True)
    return str(split_dir)


_SAMPLE_PAGES_PER_STREAM = 20  # small streams, so even the small sample has several units
_SAMPLE_SPLIT_FILES = 3


def read_plan(cfg: ExtractConfig, out_dir: Path) -> ReadPlan:
    """The units of work of the configured dump."""
    return plan_units(dump_files(_dump_spec(cfg, out_dir)), cfg.dump_index, int(cfg.read_unit_mb * (1 << 20)),
                      workers=cfg.workers)


_PLAN = "plan"  # the marker of the shared plan, and its file's stem under `_input/`


def shared_plan(cfg: ExtractConfig, ctx) -> ReadPlan:
    """The read plan, made once per run: rank 0 reads the dump's index (`read_plan`) and writes
    the plan to `_input/plan.json` under the partial directory (atomically), then marks it done
    with the file's size and sha256; every other rank waits for that marker and reads the plan,
    checked against them. So the multistream index (~1 GB of text at enwiki) is decompressed
    once, not once per rank. A relaunch reads the stored plan."""
    from stages.core.artifacts import sha256_file
    from stages.core.safefs import atomic_write
    from stages.wiki.parallel import wait_for_markers

    path = ctx.out_dir / "_input" / f"{_PLAN}.json"
    if ctx.rank == 0 and not ctx.shard_done(_PLAN):
        plan = read_plan(cfg, ctx.out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(plan.to_json()).encode())
        ctx.mark_shard_done(_PLAN, {"bytes": path.stat().st_size, "sha256": sha256_file(path)})
        return plan
    wait_for_markers(ctx, [_PLAN])
    recorded = ctx.shard_payload(_PLAN)
    data = path.read_bytes() if path.is_file() else b""
    if len(data) != recorded["bytes"] or hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        raise RuntimeError(f"extract: {path} is missing or not the plan rank 0 wrote (size or sha256 differs); "
                           "relaunch with force=true to read the dump's index again")
    return ReadPlan.from_json(json.loads(data))


def _new_stats() -> dict:
    return {"articles": 0, "redirects": 0, "other_ns": 0, "links_dropped": 0, "bad_counts": {}, "bad_examples": []}


class _RawPart:
    """One unit's converted pages (`part-UUUUU.jsonl`) plus side tables the write phase
    sorts and resolves without decoding the texts again: titles (`.titles.txt`) with their
    byte offsets (`.offsets.npy`), and redirects (`.aliases.txt` -> `.targets.txt`)."""

    def __init__(self, raw_dir: Path, unit: int):
        self.stem = raw_dir / f"part-{unit:05d}"
        self.pages = open(f"{self.stem}.jsonl", "wb")  # noqa: SIM115 - closed in close()
        self.offset = 0
        self.titles: list[str] = []
        self.offsets: list[int] = []
        self.aliases: list[str] = []
        self.targets: list[str] = []

    def article(self, title: str, text: str, categories: list[str], links: list[str]) -> None:
        line = json.dumps({"x": text, "c": categories, "l": links}, ensure_ascii=False).encode() + b"\n"
        self.pages.write(line)
        self.titles.append(title)
        self.offsets.append(self.offset)
        self.offset += len(line)

    def redirect(self, alias: str, target: str) -> None:
        if alias and target:
            self.aliases.append(alias)
            self.targets.append(target)

    def close(self) -> None:
        self.pages.close()
        write_lines(Path(f"{self.stem}.titles.txt"), self.titles)
        np.save(f"{self.stem}.offsets.npy", np.array(self.offsets, dtype=np.int64))
        write_lines(Path(f"{self.stem}.aliases.txt"), self.aliases)
        write_lines(Path(f"{self.stem}.targets.txt"), self.targets)


def _record_result(result: tuple, out: _RawPart, stat: dict, on_error: str, dump: str) -> None:
    """Write one converted page to its unit's raw part and count it."""
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


def convert_unit(task: tuple[int, WorkUnit, str, str]) -> tuple[int, dict]:
    """Worker: read one unit (seeking to its streams), convert its pages, write its raw part."""
    index, unit, raw_dir, on_error = task
    stats = _new_stats()
    out = _RawPart(Path(raw_dir), index)
    try:
        for record in iter_unit_records(unit):
            _record_result(convert_record(record), out, stats, on_error, unit.describe())
    finally:
        out.close()
    return index, stats


def _convert_phase(cfg: ExtractConfig, ctx, plan: ReadPlan, raw_dir: Path, pool) -> None:
    mine = [u for u in range(len(plan.units)) if u % ctx.world_size == ctx.rank]
    todo = [u for u in mine if not ctx.shard_done(f"convert-{u:05d}")]
    if not todo:
        return
    raw_dir.mkdir(parents=True, exist_ok=True)
    if len(plan.units) == 1:  # one reader; the workers convert its pages
        unit = plan.units[0]
        stats, out = _new_stats(), _RawPart(raw_dir, 0)
        try:
            results = bounded_imap(pool, convert_record, iter_unit_records(unit), batch=4, ahead=4 * cfg.workers)
            for result in ctx.progress(results, desc="extract: convert", unit="page"):
                _record_result(result, out, stats, cfg.on_error, unit.describe())
        finally:
            out.close()
        ctx.mark_shard_done("convert-00000", dict(stats, rank=ctx.rank))
        return
    tasks = [(u, plan.units[u], str(raw_dir), cfg.on_error) for u in todo]
    results = pool.imap_unordered(convert_unit, tasks) if pool else map(convert_unit, tasks)
    for index, stats in ctx.progress(results, total=len(tasks), desc="extract: convert", unit="unit"):
        ctx.mark_shard_done(f"convert-{index:05d}", dict(stats, rank=ctx.rank))  # as each finishes: a crash keeps it


def _wait_for_shards(ctx, shards: int, poll_s: float = 2.0) -> None:
    """Rank 0 waits until every rank's convert units are marked done (a file barrier)."""
    while not all(ctx.shard_done(f"convert-{s:05d}") for s in range(shards)):
        time.sleep(poll_s)


def _build_tables(raw_dir: Path, parts: int, ctx) -> dict:
    """Sort the titles into ids and resolve the redirects, on disk (`raw/tables/`).

    Duplicate titles and aliases keep their first occurrence in dump order (units are in
    dump order). Writes `titles.txt` (id order) with `part.npy`/`offset.npy` (where each
    article's page is) and `redirects.txt` -> `targets.txt` (resolved, hash-indexed)."""
    tables = raw_dir / "tables"
    shutil.rmtree(tables, ignore_errors=True)  # a relaunch rebuilds them from the parts
    tables.mkdir()
    _WORKER_TABLES.clear()
    stems = [raw_dir / f"part-{u:05d}" for u in range(parts)]
    titles = concatenate([Path(f"{s}.titles.txt") for s in stems], tables / "all-titles.txt")
    offsets = [np.load(f"{s}.offsets.npy") for s in stems]
    part_of = np.concatenate([np.full(len(o), u, np.int32) for u, o in enumerate(offsets)] or [np.zeros(0, np.int32)])
    offset_of = np.concatenate(offsets or [np.zeros(0, np.int64)])
    del offsets
    order = sorted_order(titles)
    keep = np.ones(len(order), bool)
    if len(order) > 1:
        keep[1:] = ~equal_rows(titles, order[1:], order[:-1])
    for row in order[~keep][:_DETAILS_KEPT]:
        ctx.skip("duplicate_title", titles[int(row)])
    if (~keep).sum() > _DETAILS_KEPT:
        ctx.skip("duplicate_title", None, count=int((~keep).sum()) - _DETAILS_KEPT)
    rows = order[keep]
    del order, keep
    np.save(tables / "part.npy", part_of[rows])
    np.save(tables / "offset.npy", offset_of[rows])
    del part_of, offset_of
    n_articles = write_lines(tables / "titles.txt", (titles[int(r)] for r in rows))
    del rows
    title_table = StringTable(tables / "titles.txt")
    title_table.save_starts()  # write workers map the tables
    articles = HashIndex.build(title_table)
    redirects = _resolve_redirects(stems, tables, articles)
    return {"articles": n_articles, "redirects": redirects}


def _resolve_redirects(stems: list[Path], tables: Path, articles: HashIndex) -> int:
    """Alias -> final title, following chains of any length; an alias that is also an article,
    or whose chain runs into a cycle (of any length: A->B->A drops both), is dropped. Vectorized over all
    aliases at once: per alias a few int64 arrays, no Python objects."""
    aliases = concatenate([Path(f"{s}.aliases.txt") for s in stems], tables / "all-aliases.txt")
    targets = concatenate([Path(f"{s}.targets.txt") for s in stems], tables / "all-targets.txt")
    n = len(aliases)
    hashes = hash_strings(aliases)
    by_hash = np.argsort(hashes, kind="stable")  # equal aliases adjacent, in dump order
    first = np.ones(n, bool)
    if n > 1:
        candidates = np.flatnonzero(hashes[by_hash][1:] == hashes[by_hash][:-1])
        same = equal_rows(aliases, by_hash[candidates + 1], by_hash[candidates])
        first[by_hash[candidates + 1][same]] = False
    del hashes, by_hash
    valid = first & (articles.find_table(aliases) < 0)
    valid_rows = np.flatnonzero(valid)
    alias_index = HashIndex.build(aliases, valid_rows)
    via_alias = alias_index.find_table(targets)  # row of the alias a target names, or -1
    to_article = articles.find_table(targets) >= 0
    moves = (via_alias >= 0) & ~to_article  # this alias's target is another alias: follow it
    # Pointer doubling: after k squarings pointer[i] is the 2**k-th alias along i's chain, so
    # with 2**k >= n every chain that ends has reached its end (an alias that does not move);
    # a chain that still moves there runs into a cycle, whatever its length.
    pointer = np.where(moves, via_alias, np.arange(n))
    for _ in range(max(int(n).bit_length(), 1)):
        pointer = pointer[pointer]
    kept = valid_rows[~moves[pointer[valid_rows]]]
    write_lines(tables / "redirects.txt", (aliases[int(r)] for r in kept))
    write_lines(tables / "targets.txt", (targets[int(pointer[r])] for r in kept))
    for name in ("redirects.txt", "targets.txt"):
        StringTable(tables / name).save_starts()
    HashIndex.build(StringTable(tables / "redirects.txt"))
    return len(kept)


def _write_json_map(path: Path, keys: StringTable, values: StringTable) -> None:
    """`redirects.json` streamed from two tables."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write("{")
        for lo in range(0, len(keys), 100_000):
            hi = min(lo + 100_000, len(keys))
            items = dict(zip(keys.slice(lo, hi), values.slice(lo, hi)))
            out.write(("," if lo else "") + json.dumps(items, ensure_ascii=False)[1:-1])
        out.write("}\n")
    tmp.replace(path)


_WORKER_TABLES: dict[str, tuple] = {}


def _tables_of(tables: str) -> tuple:
    """The write phase's tables, mapped once per worker process."""
    if tables not in _WORKER_TABLES:
        _WORKER_TABLES.clear()
        base = Path(tables)
        redirects = StringTable(base / "redirects.txt")
        _WORKER_TABLES[tables] = (
            StringTable(base / "titles.txt"), np.load(base / "part.npy", mmap_mode="r"),
            np.load(base / "offset.npy", mmap_mode="r"), HashIndex(redirects), StringTable(base / "targets.txt"))
    return _WORKER_TABLES[tables]


def _resolved(table: dict[str, str], title: str) -> str:
    return table.get(title, title)


def write_shard(task: tuple[int, int, int, dict]) -> dict:
    """Worker: render links and write output shard `index` (ids first..end-1, and their
    Markdown files). `state` names the raw and output directories and the export flag."""
    index, first_id, end_id, state = task
    titles, part_of, offset_of, redirect_index, redirect_targets = _tables_of(state["tables"])
    writer = ShardWriter(state["out_dir"] / shard_name(index))
    md_dir = state["out_dir"] / "markdown"
    handles: dict[int, object] = {}
    links_kept = 0
    with contextlib.ExitStack() as files:
        for lo in range(first_id, end_id, _WRITE_BATCH):
            hi = min(lo + _WRITE_BATCH, end_id)
            rows = []
            for article_id in range(lo, hi):
                part = int(part_of[article_id])
                if part not in handles:
                    handles[part] = files.enter_context(open(state["raw_dir"] / f"part-{part:05d}.jsonl", "rb"))
                handles[part].seek(int(offset_of[article_id]))
                rows.append(json.loads(handles[part].readline()))
            wanted = list({t for row in rows for t in (*marked_link_titles(row["x"]), *row["l"])})
            found = redirect_index.find(wanted)
            resolved = {wanted[i]: redirect_targets[int(found[i])] for i in np.flatnonzero(found >= 0)}
            resolve = functools.partial(_resolved, resolved)
            for article_id, title, row in zip(range(lo, hi), titles.slice(lo, hi), rows):
                text, links = render_links(row["x"], resolve)
                links += [resolve(t) for t in row["l"]]
                links_kept += len(links)
                writer.write(Article(article_id, title, text, list(dict.fromkeys(links)), row["c"]))
                if state["export_markdown"]:
                    md, _ = render_links(row["x"], resolve, target_form=file_stem)
                    (md_dir / f"{file_stem(title)}.md").write_text(f"# {title}\n\n{md}\n", encoding="utf-8")
    writer.close()
    return {"shard": index, "articles": end_id - first_id, "links_kept": links_kept}


def _write_phase(cfg: ExtractConfig, ctx, raw_dir: Path, parts: int, pool) -> dict:
    started, started_cpu = time.perf_counter(), time.process_time()
    counts = _build_tables(raw_dir, parts, ctx)
    tables = raw_dir / "tables"
    write_titles_json(ctx.out_dir / "titles.json", StringTable(tables / "titles.txt"))
    shutil.copyfile(tables / "titles.txt", ctx.out_dir / "titles.txt")
    _write_json_map(ctx.out_dir / "redirects.json", StringTable(tables / "redirects.txt"),
                    StringTable(tables / "targets.txt"))
    if cfg.export_markdown:
        (ctx.out_dir / "markdown").mkdir(exist_ok=True)
    serial = {"tables_s": round(time.perf_counter() - started, 2),  # rank 0 alone: the serial part
              "tables_cpu_s": round(time.process_time() - started_cpu, 2)}
    started = time.perf_counter()
    n = counts["articles"]
    per_shard = -(-n // cfg.shards) if n else 0
    state = {"tables": str(tables), "raw_dir": raw_dir, "out_dir": ctx.out_dir, "export_markdown": cfg.export_markdown}
    todo = [(k, min(k * per_shard, n), min((k + 1) * per_shard, n), state)
            for k in range(cfg.shards) if not ctx.shard_done(f"write-{k:05d}")]
    results = bounded_imap(pool, write_shard, todo, batch=1, ahead=cfg.workers)
    for result in ctx.progress(results, total=len(todo), desc="extract: write"):
        ctx.mark_shard_done(f"write-{result['shard']:05d}", result)  # as each finishes: a crash keeps it
    links_kept = sum(ctx.shard_payload(f"write-{k:05d}")["links_kept"] for k in range(cfg.shards))
    return {"articles": n, "redirects": counts["redirects"], "links_kept": links_kept, **serial,
            "write_s": round(time.perf_counter() - started, 2)}


def _report_skips(ctx, converted: list[dict]) -> None:
    """Bad input of every unit: up to _DETAILS_KEPT examples per reason, then counts."""
    shown: dict[str, int] = {}
    totals: dict[str, int] = {}
    for payload in converted:
        for reason, detail in payload["bad_examples"]:
            if shown.get(reason, 0) < _DETAILS_KEPT:
                ctx.skip(reason, detail)
                shown[reason] = shown.get(reason, 0) + 1
        for reason, count in payload["bad_counts"].items():
            totals[reason] = totals.get(reason, 0) + count
    for reason, count in totals.items():
        if count > shown.get(reason, 0):
            ctx.skip(reason, None, count=count - shown.get(reason, 0))


def _refuse_all_bad(cfg: ExtractConfig, converted: list[dict]) -> None:
    """An input in which every record was bad is not a dump: fail rather than commit nothing."""
    good = sum(p["articles"] + p["redirects"] + p["other_ns"] for p in converted)
    bad: dict[str, int] = {}
    for payload in converted:
        for reason, count in payload["bad_counts"].items():
            bad[reason] = bad.get(reason, 0) + count
    if good == 0 and bad:
        example = next((detail for p in converted for _, detail in p["bad_examples"]), "")
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(bad.items(), key=lambda kv: -kv[1]))
        raise ValueError(f"extract: no usable page in dump={cfg.dump}: every record was bad ({reasons}; first: "
                         f"{example[:200]}); pass a MediaWiki XML export or a CirrusSearch dump")


def _write_sample_facts(cfg: ExtractConfig, out_dir: Path) -> None:
    """Record what the generator planted, so evaluation reads it from the artifact."""
    from stages.formats.facts import write_facts
    from stages.wiki.sample import generate_sample

    write_facts(out_dir, generate_sample(cfg.sample_articles, cfg.sample_seed, cfg.sample_fact_style).articles)


def run(cfg: ExtractConfig, ctx) -> dict:
    """Extract articles from `cfg.dump` into ctx.out_dir (see the module docstring).

    The scratch (`raw/`, `_input/`) is removed only after a `finished` marker records the
    metrics and skips, so a relaunch after a signal anywhere from there to the commit (which
    hashes every output file) completes from that marker instead of failing on the lost scratch."""
    if ctx.shard_done(_FINISHED):  # rank 0 completes from the marker; the others have nothing left
        return _finish(ctx, ctx.shard_payload(_FINISHED)) if ctx.rank == 0 else {}
    plan = shared_plan(cfg, ctx)
    if plan.index_problems and cfg.on_error == "fail":
        raise ValueError(f"extract: {plan.index_problems[0]}; pass the index of this dump (dump_index=) "
                         "or on_error=skip to read it with one reader")
    raw_dir = ctx.out_dir / "raw"
    pool = worker_pool(cfg.workers)
    started = time.perf_counter()
    try:
        _convert_phase(cfg, ctx, plan, raw_dir, pool)
        if ctx.rank != 0:
            return {}
        _wait_for_shards(ctx, len(plan.units))
        convert_s = round(time.perf_counter() - started, 2)
        converted = [ctx.shard_payload(f"convert-{u:05d}") for u in range(len(plan.units))]
        _refuse_all_bad(cfg, converted)
        metrics = _write_phase(cfg, ctx, raw_dir, len(plan.units), pool)
    finally:
        if pool:
            pool.terminate()
    for problem in plan.index_problems:
        ctx.skip("index_mismatch", problem)
    _report_skips(ctx, converted)
    if cfg.dump == "sample":
        _write_sample_facts(cfg, ctx.out_dir)
    parallel = sum(1 for u in plan.units if u.streams)
    metrics.update(
        links_dropped=sum(p["links_dropped"] for p in converted),
        redirect_pages=sum(p["redirects"] for p in converted),
        other_namespace_pages=sum(p["other_ns"] for p in converted),
        skipped=sum(sum(p["bad_counts"].values()) for p in converted) + len(plan.index_problems),
        format="sample-" + cfg.sample_format if cfg.dump == "sample" else cfg.dump,
        read_units=len(plan.units),
        convert_s=convert_s,
        read_units_by_rank=[sum(1 for p in converted if p.get("rank", 0) == r) for r in range(ctx.world_size)],
        reading=(f"parallel: {len(plan.units)} units ({parallel} multistream byte ranges, "
                 f"{len(plan.units) - parallel} whole files)" if plan.parallel
                 else "serial: one reader decompresses the whole dump (a single bzip2/gzip stream "
                      "cannot be entered in the middle; give a multistream dump with its index, or split files)"),
        reading_notes=plan.notes[:_DETAILS_KEPT],
    )
    ctx.mark_shard_done(_FINISHED, {"metrics": metrics, "skipped": dict(ctx.skipped),
                                     "examples": ctx.skipped_examples})
    return _finish(ctx, None, metrics)


#: Marker of a finished extraction: its payload holds the metrics and the skips.
_FINISHED = "finished"


def _finish(ctx, payload: dict | None, metrics: dict | None = None) -> dict:
    """Remove the scratch and return the metrics; from a `finished` marker's payload on a relaunch."""
    from stages.core.faults import fault_point

    if payload is not None:
        metrics = payload["metrics"]
        ctx.skipped.update(payload["skipped"])
        ctx.skipped_examples.update(payload["examples"])
    shutil.rmtree(ctx.out_dir / "raw", ignore_errors=True)
    fault_point("extract.after_raw_removed")
    shutil.rmtree(ctx.out_dir / "_input", ignore_errors=True)
    ctx.log.info("extract: %(articles)d articles, %(redirects)d redirects, %(links_kept)d links; %(reading)s", metrics)
    return metrics
