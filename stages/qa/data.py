"""QA datasets in SQuAD v2 JSON form: official files, `datasets` ids, or derived from the sample corpus.

Everything is turned into the official structure ``{"version", "data": [{"title", "paragraphs":
[{"context", "qas": [{"id", "question", "answers", "is_impossible"}]}]}]}`` so that the scorer
can read the gold file the stage writes, and ``iter_examples`` flattens it for featurization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from stages.core.config import knob

SAMPLE = "sample"
# Question kinds (an optional ``kind`` key of a SQuAD question), scored apart.
KIND_LOCAL, KIND_CROSS, KIND_NONE = "local", "cross_segment", "unanswerable"


@dataclasses.dataclass
class DataConfig:
    """Where a QA run's questions come from: the `qa` stage's `data.*` keys."""

    dataset: str = knob("sample", "training data: 'sample' (generated long documents, see sample.*), a SQuAD v2 "
                                  "JSON path, or a `datasets` id")
    eval_dataset: str = knob("", "dev data like `dataset`; empty = held-out articles of `dataset`")
    long_context: int = knob(0, "join k paragraphs of an article into one context (0 = whole article, 1 = as "
                                "given)", ge=0)
    train_size: int = knob(0, "use only the first N training questions (0 = all)", ge=0)
    eval_size: int = knob(0, "use only the first N dev questions (0 = all)", ge=0)

    def validate(self) -> None:
        for name in ("dataset", "eval_dataset"):
            value = getattr(self, name)
            if value.endswith(".json") and not Path(value).expanduser().is_file():
                raise ValueError(f"{name}: {value} does not exist; pass a SQuAD v2 JSON file, 'sample' or a "
                                 "datasets id")


@dataclasses.dataclass
class QAExample:
    """One question over one context; ``answers`` are dicts with ``text`` and ``answer_start``."""

    qid: str
    title: str
    context: str
    question: str
    answers: list[dict]

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def _split_of(title: str, dev_fraction: float) -> str:
    bucket = int(hashlib.sha256(title.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "dev" if bucket < dev_fraction else "train"


def hf_squad(dataset_id: str, split: str, cache_dir: Path) -> dict:
    """A `datasets` SQuAD-v2-style split (columns id/title/context/question/answers) as SQuAD JSON."""
    import datasets

    rows = datasets.load_dataset(dataset_id, split=split, cache_dir=str(cache_dir / "hf_datasets"))
    articles: dict[str, dict[str, list]] = {}
    for row in rows:
        contexts = articles.setdefault(row["title"], {})
        answers = [{"text": t, "answer_start": int(s)} for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])]
        contexts.setdefault(row["context"], []).append(
            {"id": row["id"], "question": row["question"], "answers": answers, "is_impossible": not answers})
    return {"version": "v2.0", "data": [
        {"title": title, "paragraphs": [{"context": c, "qas": q} for c, q in contexts.items()]}
        for title, contexts in articles.items()]}


def load_squad(dataset: str, split: str, cache_dir: Path, documents: int = 400, sample=None) -> dict:
    """``dataset`` is 'sample' (``documents`` generated long documents of ``split``, shaped by
    ``sample``, a `stages.qa.sample.SampleConfig`; 'test' draws from its own seed stream), a SQuAD
    JSON path, or a `datasets` id (split 'train'/'dev'). The result is validated (`validate_squad`);
    what was repaired or dropped is counted under `VALIDATION_KEY`."""
    if dataset == SAMPLE:
        from stages.qa.sample import SampleConfig

        return validate_squad((sample or SampleConfig()).generate(split, documents), SAMPLE)
    path = Path(dataset)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"dataset: {dataset} does not exist; pass a SQuAD v2 JSON file, 'sample' or a datasets id")
        squad = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
            raise ValueError(f"dataset: {dataset} has no 'data' list; it is not in SQuAD JSON format")
        return validate_squad(squad, str(path))
    return validate_squad(hf_squad(dataset, "validation" if split == "dev" else split, cache_dir), dataset)


#: Key, in each article of a validated SQuAD dict, counting what `validate_squad` repaired or
#: dropped there (per article, so the counts follow the articles through splits and limits).
VALIDATION_KEY = "wikigraph_validation"
#: How far (characters) from the recorded answer_start a repair may look for the answer text.
_REPAIR_WINDOW = 64
#: Duplicate question ids named in the error (the count names them all).
_SHOWN_DUPLICATES = 3


class _Occurrences:
    """Where answer texts occur in one context, found in time linear in the context: a repair
    looks within `_REPAIR_WINDOW` of the recorded start first, and only when nothing is there
    scans the context, once per distinct answer text (stopping at a second occurrence)."""

    def __init__(self, context: str):
        self.context = context
        self._unique: dict[str, int | None] = {}

    def near(self, text: str, start: int) -> list[int]:
        """Up to two occurrences of ``text`` starting within `_REPAIR_WINDOW` of ``start``."""
        lo, hi = max(start - _REPAIR_WINDOW, 0), start + _REPAIR_WINDOW + len(text)
        hits, at = [], self.context.find(text, lo, hi)
        while at >= 0 and len(hits) < 2:
            hits.append(at)
            at = self.context.find(text, at + 1, hi)
        return hits

    def unique(self, text: str) -> int | None:
        """The position of ``text`` if it occurs exactly once in the context, else None."""
        if text not in self._unique:
            first = self.context.find(text)
            self._unique[text] = first if first >= 0 and self.context.find(text, first + 1) < 0 else None
        return self._unique[text]


def _locate(where: _Occurrences, text: str, start) -> tuple[int | None, str]:
    """(start, outcome) of one answer: "ok", "repaired" (a unique nearby match) or "dropped".

    A negative start is no position in the context (Python would read it from the end), so only
    a unique occurrence of the text repairs it; a start past the end is repaired like a shifted one."""
    if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int):
        return None, "dropped"
    if start >= 0 and where.context.startswith(text, start):
        return start, "ok"
    near = where.near(text, start) if start >= 0 else []
    if len(near) == 1:  # the unique occurrence, or the unique one near the start
        return near[0], "repaired"
    at = where.unique(text) if not near else None  # two near: not unique anywhere
    return (at, "repaired") if at is not None else (None, "dropped")


def _check_unique_ids(squad: dict, source: str) -> None:
    """Question ids must be unique in a dataset: the scorer and the predictions are keyed by id,
    so a repeated id would score several questions as one, silently."""
    articles: dict[str, list[str]] = {}
    for article in squad["data"]:
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                if isinstance(qa.get("id"), str):
                    articles.setdefault(qa["id"], []).append(str(article.get("title", "")))
    repeated = [(qid, titles) for qid, titles in articles.items() if len(titles) > 1]
    if repeated:
        def where(titles: list[str]) -> str:
            distinct = list(dict.fromkeys(titles))
            return ", ".join(map(repr, distinct[:2])) + (", ..." if len(distinct) > 2 else "")

        shown = ", ".join(f"{qid!r} x{len(titles)} (articles {where(titles)})" for qid, titles in repeated[:_SHOWN_DUPLICATES])
        more = f" and {len(repeated) - _SHOWN_DUPLICATES} more" if len(repeated) > _SHOWN_DUPLICATES else ""
        raise ValueError(f"dataset: {source} has {len(repeated)} duplicate question ids: {shown}{more}; "
                         "answers are scored by id, so make every id unique (e.g. prefix it with its article's "
                         "title) and rerun")


def validate_squad(squad: dict, source: str = "dataset") -> dict:
    """Every question in one reading, shared by training and scoring.

    - Question ids are unique in the dataset, else a ValueError names some of them and ``source``.
    - ``is_impossible: true`` wins: its answers move to ``plausible_answers`` (as in SQuAD v2).
    - A question without ``answers`` is unanswerable if it says so, else dropped.
    - Each answer must satisfy ``context[start:start+len(text)] == text`` with ``start >= 0``;
      otherwise it is moved to the unique occurrence of its text in the context (or, for a start
      that is not negative, the unique one within ``_REPAIR_WINDOW`` characters of it), else
      dropped. An answerable question that loses all its answers is dropped (never turned into
      an unanswerable one). Repair costs a window per answer and at most one scan of the context
      per distinct answer text (`_Occurrences`).
    Answers are checked against their own paragraph, before paragraphs are joined, so an empty
    or shifted paragraph can never move labels onto its neighbour.
    """
    _check_unique_ids(squad, source)
    data = []
    for article in squad["data"]:
        counts: dict[str, int] = dict(article.get(VALIDATION_KEY, {}))

        def count(reason: str, n: int = 1, counts=counts) -> None:
            counts[reason] = counts.get(reason, 0) + n

        paragraphs = []
        for paragraph in article.get("paragraphs", []):
            context, qas = paragraph.get("context"), []
            if not isinstance(context, str):
                count("qa_paragraph_without_context", len(paragraph.get("qas", [])))
                continue
            where = _Occurrences(context)
            for qa in paragraph.get("qas", []):
                if not isinstance(qa.get("id"), str) or not isinstance(qa.get("question"), str):
                    count("qa_question_malformed")
                    continue
                answers = qa.get("answers")
                if qa.get("is_impossible") is True:
                    if answers:
                        count("qa_impossible_with_answers")
                    qas.append({**qa, "answers": [], "is_impossible": True,
                                "plausible_answers": qa.get("plausible_answers") or answers or []})
                    continue
                if answers is None:
                    count("qa_missing_answers_dropped")
                    continue
                if not answers:  # SQuAD v2's own reading of an empty answer list
                    qas.append({**qa, "answers": [], "is_impossible": True})
                    continue
                kept = []
                for answer in answers if isinstance(answers, list) else []:
                    text = answer.get("text") if isinstance(answer, dict) else None
                    start, outcome = _locate(where, text, answer.get("answer_start") if text else None)
                    if outcome != "ok":
                        count(f"qa_answer_{outcome}")
                    if start is not None:
                        kept.append({**answer, "answer_start": start})
                if not kept:
                    count("qa_question_dropped_no_valid_answer")
                    continue
                qas.append({**qa, "answers": kept, "is_impossible": False})
            paragraphs.append({**paragraph, "qas": qas})
        data.append({**article, "paragraphs": paragraphs, VALIDATION_KEY: counts})
    return {**squad, "data": data}


def validation_counts(squad: dict) -> dict[str, int]:
    """What `validate_squad` repaired or dropped in the articles of `squad`."""
    total: dict[str, int] = {}
    for article in squad["data"]:
        for reason, n in article.get(VALIDATION_KEY, {}).items():
            total[reason] = total.get(reason, 0) + n
    return total


def split_articles(squad: dict, split: str, dev_fraction: float) -> dict:
    """Keep the articles of one split (by title hash): a held-out dev set when only one file is given."""
    return {**squad, "data": [a for a in squad["data"] if _split_of(a["title"], dev_fraction) == split]}


def join_paragraphs(squad: dict, long_context: int) -> dict:
    """Join every ``long_context`` consecutive paragraphs of an article (0 = all) and re-offset answers."""
    if long_context == 1:
        return squad
    data = []
    for article in squad["data"]:
        paragraphs = article["paragraphs"]
        size = len(paragraphs) if long_context == 0 else long_context
        joined = []
        for begin in range(0, len(paragraphs), max(size, 1)):
            context, qas = "", []
            for paragraph in paragraphs[begin : begin + size]:
                offset = len(context) + (2 if context else 0)
                context = f"{context}\n\n{paragraph['context']}" if context else paragraph["context"]
                for qa in paragraph["qas"]:
                    answers = [{**a, "answer_start": a["answer_start"] + offset} for a in qa["answers"]]
                    qas.append({**qa, "answers": answers})
            joined.append({"context": context, "qas": qas})
        data.append({**article, "paragraphs": joined})
    return {**squad, "data": data}


def limit_questions(squad: dict, max_questions: int) -> dict:
    """The first ``max_questions`` questions (0 = all), keeping the SQuAD structure."""
    if max_questions <= 0:
        return squad
    left, data = max_questions, []
    for article in squad["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if left <= 0:
                break
            qas = paragraph["qas"][:left]
            left -= len(qas)
            paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            data.append({**article, "paragraphs": paragraphs})
    return {**squad, "data": data}


def iter_examples(squad: dict) -> Iterator[QAExample]:
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = [] if qa.get("is_impossible") else list(qa.get("answers") or [])
                yield QAExample(qa["id"], article.get("title", ""), paragraph["context"], qa["question"], answers)


def contexts(squad: dict) -> Iterator[str]:
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            yield paragraph["context"]
