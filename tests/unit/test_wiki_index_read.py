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
