"""`pretokenize`: extract articles -> memory-mapped tiktoken shards plus a document index.

One token shard per article shard (each with a completion marker, so a relaunch redoes only
missing shards; ranks take shards `s % world_size == rank`). This process only splits the
article shards into chunks of raw lines and writes tokens; worker threads decode, clean
and encode the chunks. Link targets in the Markdown lose the export's hash
suffix before encoding: `[text](Title_a1b2c3)` -> `[text](Title)`.
"""

from __future__ import annotations

import functools
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import zstandard

from stages.core.tiktoken_offline import resolve_encoding_info
from stages.formats.articles import shard_paths
from stages.formats.tokens import TokenShardWriter, token_dtype, write_index, write_meta
from stages.wiki.config import PretokenizeConfig
from stages.wiki.parallel import bounded_thread_map
from stages.wiki.titles import strip_stem_hash

_HASHED_TARGET = re.compile(r"\]\(([^\s)]*_[0-9a-f]{6})\)")
#: Bytes of article JSON per worker task: small enough to balance, large enough to amortize.
_CHUNK_BYTES = 128 * 1024


def clean_link_targets(text: str) -> str:
    """`[text](Title_a1b2c3)` -> `[text](Title)` where the suffix is the title's own hash."""
    if "_" not in text:
        return text
    return _HASHED_TARGET.sub(lambda m: f"]({strip_stem_hash(m.group(1))})", text)


def encode_ordinary_array(encoding, text: str, dtype: np.dtype) -> np.ndarray:
    """`encoding.encode_ordinary(text)` as a numpy array, without a Python list in between:
    with no special token allowed and none disallowed, `<|endoftext|>` in an article is
    plain text, exactly as in encode_ordinary."""
    tokens = encoding.encode_to_numpy(text, allowed_special=set(), disallowed_special=())
    return tokens.astype(dtype, copy=False)


def encode_chunk(encoding, cfg: PretokenizeConfig,
                 task: tuple[int, list[bytes]]) -> tuple[int, list[int], np.ndarray, bytes]:
    """Worker: parse, clean and encode a chunk `(shard, raw article lines)`.

    Returns (shard, article ids, token counts, token bytes). The reading thread passes the
    lines as they are (bytes, no JSON decoding there), so it stays light."""
    shard, lines = task
    dtype = token_dtype(encoding.n_vocab)
    ids, arrays = [], []
    for line in lines:
        article = json.loads(line)
        text = clean_link_targets(article["text"])
        if cfg.title_heading:
            text = f"# {article['title']}\n\n{text}"
        ids.append(article["id"])
        arrays.append(encode_ordinary_array(encoding, text, dtype))
        if cfg.append_eot:
            arrays[-1] = np.append(arrays[-1], np.array(encoding.eot_token, dtype=dtype))
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    data = np.concatenate(arrays) if arrays else np.zeros(0, dtype)
    return shard, ids, lengths, data.tobytes()


def _chunks(shards: list[tuple[int, Path]]):
    """`(shard, lines)` tasks of about _CHUNK_BYTES of raw article lines, shard after shard, in order."""
    for shard, article_path in shards:
        lines, size = [], 0
        with open(article_path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            for line in io.BufferedReader(reader, 1 << 20):
                lines.append(line)
                size += len(line)
                if size >= _CHUNK_BYTES:
                    yield shard, lines
                    lines, size = [], 0
        # Every shard ends with a task (maybe empty), so that its file gets written.
        yield shard, lines


def encode_shards(shards: list[tuple[int, Path]], cfg: PretokenizeConfig, ctx, encoding) -> None:
    """Encode article shards into token shards in one pipeline (no idle gap between shards):
    this thread reads articles and writes tokens, `cfg.workers` threads encode. tiktoken
    releases the GIL while it encodes, so threads scale like processes without their start-up
    and pickling (measured in benchmarks/bench_pretokenize.py)."""
    current: TokenShardWriter | None = None
    encode = functools.partial(encode_chunk, encoding, cfg)
    results = bounded_thread_map(encode, _chunks(shards), cfg.workers, ahead=2 * cfg.workers)
    for shard, ids, lengths, data in ctx.progress(results, desc="pretokenize", unit="chunk"):
        if current is None or current.shard != shard:
            if current is not None:
                ctx.mark_shard_done(f"encode-{current.shard:05d}", current.finish())
            current = TokenShardWriter(shard, ctx.out_dir)
        current.write(ids, lengths, data)
    if current is not None:
        ctx.mark_shard_done(f"encode-{current.shard:05d}", current.finish())


def run(cfg: PretokenizeConfig, ctx) -> dict:
    """Encode the upstream extract artifact's articles into ctx.out_dir."""
    article_shards = shard_paths(ctx.upstream["extract"].path)
    # Resolved (and cached) once; the encoder threads share it.
    encoding, info = resolve_encoding_info(cfg.encoding, ctx.cache_dir)
    mine = [s for s in range(len(article_shards)) if s % ctx.world_size == ctx.rank]
    todo = [(s, article_shards[s]) for s in mine if not ctx.shard_done(f"encode-{s:05d}")]
    started = time.time()
    if todo:
        encode_shards(todo, cfg, ctx, encoding)
    if ctx.rank != 0:
        return {}
    keys = [f"encode-{s:05d}" for s in range(len(article_shards))]
    while not all(ctx.shard_done(k) for k in keys):  # file barrier for the other ranks
        time.sleep(2.0)
    results = [ctx.shard_payload(k) for k in keys]
    index = write_index(ctx.out_dir, len(article_shards))
    meta = dict(info, title_heading=cfg.title_heading, append_eot=cfg.append_eot,
                shards=[{k: r[k] for k in ("file", "docs", "tokens", "sha256")} for r in results])
    write_meta(ctx.out_dir, meta)
    tokens = int(sum(r["tokens"] for r in results))
    metrics = {
        "documents": len(index),
        "tokens": tokens,
        "shards": len(results),
        "encoding": cfg.encoding,
        "dtype": info["dtype"],
        "tokenizer_sha256": info["sha256"],
        "tokens_per_doc_mean": round(tokens / max(len(index), 1), 2),
        "encode_seconds": round(time.time() - started, 3),
    }
    ctx.record["tokenizer_sources"] = {k: v["source"] for k, v in info["files"].items()}
    return metrics
