"""The extract artifact's article shards: writing and reading.

Layout of an extract artifact directory:
- `articles-00000.jsonl.zst`, ...: one JSON object per line, `{"id", "title", "text",
  "links", "categories"}`, ids dense 0..N-1 in title order, shards in id order;
- `titles.json`: the list of titles (index = id);
- `titles.txt`: the same titles, one per line, for readers that map them instead of
  building a Python list (`title_table`);
- `redirects.json`: alias title -> canonical article title;
- `markdown/` (optional): one `Title_<6hex>.md` file per article for people to read.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import zstandard

SHARD_GLOB = "articles-*.jsonl.zst"


@dataclasses.dataclass
class Article:
    """One article: Markdown `text` with links as `[text](Target)`; `links` are the
    normalized, redirect-resolved namespace-0 target titles in order of appearance."""

    id: int
    title: str
    text: str
    links: list[str]
    categories: list[str]


def shard_name(index: int) -> str:
    return f"articles-{index:05d}.jsonl.zst"


def _artifact_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"extract artifact {path} not found; run `stage=extract` first")
    return path


def shard_paths(path: str | Path) -> list[Path]:
    """The article shards of an extract artifact, in id order: those its manifest lists (a shard
    it does not list is not read), or, for a directory written without the runner, by name."""
    from stages.core.artifacts import listed_files

    directory = _artifact_dir(path)
    shards = listed_files(directory, SHARD_GLOB)
    if shards is None:
        shards = sorted(directory.glob(SHARD_GLOB))
    if not shards:
        raise FileNotFoundError(f"{path} holds no {SHARD_GLOB} shards; is it an extract artifact?")
    return shards


def iter_shard(shard: Path) -> Iterator[Article]:
    """Articles of one shard, streamed."""
    with open(shard, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
        for line in io.TextIOWrapper(reader, encoding="utf-8"):
            yield Article(**json.loads(line))


def iter_articles(path: str | Path) -> Iterator[Article]:
    """All articles of an extract artifact in id order, streamed shard by shard."""
    for shard in shard_paths(path):
        yield from iter_shard(shard)


def read_titles(path: str | Path) -> list[str]:
    """Titles by article id."""
    return json.loads((_artifact_dir(path) / "titles.json").read_text(encoding="utf-8"))


def write_titles_json(path: Path, titles) -> None:
    """`titles.json` from a list, or streamed from a `tables.StringTable` in chunks (never a
    list of all titles in memory)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write("[")
        for lo in range(0, len(titles), 100_000):
            hi = min(lo + 100_000, len(titles))
            chunk = titles.slice(lo, hi) if hasattr(titles, "slice") else list(titles[lo:hi])
            out.write(("," if lo else "") + json.dumps(chunk, ensure_ascii=False)[1:-1])
        out.write("]\n")
    tmp.replace(path)


def title_table(path: str | Path):
    """Titles by article id as a memory-mapped `StringTable` (no Python object per title).
    Artifacts made before `titles.txt` existed fall back to parsing `titles.json`."""
    from stages.formats.tables import StringTable, write_lines

    directory = _artifact_dir(path)
    if (directory / "titles.txt").is_file():
        return StringTable(directory / "titles.txt")
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="wikigraph-titles-"))
    write_lines(scratch / "titles.txt", read_titles(directory))
    return StringTable(scratch / "titles.txt")


def read_redirects(path: str | Path) -> dict[str, str]:
    """Alias -> canonical title."""
    return json.loads((_artifact_dir(path) / "redirects.json").read_text(encoding="utf-8"))


class ShardWriter:
    """Writes one `articles-NNNNN.jsonl.zst` shard through a temporary name."""

    def __init__(self, path: Path, level: int = 3):
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._raw = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        # Content checksums: a damaged frame fails to decode instead of yielding altered text.
        self._zst = zstandard.ZstdCompressor(level=level, write_checksum=True).stream_writer(self._raw)

    def write(self, article: Article) -> None:
        row = {"id": article.id, "title": article.title, "text": article.text,
               "links": article.links, "categories": article.categories}  # asdict() deep-copies: slow
        line = json.dumps(row, ensure_ascii=False) + "\n"
        self._zst.write(line.encode("utf-8"))

    def close(self) -> None:
        self._zst.close()  # also closes the raw file
        self._tmp.replace(self.path)
