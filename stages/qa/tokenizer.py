"""XLNet SentencePiece tokenizers without a model hub.

- A path to a ``spiece.model`` (e.g. the real XLNet one) or an HF folder: used as given.
- ``auto`` with no such file: a small BPE SentencePiece model is trained on the training
  contexts (deterministic: one thread, fixed input order) and cached under the cache dir by the
  hash of its input, so a second run and every rank reuse the same file. BPE, not unigram: on
  templated text the unigram trainer prunes the most frequent words into letters ("The" ->
  "T"+"he", twice the tokens per segment). The trainer skips any sentence over its length limit,
  so a context longer than that (a whole article: `long_context=0`, the default) reaches it as
  chunks cut at whitespace (`trainer_sentences`); contexts within the limit go in unchanged.
The SentencePiece model is wrapped in transformers' XLNetTokenizer with XLNet's special tokens
(``<sep>``, ``<cls>`` at the end, ``<pad>``, ...), which gives offsets mappings for span QA.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from transformers import XLNetTokenizer

XLNET_CONTROL_SYMBOLS = ("<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>")
BPE_MODEL_TYPE = 2  # sentencepiece TrainerSpec.ModelType.BPE
#: SentencePiece's default `max_sentence_length` (bytes): longer input sentences are skipped. Not
#: passed to the trainer (an explicit value would be serialized into the model's TrainerSpec and
#: change the bytes of every trained model); texts are cut below it instead.
MAX_SENTENCE_BYTES = 4192


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _field(buf: bytes, number: int, wanted_wire_type: int):
    """The first field ``number`` of a serialized protobuf message (bytes or int), or None."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field_number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
            if field_number == number and wanted_wire_type == 0:
                return value
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            if field_number == number and wanted_wire_type == 2:
                return buf[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"spiece model: unsupported protobuf wire type {wire_type}; is it a SentencePiece model?")
    return None


def wrap_sentencepiece(model_file: str | Path) -> XLNetTokenizer:
    """An XLNetTokenizer over a SentencePiece unigram model file (no protobuf package needed)."""
    import sentencepiece as spm

    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(f"tokenizer: {model_file} does not exist; pass a SentencePiece .model file")
    proto = model_file.read_bytes()
    sp = spm.SentencePieceProcessor(model_proto=proto)
    # ModelProto.trainer_spec (field 2) -> TrainerSpec.model_type (field 3; 2 = BPE).
    trainer = _field(proto, 2, 2)
    bpe = trainer is not None and _field(trainer, 3, 0) == BPE_MODEL_TYPE
    # transformers' XLNetTokenizer segments with a unigram model over piece scores. A BPE model's
    # scores are merge ranks, under which unigram search prefers short pieces; scoring every piece
    # about -1 (earlier merges slightly higher) makes the search pick the fewest pieces instead.
    vocab = [(sp.id_to_piece(i), -1.0 - i * 1e-6 if bpe and sp.is_unknown(i) is False and not sp.is_control(i)
              else sp.get_score(i)) for i in range(sp.get_piece_size())]
    # ModelProto.normalizer_spec (field 3) -> NormalizerSpec.precompiled_charsmap (field 3).
    normalizer = _field(proto, 3, 2)
    charsmap = _field(normalizer, 3, 2) if normalizer else None
    missing = [s for s in XLNET_CONTROL_SYMBOLS if sp.piece_to_id(s) == sp.unk_id()]
    if missing:
        raise ValueError(f"tokenizer: {model_file} lacks XLNet symbols {missing}; train it with them as control symbols")
    return XLNetTokenizer(vocab=vocab, unk_id=sp.unk_id(), _spm_precompiled_charsmap=charsmap or None)


def _chunks(text: str, limit: int) -> Iterator[str]:
    """``text`` cut at whitespace into slices of at most ``limit`` UTF-8 bytes (a single longer
    run without whitespace is cut between characters)."""
    start = end = size = 0  # the open chunk is text[start:end], `size` bytes
    for word in re.finditer(r"\S+", text):
        extra = len(text[end : word.end()].encode("utf-8"))
        if end > start and size + extra > limit:
            yield text[start:end]
            start, size = word.start(), len(word.group().encode("utf-8"))
        else:
            size += extra
        end = word.end()
        while size > limit:  # the open chunk is one word over the limit: cut it between characters
            cut, used = start, 0
            while used + len(text[cut].encode("utf-8")) <= limit:
                used += len(text[cut].encode("utf-8"))
                cut += 1
            yield text[start:cut]
            start, size = cut, size - used
    if end > start:
        yield text[start:end]


def trainer_sentences(texts: Iterable[str], limit: int = MAX_SENTENCE_BYTES) -> Iterator[str]:
    """What the trainer reads: each text within ``limit`` bytes as it is; a longer one (a whole
    article) in chunks cut at whitespace, which keeps its words, and so the BPE counts, intact
    (the trainer splits at whitespace anyway)."""
    for text in texts:
        if len(text.encode("utf-8")) <= limit:
            yield text
        else:
            yield from _chunks(text, limit)


def train_sentencepiece(texts: Iterable[str], out_file: Path, vocab_size: int) -> Path:
    """Train a deterministic BPE model with XLNet's special symbols; write it atomically."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        num_threads=1,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        control_symbols=list(XLNET_CONTROL_SYMBOLS),
        minloglevel=2,
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, out_file)
    return out_file


def resolve_tokenizer(
    spec: str, training_texts: Callable[[], Iterable[str]], cache_dir: Path, vocab_size: int,
    source: str = "the training data",
) -> XLNetTokenizer:
    """The tokenizer named by ``spec`` ('auto', a spiece.model path, an HF folder, or an HF id).
    ``source`` names the data behind ``training_texts`` in errors (e.g. "dataset=train.json")."""
    if spec != "auto":
        path = Path(spec)
        if path.is_file():
            return wrap_sentencepiece(path)
        if path.is_dir():
            if (path / "tokenizer.json").is_file():
                return XLNetTokenizer.from_pretrained(path)
            if (path / "spiece.model").is_file():
                return wrap_sentencepiece(path / "spiece.model")
            raise FileNotFoundError(f"tokenizer: {path} has neither tokenizer.json nor spiece.model; pass an XLNet folder")
        if spec.startswith(("/", ".")) or spec.endswith(".model"):
            raise FileNotFoundError(f"tokenizer: {spec} does not exist; pass a spiece.model path, an HF folder or 'auto'")
        return XLNetTokenizer.from_pretrained(spec)
    texts = list(training_texts())
    sentences = list(trainer_sentences(texts))
    if not any(s.strip() for s in sentences):
        raise ValueError(f"tokenizer=auto: {source} gives no text to train a SentencePiece model on "
                         f"({len(texts)} contexts, all empty); check the data (dataset, train_size) or pass "
                         "tokenizer=<spiece.model path or XLNet folder>")
    # The key hashes what the trainer reads: unchanged for texts within the limit (the sample's), new
    # for data that a model trained before the chunking saw only in part (its long contexts skipped).
    digest = hashlib.sha256()
    for text in sentences:
        digest.update(text.encode("utf-8") + b"\0")
    key = f"{digest.hexdigest()[:16]}-bpe-v{vocab_size}"
    model_file = Path(cache_dir) / "qa_tokenizer" / key / "spiece.model"
    if not model_file.is_file():
        try:
            train_sentencepiece(sentences, model_file, vocab_size)
        except RuntimeError as err:
            if "sentences_.empty()" not in str(err):
                raise
            raise ValueError(f"tokenizer=auto: SentencePiece kept no sentence of {source} ({len(sentences)} "
                             f"read, each at most {MAX_SENTENCE_BYTES} bytes); check the data or pass "
                             "tokenizer=<spiece.model path or XLNet folder>") from None
    return wrap_sentencepiece(model_file)
