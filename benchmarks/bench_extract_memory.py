"""Peak memory of extract as the dump grows: a generated dump of N articles vs one of 10 N.

    PYTHONPATH=. python benchmarks/bench_extract_memory.py [--articles 10000 --factor 10 --processes 2]

Each dump is generated (MediaWiki XML, gzip), then extracted by the stage's `run` in a fresh
subprocess, which reports its own peak RSS (the reading/writing parent) and the largest
peak RSS among its worker processes (forked children start from the parent's size). Streaming keeps both bounded by one page plus a read
block per process; what does grow is the parent's title index (title, shard, offset per
article), which the dense title-ordered ids need.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The stage's run() with a plain context: the runner's manifest step starts a `git`
# subprocess, which would report the parent's peak as a child's.
_MEASURE = """
import json, resource, sys, time
from pathlib import Path
from stages.core import config
from stages.core.context import StageContext
from stages.wiki.extract import run
from stages.wiki.spec import EXTRACT
cfg = config.resolve(EXTRACT.config_cls, {"dump": sys.argv[1], "workers": int(sys.argv[3]), "shards": 8})
root = Path(sys.argv[2])
ctx = StageContext(stage="extract", signature="bench", root=root, out_dir=root / "out", upstream={})
ctx.out_dir.mkdir(parents=True)
start = time.perf_counter()
metrics = run(cfg, ctx)
print(json.dumps({"seconds": time.perf_counter() - start, "articles": metrics["articles"],
                  "parent_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


_GENERATE = """
import gzip, sys
from stages.wiki.sample import generate_sample, write_xml
with gzip.open(sys.argv[2], "wt", encoding="utf-8", compresslevel=1) as out:
    write_xml(generate_sample(int(sys.argv[1]), seed=1), out)
"""


def run_python(code: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return proc.stdout


def make_dump(n_articles: int, path: Path) -> float:
    # In a subprocess: Linux carries a process's peak RSS across fork+exec, so the measured
    # extract must not be started by a process that once held a whole corpus.
    run_python(_GENERATE, str(n_articles), str(path))
    return path.stat().st_size / 2**20


def measure(dump: Path, root: Path, processes: int) -> dict:
    return json.loads(run_python(_MEASURE, str(dump), str(root), str(processes)).strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.articles, args.articles * args.factor):
            dump = Path(tmp) / f"dump-{n}.xml.gz"
            started = time.perf_counter()
            size = make_dump(n, dump)
            generated = time.perf_counter() - started
            result = measure(dump, Path(tmp) / f"root-{n}", args.processes)
            result.update(n_articles=n, dump_mib_gz=round(size, 1), generate_s=round(generated, 1))
            rows.append({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()})
            dump.unlink()
    small, large = rows
    print(json.dumps({
        "runs": rows,
        "parent_peak_ratio": round(large["parent_peak_mib"] / small["parent_peak_mib"], 2),
        "worker_peak_ratio": round(large["worker_peak_mib"] / small["worker_peak_mib"], 2),
        "articles_ratio": args.factor,
    }, indent=2))


if __name__ == "__main__":
    main()
