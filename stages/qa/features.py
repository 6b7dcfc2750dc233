"""Segment features for MemXLNet, built streaming and cached on disk.

Segment layout (right-padded to ``max_seq_length``)::

    [MEM_READ_0..N-1] question <sep> context-window <sep> [MEM_WRITE_0..N-1] <cls> <pad>...

XLNet's classifier token comes LAST, so the CLS position depends on the segment's length; it is
stored per segment (``cls_index``) and never assumed. Every segment repeats the question. Windows
start every ``doc_stride`` context tokens (at most the window size, so no text is skipped).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.qa.data import QAExample

FEATURES_VERSION = 1
SEG_A, SEG_B, SEG_CLS, SEG_PAD = 0, 1, 2, 4
# name -> (dtype, trailing shape given max_seq_length)
SEGMENT_ARRAYS = {
    "input_ids": (np.int32, lambda L: (L,)),
    "token_type_ids": (np.int8, lambda L: (L,)),
    "offsets": (np.int32, lambda L: (L, 2)),
    "length": (np.int32, lambda L: ()),
    "cls_index": (np.int32, lambda L: ()),
    "start_positions": (np.int32, lambda L: ()),
    "end_positions": (np.int32, lambda L: ()),
    "has_answer": (np.bool_, lambda L: ()),
}
DOC_ARRAYS = {"first_segment": np.int64, "n_segments": np.int32, "answer_segment": np.int32}


@dataclass(frozen=True)
class SegmentLayout:
    """How a document is cut into model segments: lengths, stride, and the memory token ids."""

    max_seq_length: int
    doc_stride: int
    max_query_length: int
    max_n_segs: int
    read_token_ids: tuple[int, ...]
    write_token_ids: tuple[int, ...]


#: Tokens of a segment that are neither question, memory nor context: two separators and CLS.
SPECIAL_TOKENS = 3


def context_room(seq_length: int, memory_tokens: int, query_tokens: int) -> int:
    """Context tokens a segment of ``seq_length`` holds after ``query_tokens`` question tokens,
    ``memory_tokens`` read plus as many write tokens, and the special tokens."""
    return seq_length - 2 * memory_tokens - query_tokens - SPECIAL_TOKENS


def _answer_tokens(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """First and last context token overlapping the character span [start, end)."""
    hit = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    return (hit[0], hit[-1]) if hit else None


def featurize(example: QAExample, tokenizer, spec: SegmentLayout) -> tuple[dict[str, np.ndarray], int]:
    """Segment arrays for one example, and the index of the first segment holding the answer (-1: none)."""
    L, n_mem = spec.max_seq_length, len(spec.read_token_ids)
    question = tokenizer(example.question, add_special_tokens=False)["input_ids"][: spec.max_query_length]
    encoded = tokenizer(example.context, add_special_tokens=False, return_offsets_mapping=True)
    ctx_ids, ctx_offsets = encoded["input_ids"], [tuple(o) for o in encoded["offset_mapping"]]
    window = context_room(L, n_mem, len(question))
    if window < 1:
        raise ValueError(f"max_seq_length: {L} leaves no room for context after the question and "
                         f"{2 * n_mem} memory tokens; raise max_seq_length or lower max_query_length")
    step = max(1, min(spec.doc_stride, window))
    span = None
    if example.answers:
        first = example.answers[0]
        span = _answer_tokens(ctx_offsets, first["answer_start"], first["answer_start"] + len(first["text"]))
    rows: dict[str, list] = {k: [] for k in SEGMENT_ARRAYS}
    answer_segment, begin = -1, 0
    while len(rows["length"]) < spec.max_n_segs:
        end = min(begin + window, len(ctx_ids))
        head = list(spec.read_token_ids) + question + [tokenizer.sep_token_id]
        ids = head + ctx_ids[begin:end] + [tokenizer.sep_token_id] + list(spec.write_token_ids) + [tokenizer.cls_token_id]
        n = len(ids)
        types = [SEG_A] * len(head) + [SEG_B] * (n - len(head) - 1) + [SEG_CLS]
        offsets = [(-1, -1)] * len(head) + ctx_offsets[begin:end] + [(-1, -1)] * (n - len(head) - (end - begin))
        cls = n - 1
        s = e = cls
        if span is not None and begin <= span[0] and span[1] < end:
            s, e = span[0] - begin + len(head), span[1] - begin + len(head)
            if answer_segment < 0:
                answer_segment = len(rows["length"])
        pad = L - n
        rows["input_ids"].append(ids + [tokenizer.pad_token_id] * pad)
        rows["token_type_ids"].append(types + [SEG_PAD] * pad)
        rows["offsets"].append(offsets + [(-1, -1)] * pad)
        rows["length"].append(n)
        rows["cls_index"].append(cls)
        rows["start_positions"].append(s)
        rows["end_positions"].append(e)
        rows["has_answer"].append(s != cls)
        if end >= len(ctx_ids):
            break
        begin += step
    return {k: np.asarray(v, dtype=SEGMENT_ARRAYS[k][0]) for k, v in rows.items()}, answer_segment


class FeatureStore:
    """Memory-mapped segment and document arrays plus the examples (for answer text and scoring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = json.loads((self.path / "meta.json").read_text())
        L, S, D = self.meta["max_seq_length"], self.meta["n_segments"], self.meta["n_docs"]
        self.segments = {
            k: np.memmap(self.path / f"{k}.bin", dtype=dt, mode="r", shape=(S, *shape(L))) if S else np.zeros((0, *shape(L)), dt)
            for k, (dt, shape) in SEGMENT_ARRAYS.items()
        }
        self.docs = {k: np.fromfile(self.path / f"{k}.bin", dtype=dt) for k, dt in DOC_ARRAYS.items()}
        assert all(len(v) == D for v in self.docs.values()), f"{self.path}: truncated feature cache"

    def __len__(self) -> int:
        return self.meta["n_docs"]

    def examples(self) -> list[dict]:
        with open(self.path / "examples.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f]


def build_features(examples: Iterable[QAExample], tokenizer, spec: SegmentLayout, out_dir: Path,
                   progress: Callable = lambda it: it) -> FeatureStore:
    """Featurize example by example, appending to files (bounded memory), then rename into place."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_segments = n_docs = 0
    with contextlib.ExitStack() as files:
        seg_files = {k: files.enter_context(open(tmp / f"{k}.bin", "wb")) for k in SEGMENT_ARRAYS}
        doc_files = {k: files.enter_context(open(tmp / f"{k}.bin", "wb")) for k in DOC_ARRAYS}
        ex_file = files.enter_context(open(tmp / "examples.jsonl", "w", encoding="utf-8"))
        for example in progress(examples):
            arrays, answer_segment = featurize(example, tokenizer, spec)
            for k, f in seg_files.items():
                f.write(arrays[k].tobytes())
            count = len(arrays["length"])
            for k, value in (("first_segment", n_segments), ("n_segments", count), ("answer_segment", answer_segment)):
                doc_files[k].write(np.asarray([value], dtype=DOC_ARRAYS[k]).tobytes())
            ex_file.write(json.dumps({"id": example.qid, "context": example.context, "answers": example.answers}) + "\n")
            n_segments += count
            n_docs += 1
    meta = {"version": FEATURES_VERSION, "n_docs": n_docs, "n_segments": n_segments, **spec.__dict__}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=list))
    if out_dir.exists():  # another rank or run finished first; theirs is identical
        shutil.rmtree(tmp)
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    return FeatureStore(out_dir)


def features_key(squad: dict, tokenizer, spec: SegmentLayout) -> str:
    """Cache key: the exact data, the tokenizer's vocabulary and every featurization setting."""
    digest = hashlib.sha256()
    digest.update(json.dumps(squad, sort_keys=True).encode("utf-8"))
    digest.update(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    digest.update(json.dumps({"v": FEATURES_VERSION, **spec.__dict__}, sort_keys=True, default=list).encode())
    return digest.hexdigest()[:20]


def cached_features(squad: dict, examples: Callable[[], Iterable[QAExample]], tokenizer, spec: SegmentLayout,
                    cache_root: Path, progress: Callable = lambda it: it) -> tuple[FeatureStore, bool]:
    """The features for this data/tokenizer/spec, built once; returns (store, reused)."""
    path = Path(cache_root) / features_key(squad, tokenizer, spec)
    if (path / "meta.json").is_file():
        return FeatureStore(path), True
    return build_features(examples(), tokenizer, spec, path, progress), False
