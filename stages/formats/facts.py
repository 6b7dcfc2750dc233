"""Planted facts of a generated corpus: for each article, the linked facts it repeats.

`extract` writes this file beside the article shards when its input is the generated sample
(`dump=sample`); a real dump has none. LM evaluation reads it to score the tokens of repeated
fact values, so it never needs the generator itself: the artifact says what was planted.
One JSON object per line: ``{"title": ..., "repeated": [{"subject": ..., "value": ...}, ...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

FACTS_FILE = "facts.jsonl"


def write_facts(out_dir: Path, articles: Iterable) -> Path:
    """Write the repeated facts of `articles` (objects with `.title` and `.repeated`, each fact
    with `.subject` and `.value`) to ``out_dir/facts.jsonl``."""
    path = Path(out_dir) / FACTS_FILE
    with path.open("w", encoding="utf-8") as out:
        for article in articles:
            repeated = [{"subject": f.subject, "value": f.value} for f in article.repeated]
            out.write(json.dumps({"title": article.title, "repeated": repeated}, ensure_ascii=False) + "\n")
    return path


def read_facts(artifact_dir: Path | None) -> dict[str, list[tuple[str, str]]]:
    """``{title: [(subject, value), ...]}`` from an extract artifact; empty when it has no facts
    (a real dump, or no artifact)."""
    if artifact_dir is None or not (Path(artifact_dir) / FACTS_FILE).is_file():
        return {}
    facts = {}
    with (Path(artifact_dir) / FACTS_FILE).open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            facts[record["title"]] = [(f["subject"], f["value"]) for f in record["repeated"]]
    return facts
