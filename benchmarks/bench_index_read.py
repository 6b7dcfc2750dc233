"""What reading a multistream index costs extract's ranks, before and after the plan is shared.

    PYTHONPATH=. python benchmarks/bench_index_read.py [--articles 1000000] [--ranks 4] \\
        [--root /tmp/wikigraph-bench-index]

The input is a generated multistream file of `articles / 100` small bzip2 streams and its index
of `articles` lines `offset:page_id:title` (100 pages per stream, as in enwiki's dumps; the index
is one bzip2 stream, as `dump_writer` writes it). Only the plan is measured: the streams hold no
pages, since what a rank pays before converting anything is reading the index into units.
Before, every rank made the plan itself (`extract.read_plan`); now rank 0 makes it and the others
read it back, checked (`extract.shared_plan`). Both run in this process, one rank after the
other, side by side; CPU seconds are this process's user + system time around each call.
"""

from __future__ import annotations

import argparse
import bz2
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_PAGES_PER_STREAM = 100


def make_dump(root: Path, articles: int) -> Path:
    """A multistream file with one tiny stream per 100 articles, and its index beside it."""
    from stages.wiki.dump_writer import index_name

    dump = root / f"gen{articles}-multistream.xml.bz2"
    if dump.is_file() and index_name(dump).is_file():
        return dump
    root.mkdir(parents=True, exist_ok=True)
    stream = bz2.compress(b"<page/>\n" * 8)
    lines, offset = [], len(stream)  # the first stream is the header
    with open(dump, "wb") as out:
        out.write(stream)
        for i in range(articles):
            if i % _PAGES_PER_STREAM == 0:
                if i:
                    offset += len(stream)
                out.write(stream)
            lines.append(f"{offset}:{i + 1}:Generated article number {i:07d} (topic {i % 977})\n")
    index_name(dump).write_bytes(bz2.compress("".join(lines).encode()))
    return dump


def _cpu() -> float:
    usage = os.times()
    return usage.user + usage.system + usage.children_user + usage.children_system


def measure(dump: Path, ranks: int, root: Path) -> dict:
    import shutil

    from stages.core import config as config_lib
    from stages.core.context import StageContext
    from stages.wiki import extract
    from stages.wiki.spec import EXTRACT

    cfg = config_lib.resolve(EXTRACT.config_cls, {"dump": str(dump), "workers": 1})
    out = root / "partial"
    shutil.rmtree(out, ignore_errors=True)
    before, after, units = [], [], set()
    for rank in range(ranks):
        cpu = _cpu()
        units.add(len(extract.read_plan(cfg, out).units))
        before.append(_cpu() - cpu)
    for rank in range(ranks):
        ctx = StageContext.standalone(out, {}, "extract", rank=rank, world_size=ranks)
        cpu = _cpu()
        units.add(len(extract.shared_plan(cfg, ctx).units))
        after.append(_cpu() - cpu)
    if len(units) != 1:
        raise RuntimeError(f"the plans differ: {sorted(units)} units")
    return {"before": before, "after": after, "units": units.pop()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--root", type=Path, default=Path("/tmp/wikigraph-bench-index"))
    args = parser.parse_args()
    started = time.perf_counter()
    dump = make_dump(args.root, args.articles)
    from stages.wiki.dump_writer import index_name

    index = index_name(dump)
    print(f"{args.articles:,} index lines, {index.stat().st_size / 2**20:.1f} MB compressed "
          f"(made in {time.perf_counter() - started:.0f} s)")
    result = measure(dump, args.ranks, args.root)
    total_before, total_after = sum(result["before"]), sum(result["after"])
    print("| ranks | units | CPU s per rank before | CPU s per rank after | total before | total after | ratio |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.ranks} | {result['units']:,} | {', '.join(f'{c:.2f}' for c in result['before'])} | "
          f"{', '.join(f'{c:.3f}' for c in result['after'])} | {total_before:.2f} | {total_after:.2f} | "
          f"{total_before / max(total_after, 1e-9):.2f}x |")


if __name__ == "__main__":
    main()
