"""`pretokenize`: extract articles -> memory-mapped tiktoken shards plus a document index.

One token shard per article shard, encoded in parallel worker processes (each shard is a
unit of work with a completion marker, so a relaunch redoes only missing shards; ranks take
shards `s % world_size == rank`). Link targets in the Markdown lose the export's hash
suffix before encoding: `[text](Title_a1b2c3)` -> `[text](Title)`.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import time
from pathlib import Path

import numpy as np

from stages.core.artifacts import write_json_atomic
from stages.wiki.articles import iter_shard, shard_paths
from stages.wiki.config import PretokenizeConfig
from stages.wiki.titles import strip_stem_hash
from stages.wiki.tokenizer import resolve_encoding_info
from stages.wiki.tokens import INDEX_DTYPE, token_dtype, token_shard_name

_HASHED_TARGET = re.compile(r"\]\(([^\s)]*_[0-9a-f]{6})\)")
_BATCH_DOCS = 256


def clean_link_targets(text: str) -> str:
    """`[text](Title_a1b2c3)` -> `[text](Title)` where the suffix is the title's own hash."""
    if "_" not in text:
        return text
    return _HASHED_TARGET.sub(lambda m: f"]({strip_stem_hash(m.group(1))})", text)


def encode_shard(task: tuple) -> dict:
    """Worker: encode one article shard into `tokens-NNNNN.bin` and `index-NNNNN.npy`."""
    shard, article_path, out_dir, cfg, cache_dir = task
    encoding, info = resolve_encoding_info(cfg.encoding, cache_dir)
    dtype = token_dtype(encoding.n_vocab)
    out_dir = Path(out_dir)
    bin_path = out_dir / token_shard_name(shard)
    tmp = bin_path.with_name(bin_path.name + ".tmp")
    digest = hashlib.sha256()
    doc_ids, lengths = [], []

    def flush(batch_ids, batch_texts, out):
        for doc_tokens in encoding.encode_ordinary_batch(batch_texts, num_threads=1):
            if cfg.append_eot:
                doc_tokens.append(encoding.eot_token)
            array = np.asarray(doc_tokens, dtype=dtype)
            data = array.tobytes()
            out.write(data)
            digest.update(data)
            lengths.append(array.size)
        doc_ids.extend(batch_ids)

    with open(tmp, "wb") as out:
        batch_ids, batch_texts = [], []
        for article in iter_shard(Path(article_path)):
            text = clean_link_targets(article.text)
            if cfg.title_heading:
                text = f"# {article.title}\n\n{text}"
            batch_ids.append(article.id)
            batch_texts.append(text)
            if len(batch_texts) >= _BATCH_DOCS:
                flush(batch_ids, batch_texts, out)
                batch_ids, batch_texts = [], []
        if batch_texts:
            flush(batch_ids, batch_texts, out)
    tmp.replace(bin_path)
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    index = np.zeros(len(doc_ids), dtype=INDEX_DTYPE)
    index["doc_id"] = doc_ids
    index["shard"] = shard
    index["length"] = lengths_arr
    index["offset"] = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]) if len(lengths_arr) else []
    np.save(out_dir / f"index-{shard:05d}.npy", index)
    return {"shard": shard, "docs": len(doc_ids), "tokens": int(lengths_arr.sum()),
            "sha256": digest.hexdigest(), "file": bin_path.name}


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run(cfg: PretokenizeConfig, ctx) -> dict:
    """Encode the upstream extract artifact's articles into ctx.out_dir."""
    article_shards = shard_paths(ctx.upstream["extract"].path)
    # Resolve (and cache) the encoding once here, so workers only read the local cache.
    _, info = resolve_encoding_info(cfg.encoding, ctx.cache_dir)
    mine = [s for s in range(len(article_shards)) if s % ctx.world_size == ctx.rank]
    todo = [(s, str(article_shards[s]), str(ctx.out_dir), cfg, str(ctx.cache_dir))
            for s in mine if not ctx.shard_done(f"encode-{s:05d}")]
    started = time.time()
    if cfg.workers > 1 and len(todo) > 1:
        with _mp_context().Pool(min(cfg.workers, len(todo))) as pool:
            for result in ctx.progress(pool.imap_unordered(encode_shard, todo), total=len(todo),
                                       desc="pretokenize", unit="shard"):
                ctx.mark_shard_done(f"encode-{result['shard']:05d}", result)
    else:
        for task in ctx.progress(todo, total=len(todo), desc="pretokenize", unit="shard"):
            result = encode_shard(task)
            ctx.mark_shard_done(f"encode-{result['shard']:05d}", result)
    if ctx.rank != 0:
        return {}
    keys = [f"encode-{s:05d}" for s in range(len(article_shards))]
    while not all(ctx.shard_done(k) for k in keys):  # file barrier for the other ranks
        time.sleep(2.0)
    results = [ctx.shard_payload(k) for k in keys]
    parts = [ctx.out_dir / f"index-{s:05d}.npy" for s in range(len(article_shards))]
    index = np.concatenate([np.load(p) for p in parts]) if parts else np.zeros(0, INDEX_DTYPE)
    index = index[np.argsort(index["doc_id"], kind="stable")]
    np.save(ctx.out_dir / "index.npy", index)
    for p in parts:
        p.unlink()
    meta = dict(info, title_heading=cfg.title_heading, append_eot=cfg.append_eot,
                shards=[{k: r[k] for k in ("file", "docs", "tokens", "sha256")} for r in results])
    write_json_atomic(ctx.out_dir / "tokenizer.json", meta)
    tokens = int(sum(r["tokens"] for r in results))
    metrics = {
        "documents": int(len(index)),
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
