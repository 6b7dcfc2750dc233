"""extract vs `wikiextractor --links --no-templates`: articles/s on the same dump, same cores.

    PYTHONPATH=. python benchmarks/bench_extract.py [--dump ../shared/data/wiki/enwiki-2016-sample.xml.bz2]
                                                    [--processes 2 --repeats 3]

Both run as fresh subprocesses end to end (interpreter start, imports, decompression,
conversion, writing output) with the same number of worker processes, alternating, and the
median wall time of each is compared. Our side runs the real stage through the runner
(manifest with checksums included). Links kept are reported for both: ours counts Markdown
links `[text](Target)`, wikiextractor's counts `<a href=...>` anchors (written HTML-escaped).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DUMP = REPO.parent / "shared" / "data" / "wiki" / "enwiki-2016-sample.xml.bz2"

_OURS = """
import sys
from pathlib import Path
from stages.core import config
from stages.core.runner import execute
from stages.wiki.spec import EXTRACT
cfg = config.resolve(EXTRACT.config_cls, {"dump": sys.argv[1], "workers": int(sys.argv[3])})
print(execute(EXTRACT, cfg, Path(sys.argv[2]), {}).artifact)
"""


def timed(cmd: list[str], cpu: list[float] | None = None) -> tuple[float, str]:
    """Wall seconds and stdout of a command; its CPU seconds (user+system, its reaped worker
    processes included) are appended to `cpu` (on a shared machine CPU time is the steadier
    measure, wall the one that counts)."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO),
                                                                           "PATH": "/usr/bin:/bin"})
    elapsed = time.perf_counter() - start
    after = os.times()
    if cpu is not None:
        cpu.append(after.children_user - before.children_user + after.children_system - before.children_system)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr[-2000:]}")
    return elapsed, proc.stdout.strip()


def ours_links(artifact: Path) -> tuple[int, int]:
    from stages.formats.articles import iter_articles

    articles = list(iter_articles(artifact))
    return len(articles), sum(len(re.findall(r"\]\([^)\s]+\)", a.text)) for a in articles)


def wikiextractor_links(out_dir: Path) -> tuple[int, int]:
    text = "".join(p.read_text() for p in sorted(out_dir.rglob("wiki_*")))
    return text.count("<doc "), text.count("<a href=") + text.count("&lt;a href=")  # it escapes them


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, default=DEFAULT_DUMP)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.dump.is_file():
        raise SystemExit(f"dump {args.dump} not found; pass --dump PATH")
    ours_times, theirs_times, ours_cpu, theirs_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            root, out = Path(tmp) / f"root{i}", Path(tmp) / f"wx{i}"
            t, artifact = timed([sys.executable, "-c", _OURS, str(args.dump), str(root), str(args.processes)], ours_cpu)
            ours_times.append(t)
            t, _ = timed([sys.executable, "-m", "wikiextractor.WikiExtractor", "--links", "--no-templates",
                          "--processes", str(args.processes), "-q", "-o", str(out), str(args.dump)], theirs_cpu)
            theirs_times.append(t)
        our_articles, our_links = ours_links(Path(artifact))
        their_articles, their_links = wikiextractor_links(out)
    ours, theirs = statistics.median(ours_times), statistics.median(theirs_times)
    result = {
        "dump": str(args.dump), "processes": args.processes, "repeats": args.repeats,
        "ours": {"articles": our_articles, "links": our_links, "median_s": round(ours, 3),
                 "articles_per_s": round(our_articles / ours, 1), "times_s": [round(t, 3) for t in ours_times],
                 "cpu_s": [round(t, 2) for t in ours_cpu]},
        "wikiextractor": {"articles": their_articles, "links": their_links, "median_s": round(theirs, 3),
                          "articles_per_s": round(their_articles / theirs, 1),
                          "times_s": [round(t, 3) for t in theirs_times], "cpu_s": [round(t, 2) for t in theirs_cpu]},
        "ratio_articles_per_s": round((our_articles / ours) / (their_articles / theirs), 3),
        "ratio_articles_per_cpu_s": round((our_articles / statistics.median(ours_cpu))
                                          / (their_articles / statistics.median(theirs_cpu)), 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
