"""Dump readers: format from content, bounded streaming, and what bad input turns into."""

import bz2
import gzip

import pytest

from stages.wiki.dumps import detect_format, iter_records, parse_record
from stages.wiki.sample import generate_sample


@pytest.fixture(scope="module")
def corpus():
    return generate_sample(30, seed=3)


def pages(path):
    good, bad = [], []
    for record in iter_records(path):
        if record.error:
            bad.append(record.error)
            continue
        page = parse_record(record)
        if page is not None:
            good.append(page)
    return good, bad


def test_format_is_detected_from_content_not_name(tmp_path, corpus):
    xml = corpus.write_xml(tmp_path / "x.xml")
    (tmp_path / "misnamed.json").write_bytes(bz2.compress(xml.read_bytes()))
    cirrus = corpus.write_cirrus(tmp_path / "c.json")
    (tmp_path / "misnamed.xml.bz2").write_bytes(gzip.compress(cirrus.read_bytes()))
    assert detect_format(tmp_path / "misnamed.json") == ("xml", "bz2")
    assert detect_format(tmp_path / "misnamed.xml.bz2") == ("cirrus", "gzip")
    (tmp_path / "junk.xml").write_text("hello")
    with pytest.raises(ValueError, match="not a MediaWiki XML export or CirrusSearch"):
        detect_format(tmp_path / "junk.xml")
    with pytest.raises(FileNotFoundError, match="dump=sample"):
        detect_format(tmp_path / "absent.xml")


def test_xml_pages_stream_with_namespaces_and_redirects(tmp_path, corpus):
    good, bad = pages(corpus.write_xml(tmp_path / "d.xml.bz2"))
    assert bad == []
    articles = [p for p in good if p.namespace == 0 and p.redirect is None]
    assert [p.title for p in articles] == [a.title for a in corpus.articles]
    assert [p.wikitext for p in articles] == [a.wikitext for a in corpus.articles]
    assert {p.title: p.redirect for p in good if p.redirect} == corpus.redirects
    assert [p.namespace for p in good if p.namespace != 0] == [10]


def test_bz2_multistream_is_read_whole(tmp_path, corpus):
    xml = corpus.write_xml(tmp_path / "d.xml").read_bytes()
    cut = xml.index(b"  <page>", len(xml) // 2)
    (tmp_path / "multi.xml.bz2").write_bytes(bz2.compress(xml[:cut]) + bz2.compress(xml[cut:]))
    good, bad = pages(tmp_path / "multi.xml.bz2")
    assert bad == [] and len(good) == len(pages(tmp_path / "d.xml")[0])


def test_truncated_bz2_reports_the_offset_and_never_yields_half_a_page(tmp_path):
    corpus = generate_sample(300, seed=3)
    xml = corpus.write_xml(tmp_path / "d.xml").read_bytes()
    full = bz2.compress(xml, compresslevel=1)  # 100 kB blocks: a cut file still has whole blocks
    (tmp_path / "cut.xml.bz2").write_bytes(full[: len(full) * 2 // 3])
    good, bad = pages(tmp_path / "cut.xml.bz2")
    assert len(bad) == 1 and bad[0].startswith("truncated bz2 input near compressed byte")
    complete = {a.title: a.wikitext for a in corpus.articles}
    articles = [p for p in good if p.namespace == 0 and p.redirect is None]
    assert 0 < len(articles) < len(complete)
    assert all(complete[p.title] == p.wikitext for p in articles)


def test_page_missing_its_closing_tag_costs_only_that_page(tmp_path, corpus):
    xml = corpus.write_xml(tmp_path / "d.xml").read_text()
    victim = corpus.articles[4].title
    start = xml.index(f"<title>{victim}</title>")
    end = xml.index("</page>", start)
    (tmp_path / "bad.xml").write_text(xml[:end] + xml[end + len("</page>"):])
    good, bad = pages(tmp_path / "bad.xml")
    assert len(bad) == 1 and "without </page>" in bad[0] and victim in bad[0] and "byte" in bad[0]
    assert victim not in {p.title for p in good}
    assert len(good) == len(pages(tmp_path / "d.xml")[0]) - 1


def test_xml_without_root_closing_tag_is_reported(tmp_path, corpus):
    xml = corpus.write_xml(tmp_path / "d.xml").read_text()
    (tmp_path / "open.xml").write_text(xml.replace("</mediawiki>\n", ""))
    good, bad = pages(tmp_path / "open.xml")
    assert len(good) == len(pages(tmp_path / "d.xml")[0])
    assert len(bad) == 1 and "without </mediawiki>" in bad[0]


def test_malformed_page_xml_raises_value_error_naming_the_title(tmp_path, corpus):
    xml = corpus.write_xml(tmp_path / "d.xml").read_text()
    victim = corpus.articles[2].title
    start = xml.index(f"<title>{victim}</title>")
    (tmp_path / "bad.xml").write_text(xml[:start] + xml[start:].replace("</revision>", "</revisoin>", 1))
    errors = []
    for record in iter_records(tmp_path / "bad.xml"):
        try:
            parse_record(record)
        except ValueError as err:
            errors.append(str(err))
    assert len(errors) == 1 and "malformed XML page" in errors[0] and victim in errors[0]


def test_cirrus_lines_and_a_corrupt_line(tmp_path, corpus):
    lines = corpus.write_cirrus(tmp_path / "c.json").read_text().splitlines(keepends=True)
    lines[5] = lines[5][: len(lines[5]) // 2] + "\n"
    (tmp_path / "bad.json").write_text("".join(lines))
    records = list(iter_records(tmp_path / "bad.json"))
    failures = []
    for record in records:
        try:
            parse_record(record)
        except ValueError as err:
            failures.append((record.where, str(err)))
    assert len(failures) == 1 and failures[0][0] == "line 6" and "invalid JSON" in failures[0][1]
