"""Nothing lost, nothing half-committed: extract on damaged and unusual dumps (issue 11).

Each test writes a small real dump (CirrusSearch JSON lines or MediaWiki XML) and runs the
extract stage through the runner, as a job would.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

import pytest

from stages.core import config
from stages.core.artifacts import load_artifact
from stages.core.runner import execute
from stages.wiki.spec import EXTRACT


def _doc(i: int, title: str | None = None, **fields) -> dict:
    body = " ".join(f"word{(i * 7919 + k) % 1000}" for k in range(300))  # little redundancy: gzip stays long
    return {"title": title or f"Article {i}", "namespace": 0, "text": f"Text of {i}. {body}",
            "outgoing_link": [f"Article_{(i + 1) % 8}"], **fields}


def _cirrus(docs: list[dict]) -> bytes:
    lines = []
    for i, doc in enumerate(docs):
        lines += [json.dumps({"index": {"_id": str(i)}}), json.dumps(doc, ensure_ascii=False)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _extract(tmp_path: Path, dump: Path, **values):
    cfg = config.resolve(EXTRACT.config_cls, {"dump": str(dump), "workers": 1, "shards": 1, **values})
    outcome = execute(EXTRACT, cfg, tmp_path / "art", {})
    return outcome, load_artifact(tmp_path / "art", "extract", outcome.signature)


def test_truncated_gzip_cirrus_keeps_the_lines_before_the_cut(tmp_path):
    data = gzip.compress(_cirrus([_doc(i) for i in range(8)]))
    cut = data[: int(len(data) * 0.8)]
    dump = tmp_path / "cirrus.json.gz"
    dump.write_bytes(cut)
    prefix = zlib.decompressobj(wbits=31).decompress(cut)  # what can be recovered before the cut
    complete = [json.loads(line) for line in prefix.split(b"\n")[:-1]]
    expected = sum(1 for doc in complete if "title" in doc)
    assert expected >= 4
    outcome, artifact = _extract(tmp_path, dump)
    assert outcome.metrics["articles"] == expected
    assert artifact.manifest["skipped"] == {"truncated_input": 1}


def test_all_bad_input_fails_instead_of_committing_an_empty_artifact(tmp_path):
    dump = tmp_path / "not-a-dump.json"
    dump.write_text("".join(json.dumps({"page": i, "links": [i, i + 1]}) + "\n" for i in range(50)))
    with pytest.raises(ValueError, match="every record was bad"):
        _extract(tmp_path, dump)
    assert not [p for p in (tmp_path / "art" / "extract").iterdir() if not p.name.startswith(".")]


def test_wrong_field_types_are_skipped_and_counted_with_the_line(tmp_path):
    docs = [_doc(0), _doc(1, namespace=[0]), _doc(2), {**_doc(3), "title": ["Listed"]}, _doc(4),
            _doc(5, outgoing_link="Article_1")]
    dump = tmp_path / "cirrus.json"
    dump.write_bytes(_cirrus(docs))
    outcome, artifact = _extract(tmp_path, dump)
    assert outcome.metrics["articles"] == 3
    assert artifact.manifest["skipped"] == {"wrong_field_type": 3}
    examples = artifact.manifest["skipped_examples"]["wrong_field_type"]
    assert [e.split(":")[0] for e in examples] == ["line 4", "line 8", "line 12"]


def test_long_non_ascii_titles_fit_the_markdown_file_name_limit(tmp_path):
    titles = ["Ж" * 170, "日本語の記事" * 28, "Δ" + "x" * 250]
    dump = tmp_path / "cirrus.json"
    dump.write_bytes(_cirrus([_doc(i, title=t) for i, t in enumerate(titles)] + [_doc(9)]))
    outcome, artifact = _extract(tmp_path, dump, export_markdown=True)
    names = [p.name for p in (artifact.path / "markdown").rglob("*.md")]
    assert outcome.metrics["articles"] == 4 and len(names) == 4
    assert max(len(os.fsencode(n)) for n in names) <= 255


def test_utf16_xml_is_named_exactly(tmp_path):
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><page><title>A</title><ns>0</ns>'
           "<id>1</id><revision><text>Hello [[B]]</text></revision></page></mediawiki>")
    dump = tmp_path / "dump.xml"
    dump.write_bytes(xml.encode("utf-16"))
    with pytest.raises(ValueError, match="UTF-16 encoded XML.*iconv"):
        _extract(tmp_path, dump)
