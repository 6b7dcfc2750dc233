"""Parallel reading of big dumps: a multistream dump with its index, split files and a
single-stream file give the same artifact, byte for byte, whatever the ranks, workers or
unit size; a corrupt stream, a truncated dump and an index of another dump are caught."""

import bz2
import json
import os
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from stages.core import config as config_lib
from stages.core.runner import execute
from stages.formats.articles import iter_articles
from stages.wiki import dump_writer
from stages.wiki.dumps import dump_files, plan_units, read_index_offsets
from stages.wiki.spec import EXTRACT

REPO = Path(__file__).resolve().parents[2]


def run_extract(root, **overrides):
    overrides.setdefault("workers", 1)
    overrides.setdefault("sample_articles", 60)
    cfg = config_lib.resolve(EXTRACT.config_cls, overrides)
    return execute(EXTRACT, cfg, root, {})


def checksums(outcome):
    manifest = json.loads((outcome.artifact / "manifest.json").read_text())
    return {f["path"]: f["sha256"] for f in manifest["files"]}


def test_multistream_split_and_single_stream_give_the_same_artifact(tmp_path):
    single = run_extract(tmp_path, sample_format="xml")
    multistream = run_extract(tmp_path, sample_format="multistream", workers=2, read_unit_mb=0.0001)
    split = run_extract(tmp_path, sample_format="split", workers=2)
    assert single.metrics["reading"].startswith("serial") and single.metrics["read_units"] == 1
    assert multistream.metrics["reading"].startswith("parallel") and multistream.metrics["read_units"] >= 4
    assert split.metrics["read_units"] >= 3  # every split file is cut into its streams too
    assert checksums(single) == checksums(multistream) == checksums(split)
    assert multistream.metrics["articles"] == 60 and multistream.metrics["skipped"] == 0


@pytest.mark.parametrize(("workers", "unit_mb"), [(2, 0.0001), (3, 0.003)])
def test_artifact_does_not_depend_on_workers_or_unit_size(tmp_path, workers, unit_mb):
    reference = run_extract(tmp_path / "ref", sample_format="multistream", sample_articles=200)
    other = run_extract(tmp_path / "other", sample_format="multistream", sample_articles=200,
                        workers=workers, read_unit_mb=unit_mb)
    assert other.signature == reference.signature
    assert checksums(other) == checksums(reference)


_RANK1 = """
import sys
from pathlib import Path
from stages.core import config
from stages.core.runner import execute
from stages.wiki.spec import EXTRACT
cfg = config.resolve(EXTRACT.config_cls, {"sample_format": "multistream", "sample_articles": 200,
                                          "read_unit_mb": 0.0001, "workers": 2})
execute(EXTRACT, cfg, Path(sys.argv[1]), {})
"""


def test_two_ranks_each_read_their_own_units_and_match_one_rank(tmp_path, monkeypatch):
    reference = run_extract(tmp_path / "one", sample_format="multistream", sample_articles=200)
    root = tmp_path / "two"
    env = dict(os.environ, RANK="1", WORLD_SIZE="2", PYTHONPATH=str(REPO))
    rank1 = subprocess.Popen([sys.executable, "-c", _RANK1, str(root)], env=env, cwd=REPO)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    try:
        two = run_extract(root, sample_format="multistream", sample_articles=200, read_unit_mb=0.0001, workers=2)
    finally:
        assert rank1.wait(timeout=120) == 0
    by_rank = two.metrics["read_units_by_rank"]
    assert len(by_rank) == 2 and min(by_rank) > 0 and sum(by_rank) == two.metrics["read_units"]
    assert checksums(two) == checksums(reference)


def _multistream(tmp_path, articles=120, seed=0, name="wiki-multistream.xml.bz2"):
    pages = dump_writer.sample_pages(articles, seed)
    info = dump_writer.write_multistream(pages, tmp_path / name, pages_per_stream=10)
    return Path(info["path"]), Path(info["index"]), pages


def test_the_index_has_the_real_format_and_lands_on_stream_starts(tmp_path):
    dump, index, pages = _multistream(tmp_path)
    assert index.name == "wiki-multistream-index.txt.bz2"
    lines = bz2.decompress(index.read_bytes()).decode().splitlines()
    assert len(lines) == len(pages)
    data = dump.read_bytes()
    offsets = read_index_offsets(index)
    ends = [*offsets[1:], len(data)]
    for line in lines[::17]:
        offset, page_id, title = line.split(":", 2)
        stream = bz2.decompress(data[int(offset):ends[offsets.index(int(offset))]]).decode()
        assert f"<title>{escape(title)}</title>\n    <ns>0</ns>\n    <id>{page_id}</id>" in stream
    plan = plan_units(dump_files(str(dump)), unit_bytes=1)
    assert [u.streams[0] for u in plan.units] == [0, *offsets]  # the header stream, then the index's


def test_an_index_of_another_dump_is_detected(tmp_path):
    dump, index, _ = _multistream(tmp_path)
    _, other_index, _ = _multistream(tmp_path / "other", articles=300, seed=3)
    index.write_bytes(other_index.read_bytes())
    with pytest.raises(ValueError, match="does not match dump .* not bzip2 stream starts"):
        run_extract(tmp_path / "fail", dump=str(dump), on_error="fail")
    outcome = run_extract(tmp_path / "skip", dump=str(dump))
    manifest = json.loads((outcome.artifact / "manifest.json").read_text())
    assert manifest["skipped"] == {"index_mismatch": 1}
    assert outcome.metrics["reading"].startswith("serial")  # read by one reader instead: nothing lost
    assert outcome.metrics["articles"] == 120


def test_a_corrupt_stream_costs_only_its_pages(tmp_path):
    dump, index, _ = _multistream(tmp_path)
    offsets = read_index_offsets(index)
    data = bytearray(dump.read_bytes())
    middle = offsets[3] + 40  # inside the fourth page stream's compressed data
    data[middle:middle + 30] = bytes(30)
    dump.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt bz2 stream at byte"):
        run_extract(tmp_path / "fail", dump=str(dump), on_error="fail", read_unit_mb=0.0001)
    outcome = run_extract(tmp_path / "skip", dump=str(dump), workers=2, read_unit_mb=0.0001)
    manifest = json.loads((outcome.artifact / "manifest.json").read_text())
    assert manifest["skipped"] == {"corrupt_stream": 1}
    assert outcome.metrics["articles"] == 110  # 10 pages per stream, all of them articles here


def test_a_truncated_multistream_dump_keeps_the_streams_before_the_cut(tmp_path):
    dump, index, _ = _multistream(tmp_path)
    offsets = read_index_offsets(index)
    data = dump.read_bytes()
    dump.write_bytes(data[:offsets[5] + 100])
    outcome = run_extract(tmp_path / "skip", dump=str(dump), workers=2, read_unit_mb=0.0001)
    manifest = json.loads((outcome.artifact / "manifest.json").read_text())
    assert manifest["skipped"] == {"truncated_input": 1}
    assert outcome.metrics["articles"] == 50


def test_single_stream_split_files_are_units_too(tmp_path):
    pages = dump_writer.sample_pages(60)
    dump_writer.write_split(pages, tmp_path / "split", "pages-articles", 4, len(pages), multistream=False)
    split = run_extract(tmp_path, dump=str(tmp_path / "split" / "pages-articles*.bz2"), workers=2)
    assert split.metrics["read_units"] == 4
    single = run_extract(tmp_path, sample_format="xml")
    assert [(a.title, a.text, a.links) for a in iter_articles(split.artifact)] == \
           [(a.title, a.text, a.links) for a in iter_articles(single.artifact)]


def test_dump_files_take_a_list_a_glob_or_a_directory_in_page_order(tmp_path):
    names = ["x-pages-articles10.xml-p200p299.bz2", "x-pages-articles2.xml-p100p199.bz2",
             "x-pages-articles1.xml-p1p99.bz2", "x-pages-articles-multistream-index1.txt-p1p99.bz2"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    by_page = [tmp_path / names[2], tmp_path / names[1], tmp_path / names[0]]
    assert dump_files(str(tmp_path)) == by_page  # the index file is not a dump
    assert dump_files(str(tmp_path / "x-pages-articles1*.bz2")) == [tmp_path / names[2], tmp_path / names[0]]
    assert dump_files(f"{tmp_path / names[1]};{tmp_path / names[2]}") == [tmp_path / names[1], tmp_path / names[2]]
    with pytest.raises(FileNotFoundError, match="no file matches"):
        dump_files(str(tmp_path / "nothing*.bz2"))
