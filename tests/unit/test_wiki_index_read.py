"""Reading a multistream index: numpy-parsed offsets equal a line-by-line reference, for a
single-stream index, an index made of many bzip2 streams read in parallel, and a plain one."""

import bz2
import re
from pathlib import Path

import pytest

from stages.wiki import dump_writer
from stages.wiki.dumps import read_index_offsets


def _reference(text: bytes) -> list[int]:
    return sorted({int(m) for m in re.findall(rb"^(\d+):", text, re.MULTILINE)})


def _lines(n: int) -> list[str]:
    return [f"{600 + (i // 7) * 9137}:{i + 1}:Title {i}: with colons\n" for i in range(n)]


@pytest.mark.parametrize("workers", [1, 3])
def test_offsets_of_a_multi_stream_index_read_in_parallel(tmp_path, workers):
    lines = _lines(5000) + ["no number here\n", "12x:3:bad\n", ":4:empty\n", "99:5:last"]  # last: no newline
    path = tmp_path / "x-multistream-index.txt.bz2"
    with open(path, "wb") as out:
        out.writelines(bz2.compress("".join(lines[lo:lo + 50]).encode()) for lo in range(0, len(lines), 50))
    assert read_index_offsets(path, workers) == _reference("".join(lines).encode())


def test_offsets_of_a_single_stream_and_a_plain_index(tmp_path):
    info = dump_writer.write_multistream(dump_writer.sample_pages(80, 3), tmp_path / "d-multistream.xml.bz2",
                                         pages_per_stream=7)
    text = bz2.decompress(Path(info["index"]).read_bytes())
    assert read_index_offsets(info["index"], 2) == _reference(text) and len(_reference(text)) > 5
    plain = tmp_path / "plain-index.txt"
    plain.write_bytes(text)
    assert read_index_offsets(plain) == _reference(text)


def test_a_truncated_index_is_an_error(tmp_path):
    path = tmp_path / "t-index.txt.bz2"
    path.write_bytes(bz2.compress("".join(_lines(3000)).encode())[:-200])
    with pytest.raises(EOFError):
        read_index_offsets(path)


def test_the_index_is_read_once_and_the_other_ranks_read_the_checked_plan(tmp_path, monkeypatch):
    from stages.core import config as config_lib
    from stages.core.context import StageContext
    from stages.wiki import dumps, extract
    from stages.wiki.spec import EXTRACT

    info = dump_writer.write_multistream(dump_writer.sample_pages(120, 2), tmp_path / "d-multistream.xml.bz2",
                                         pages_per_stream=5)
    cfg = config_lib.resolve(EXTRACT.config_cls, {"dump": str(info["path"]), "read_unit_mb": 0.0001, "workers": 1})
    reads = []
    real = dumps.read_index_offsets
    monkeypatch.setattr(dumps, "read_index_offsets", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    out = tmp_path / "partial"
    ranks = [StageContext.standalone(out, {}, "extract", rank=r, world_size=3) for r in (0, 1, 2)]
    plans = [extract.shared_plan(cfg, ctx) for ctx in ranks]
    assert len(reads) == 1 and len(plans[0].units) > 5
    assert plans[1] == plans[2] == plans[0] == extract.read_plan(cfg, out)
    plan_file = out / "_input" / "plan.json"
    plan_file.write_bytes(plan_file.read_bytes().replace(b'"last": true', b'"last": false'))
    with pytest.raises(RuntimeError, match="force=true"):
        extract.shared_plan(cfg, ranks[1])
