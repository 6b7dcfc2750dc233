"""QA datasets in SQuAD v2 JSON form: official files, `datasets` ids, or derived from the sample corpus.

Everything is turned into the official structure ``{"version", "data": [{"title", "paragraphs":
[{"context", "qas": [{"id", "question", "answers", "is_impossible"}]}]}]}`` so that the scorer
can read the gold file the stage writes, and ``iter_examples`` flattens it for featurization.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

SAMPLE = "sample"
_MARKUP = re.compile(r"\*\*|^#+ ", re.MULTILINE)


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


def sample_squad(n_articles: int, seed: int, split: str, dev_fraction: float = 0.15, linked_per_article: int = 2) -> dict:
    """A SQuAD-v2-format set from the generated sample corpus.

    Each article's plain text is one context (several segments long), split into section
    paragraphs so that ``long_context`` can join them back. Answerable questions come from the
    article's own facts ("What is the depth of Lake Belor?") and from facts of linked articles that
    the article repeats further down; unanswerable ones ask for an attribute that other articles have
    but this subject lacks, about the subject of the context.
    """
    from stages.wiki.sample import generate_sample
    from stages.wiki.wikitext import convert, strip_link_markers

    corpus = generate_sample(n_articles=n_articles, seed=seed)
    all_attributes = sorted({f.attribute for a in corpus.articles for f in a.facts})
    fact_of_phrase = {f"{f.attribute} is {f.value}": f for a in corpus.articles for f in a.facts}
    rng = random.Random(seed)
    data = []
    for article in corpus.articles:
        if _split_of(article.title, dev_fraction) != split:
            continue
        text, _ = strip_link_markers(convert(article.wikitext).text)
        paragraphs = [p.strip() for p in _MARKUP.sub("", text).split("\n\n") if p.strip()]
        qas_by_paragraph: list[list[dict]] = [[] for _ in paragraphs]
        # Own facts sit near the top; facts of linked articles ("..., whose depth is 83 metres")
        # sit further down, so their answers land in later segments.
        candidates = [(f, f.sentence, f.value) for f in article.facts]
        mentioned = [fact_of_phrase.get(line.split(", whose ", 1)[1].split(";", 1)[0])
                     for p in paragraphs for line in p.splitlines() if ", whose " in line]
        mentioned = [f for f in mentioned if f is not None]
        for fact in mentioned[::-1][:linked_per_article]:
            candidates.append((fact, f"whose {fact.attribute} is {fact.value}", fact.value))
        for k, (fact, phrase, value) in enumerate(candidates):
            for i, paragraph in enumerate(paragraphs):
                at = paragraph.find(phrase)
                if at >= 0:
                    qas_by_paragraph[i].append({
                        "id": f"{article.title}|{k}", "question": f"What is the {fact.attribute} of {fact.subject}?",
                        "answers": [{"text": value, "answer_start": at + phrase.rindex(value)}], "is_impossible": False,
                    })
                    break
        # Unanswerable: the same question form, about the article's subject or a linked subject,
        # asking for an attribute the context does not state for that subject.
        stated = {(f.subject, f.attribute) for f in article.facts + mentioned}
        subjects = [article.facts[0].subject if article.facts else article.title] + [f.subject for f in mentioned]
        n_answerable = sum(len(q) for q in qas_by_paragraph)
        for k in range(n_answerable):
            subject = subjects[0] if k % 2 == 0 or len(subjects) == 1 else rng.choice(subjects[1:])
            options = [a for a in all_attributes if (subject, a) not in stated]
            target = next((i for i, p in enumerate(paragraphs) if subject in p), None)
            if not options or target is None:
                continue
            qas_by_paragraph[target].append({
                "id": f"{article.title}|na{k}", "question": f"What is the {rng.choice(options)} of {subject}?",
                "answers": [], "is_impossible": True,
            })
        data.append({
            "title": article.title,
            "paragraphs": [{"context": p, "qas": q} for p, q in zip(paragraphs, qas_by_paragraph)],
        })
    return {"version": "v2.0", "data": data}


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


def load_squad(dataset: str, split: str, cache_dir: Path, sample_articles: int = 300, seed: int = 0,
               dev_fraction: float = 0.15) -> dict:
    """``dataset`` is 'sample', a SQuAD JSON path, or a `datasets` id (split 'train'/'dev')."""
    if dataset == SAMPLE:
        return sample_squad(sample_articles, seed, split, dev_fraction)
    path = Path(dataset)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"dataset: {dataset} does not exist; pass a SQuAD v2 JSON file, 'sample' or a datasets id")
        squad = json.loads(path.read_text(encoding="utf-8"))
        if "data" not in squad:
            raise ValueError(f"dataset: {dataset} has no 'data' key; it is not in SQuAD JSON format")
        return squad
    return hf_squad(dataset, "validation" if split == "dev" else split, cache_dir)


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
        data.append({"title": article["title"], "paragraphs": joined})
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
                answers = [] if qa.get("is_impossible") else list(qa["answers"])
                yield QAExample(qa["id"], article.get("title", ""), paragraph["context"], qa["question"], answers)


def contexts(squad: dict) -> Iterator[str]:
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            yield paragraph["context"]
