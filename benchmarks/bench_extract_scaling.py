"""Scaling out extract: wall time with 1, 2, 4 worker processes, and 2 Slurm ranks vs 1.

    PYTHONPATH=. python benchmarks/bench_extract_scaling.py --dump /data/x-multistream.xml.bz2 \
        [--workers 1 2 4] [--slurm] [--root /tmp/bench-scaling]

Every run is a fresh subprocess through the real runner (`jobs/submit.py stage=extract`, a
new root each time, so nothing is a cache hit). Wall and CPU seconds (user+system of the run
and its reaped workers) are reported, and the speed-up against the first row. With
`--slurm`, the same extract runs on the local cluster as `nodes=1` and `nodes=2`
(one task per node, `cpus_per_task=1`, one worker each), timed from submission to the end
of `wait=true`, so queueing and job start-up are included. On a machine with fewer cores
than processes the speed-up is bounded by the cores, not by the reading: compare CPU
seconds too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_submit(root: Path, *args: str) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "stage=extract", *args, f"root={root}",
                           f"results={root / 'results'}"], check=False, capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    (manifest,) = (root / "extract").glob("*/manifest.json")
    metrics = json.loads(manifest.read_text())["metrics"]
    return {"wall_s": round(wall, 2), "cpu_s_local": round(cpu, 2), "articles": metrics["articles"],
            "read_units": metrics["read_units"], "read_units_by_rank": metrics.get("read_units_by_rank")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, required=True)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--slurm", action="store_true", help="also 1 vs 2 ranks on the local Slurm cluster")
    parser.add_argument("--root", type=Path, default=Path("/tmp/wikigraph-bench-scaling"))
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        row = timed_submit(args.root / f"w{workers}", f"dump={args.dump}", f"workers={workers}", "executor=inline")
        rows.append({"run": f"{workers} worker(s), 1 rank", **row})
        print(json.dumps(rows[-1]), flush=True)
    if args.slurm:
        for nodes in (1, 2):
            row = timed_submit(args.root / f"slurm{nodes}", f"dump={args.dump}", "workers=1", "executor=slurm",
                               f"nodes={nodes}", "cpus_per_task=1", "wait=true")
            rows.append({"run": f"slurm: {nodes} rank(s) x 1 worker", **row})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["wall_s"]
    print("\n| run | wall s | speed-up | CPU s (local processes) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['run']} | {row['wall_s']} | {base / row['wall_s']:.2f}x | {row['cpu_s_local']} |")
    slurm = [r for r in rows if r["run"].startswith("slurm")]
    if len(slurm) == 2:
        print(f"\nslurm 2 ranks vs 1: {slurm[0]['wall_s'] / slurm[1]['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
