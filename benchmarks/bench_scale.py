"""Scale curve: extract -> graph -> pretokenize -> opening the packing loader, on big dumps.

    PYTHONPATH=. python benchmarks/make_dump.py ...            # or stages/wiki/dump_writer.py --help
    PYTHONPATH=. python benchmarks/bench_scale.py --dump /data/gen100000/gen100000-multistream.xml.bz2 \
        [--dump ...] [--workers 2] [--root /tmp/bench] [--json out.json]

Each stage runs through the real runner in a fresh subprocess (interpreter start included).
A sampler reads `/proc` every 0.1 s and keeps the peak RSS (VmHWM) of the stage process
and of each of its worker processes; CPU seconds are the stage process's and its reaped
workers' user+system time. The `loader` row opens `PackLoader` over the graph and tokens
and draws one batch. Then a least-squares fit `a + b * articles` per stage and metric, and
an extrapolation to enwiki (7M articles) on 64 cores (`cpu_s / 64` when a stage's CPU work
parallelizes over workers, wall when it does not) is printed; the README explains how to
read it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]

_STAGE = """
import json, sys
from pathlib import Path
from stages.core import config
from stages.core.artifacts import load_artifact
from stages.core.registry import get as get_stage
from stages.core.runner import execute
stage, root, overrides, upstream = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
spec = get_stage(stage)
cfg = config.resolve(spec.config_cls, overrides)
ups = {name: load_artifact(root, name, sig) for name, sig in upstream.items()}
out = execute(spec, cfg, root, ups)
print(json.dumps({"signature": out.signature, "metrics": out.metrics}, default=str))
"""

_LOADER = """
import json, sys
from pathlib import Path
from stages.core.artifacts import load_artifact
from stages.packing.config import PackingConfig
from stages.packing.loader import PackLoader
root, graph_sig, tokens_sig = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
loader = PackLoader.from_paths(load_artifact(root, "graph", graph_sig).path,
                               load_artifact(root, "pretokenize", tokens_sig).path, PackingConfig(), seed=0)
batch = next(iter(loader))
print(json.dumps({"signature": "", "metrics": {"docs": loader.store.num_docs, "batch_keys": sorted(batch)}}))
"""


def sample_memory(procs: list[psutil.Process], peaks: dict[int, int], stop: threading.Event,
                  anon: dict[int, int] | None = None) -> None:
    """Until `stop`: every 0.1 s, each process's and descendant's peak RSS (VmHWM) into `peaks`,
    and its private memory (RssAnon, sampled: the kernel keeps no peak of it) into `anon`."""
    while not stop.is_set():
        family = []
        for proc in procs:
            try:
                family += [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for p in family:
            try:
                with open(f"/proc/{p.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peaks[p.pid] = max(peaks.get(p.pid, 0), int(line.split()[1]) * 1024)
                        elif anon is not None and line.startswith("RssAnon:"):
                            anon[p.pid] = max(anon.get(p.pid, 0), int(line.split()[1]) * 1024)
            except OSError:
                pass
        stop.wait(0.1)


def run_measured(args: list[str]) -> dict:
    """Run a Python snippet in a subprocess; wall, CPU and peak RSS of it and its workers."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=([psutil.Process(child.pid)], peaks, stop), daemon=True)
    sampler.start()
    out, err = child.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"failed ({child.returncode}): {err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    parent = peaks.pop(child.pid, 0)
    return {"wall_s": round(wall, 2), "rss_parent_mb": round(parent / 2**20, 1),
            "rss_worker_max_mb": round(max(peaks.values(), default=0) / 2**20, 1), **result}


def children_cpu() -> float:
    """CPU seconds (user + system) of the reaped child processes so far."""
    usage = os.times()
    return usage.children_user + usage.children_system


def stage(name: str, root: Path, overrides: dict, upstream: dict) -> dict:
    before = children_cpu()
    row = run_measured([_STAGE, name, str(root), json.dumps(overrides), json.dumps(upstream)])
    row["cpu_s"] = round(children_cpu() - before, 2)
    print(f"  ({name} done: {json.dumps({k: v for k, v in row.items() if k != 'metrics'})})", flush=True)
    return row


def measure(dump: Path, root: Path, workers: int) -> dict:
    """All stages on one dump; returns {stage: row} plus the article count."""
    rows = {}
    rows["extract"] = stage("extract", root, {"dump": str(dump), "workers": workers, "shards": 8}, {})
    ext = rows["extract"]["signature"]
    rows["graph"] = stage("graph", root, {}, {"extract": ext})
    rows["pretokenize"] = stage("pretokenize", root, {"workers": workers}, {"extract": ext})
    before = children_cpu()
    rows["loader"] = run_measured([_LOADER, str(root), rows["graph"]["signature"], rows["pretokenize"]["signature"]])
    rows["loader"]["cpu_s"] = round(children_cpu() - before, 2)
    return {"dump": str(dump), "articles": rows["extract"]["metrics"]["articles"],
            "links": rows["extract"]["metrics"]["links_kept"], "tokens": rows["pretokenize"]["metrics"]["tokens"],
            "edges": rows["graph"]["metrics"]["edges"], "stages": rows}


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares a + b x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


#: enwiki, as the issue sizes it: articles, links, gpt2 tokens.
ENWIKI = {"articles": 7_000_000, "links": 200_000_000, "tokens": 5_000_000_000}
#: What each stage's work grows with, and whether its CPU work spreads over workers and ranks.
DRIVERS = {"extract": ("articles", True), "graph": ("links", False), "pretokenize": ("tokens", True),
           "loader": ("articles", False)}


def report(results: list[dict], cores: int = 64, nodes: int = 4) -> str:
    lines = ["| stage | articles | wall s | CPU s | RSS parent MB | RSS worker max MB |", "|---|---|---|---|---|---|"]
    for res in results:
        for name, row in res["stages"].items():
            lines.append(f"| {name} | {res['articles']:,} | {row['wall_s']} | {row['cpu_s']} | "
                         f"{row['rss_parent_mb']} | {row['rss_worker_max_mb']} |")
    if len(results) < 2:
        return "\n".join(lines)
    lines += ["", (f"Fit `a + b x` (x: what the stage grows with), extrapolated to enwiki ({ENWIKI['articles']:,} "
              f"articles, {ENWIKI['links']:,} links, {ENWIKI['tokens']:,} tokens); wall on one {cores}-core node "
              f"and on {nodes} nodes = serial CPU + parallel CPU / cores (an estimate: perfect spreading):"), "",
              ("| stage | x | CPU s per 1M x | CPU s at enwiki | of it serial | wall 1 node | wall 4 nodes | "
              "parent RSS MB per 1M x | parent RSS MB at enwiki | worker RSS MB |"),
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name in results[0]["stages"]:
        driver, parallel = DRIVERS[name]
        xs = [(r["links"] if driver == "links" else r[driver]) for r in results]
        target = ENWIKI[driver]
        cpu_a, cpu_b = fit([(x, r["stages"][name]["cpu_s"]) for x, r in zip(xs, results)])
        mem_a, mem_b = fit([(x, r["stages"][name]["rss_parent_mb"]) for x, r in zip(xs, results)])
        workers = [r["stages"][name]["rss_worker_max_mb"] for r in results]
        worker_mem = f"{max(workers):,.0f} (largest seen)" if name == "extract" else "no workers"
        if cpu_b <= 0:  # flat within the noise: report what was measured, not a negative slope
            cpu_a, cpu_b = max(r["stages"][name]["cpu_s"] for r in results), 0.0
        if mem_b <= 0:
            mem_a, mem_b = max(r["stages"][name]["rss_parent_mb"] for r in results), 0.0
        cpu = cpu_a + cpu_b * target
        if name == "extract":  # the tables phase runs on rank 0 alone
            serial_a, serial_b = fit([(x, r["stages"][name]["metrics"].get("tables_cpu_s", 0.0))
                                      for x, r in zip(xs, results)])
            serial = serial_a + serial_b * target
        else:
            serial = 0.0 if parallel else cpu
        one = serial + (cpu - serial) / cores
        four = serial + (cpu - serial) / (cores * nodes)
        lines.append(f"| {name} | {driver} | {cpu_b * 1e6:,.1f} | {cpu:,.0f} | {serial:,.0f} | {one:,.0f} s | "
                     f"{four:,.0f} s | {mem_b * 1e6:,.1f} | {mem_a + mem_b * target:,.0f} | {worker_mem} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, action="append", default=[], help="dump to measure (repeat)")
    parser.add_argument("--report", type=Path, help="only print the tables of the rows in this --json file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path("/tmp/wikigraph-bench-scale"))
    parser.add_argument("--json", type=Path, help="append the raw rows here")
    args = parser.parse_args()
    if args.report:
        print(report([json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]))
        return
    if not args.dump:
        parser.error("pass --dump (or --report)")
    results = []
    for dump in args.dump:
        res = measure(dump, args.root / dump.stem.replace(".xml", ""), args.workers)
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "stages"}), flush=True)
        for name, row in res["stages"].items():
            phases = {k: v for k, v in row.get("metrics", {}).items()
                      if k in ("read_units", "convert_s", "tables_s", "tables_cpu_s", "write_s")}
            print(f"  {name}: " + json.dumps({**{k: v for k, v in row.items() if k != "metrics"}, **phases}),
                  flush=True)
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps(res) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
