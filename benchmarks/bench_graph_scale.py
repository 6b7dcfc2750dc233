"""Scale curve of the `graph` stage alone, at 1 and 2 ranks: CPU s, wall s and the peak RSS of
every process, on generated extract artifacts of 100k / 300k / 1M articles.

    PYTHONPATH=. python benchmarks/bench_graph_scale.py --articles 100000 --articles 300000 \\
        [--articles 1000000] [--ranks 1 --ranks 2] [--workers 1] [--memory-mb 256] \\
        [--root /tmp/wikigraph-bench-graph] [--json out.jsonl] \\
        [--baseline-code /tmp/base [--baseline-same-config]]
    PYTHONPATH=. python benchmarks/bench_graph_scale.py --report out.jsonl   # the tables again

The input is an extract artifact written directly in the articles format (8 shards,
`--links` links per article, 28 by default: enwiki's 200M links over 7M articles), with a
hub-skewed in-degree, ~5% dangling and ~3% duplicate links and 2 KB of text per article, so
that the graph stage parses what it would parse on real shards. Running extract itself at 1M
articles takes most of an hour on the 2-core development machine; what `graph` costs depends
only on the shards it reads. Each rank is a fresh process through the real runner (`RANK`,
`WORLD_SIZE` set as torchrun or srun set them), measured like `bench_scale.py`: a sampler reads
`/proc/*/status` VmHWM every 0.1 s for each rank and worker process; CPU seconds are the reaped
processes' user + system time. The upstream checksums are verified (and stamped) once before the
runs, so no measured run pays for hashing the input.
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

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_scale import children_cpu, sample_memory

_STAGE = """
import json, sys
from pathlib import Path
from stages.core import config
from stages.core.artifacts import load_artifact
from stages.core.runner import execute
from stages.wiki.spec import GRAPH
root, extract_sig, overrides = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
out = execute(GRAPH, config.resolve(GRAPH.config_cls, overrides), root,
              {"extract": load_artifact(root, "extract", extract_sig)})
print(json.dumps({"signature": out.signature, "metrics": out.metrics}, default=str))
"""

_TEXT = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. " * 26)[:2000]


def make_extract(root: Path, articles: int, links: int, shards: int = 8, seed: int = 0) -> str:
    """A generated extract artifact under `root/extract/<signature>`; returns the signature."""
    from stages.core.artifacts import commit_artifact, compute_signature, final_dir, partial_dir
    from stages.formats.articles import Article, ShardWriter, shard_name, write_titles_json
    from stages.formats.tables import StringTable, write_lines

    generated = {"generated": f"{articles} articles x {links} links, seed {seed}"}
    signature = compute_signature("extract", 0, generated, {})
    if final_dir(root, "extract", signature).is_dir():
        return signature
    partial = partial_dir(root, "extract", signature)
    partial.mkdir(parents=True, exist_ok=True)
    titles = [f"Article {i:07d}" for i in range(articles)]
    write_lines(partial / "titles.txt", titles)
    write_titles_json(partial / "titles.json", StringTable(partial / "titles.txt"))
    (partial / "redirects.json").write_text("{}\n")
    rng = np.random.default_rng(seed)
    hubs = rng.choice(articles, max(1, articles // 100), replace=False)
    per_shard = -(-articles // shards)
    total = 0
    for k in range(shards):
        lo, hi = k * per_shard, min((k + 1) * per_shard, articles)
        counts = rng.poisson(links, hi - lo)
        n = int(counts.sum())
        targets = np.where(rng.random(n) < 0.2, hubs[rng.integers(0, len(hubs), n)], rng.integers(0, articles, n))
        dangling = rng.random(n) < 0.05
        names = [f"Missing {t}" if d else titles[t] for t, d in zip(targets.tolist(), dangling.tolist())]
        writer = ShardWriter(partial / shard_name(k))
        at = 0
        for i, c in zip(range(lo, hi), counts.tolist()):
            row = names[at:at + c]
            at += c
            if row and rng.random() < 0.5:
                row.append(row[0])  # a repeated link (kept by extract; the graph dedups it)
            total += len(row)
            writer.write(Article(i, titles[i], _TEXT, row, []))
        writer.close()
    manifest = {"stage": "extract", "signature": signature, "stage_version": 0, "config": generated,
                "signature_config": generated, "upstream": {},
                "metrics": {"articles": articles, "links_kept": total}}
    commit_artifact(partial, final_dir(root, "extract", signature), manifest)
    return signature


def measure_graph(root: Path, extract_sig: str, ranks: int, overrides: dict, code: Path = REPO) -> dict:
    """The graph stage as `ranks` concurrent rank processes; wall, CPU, every process's peak RSS."""
    import shutil

    shutil.rmtree(root / "graph", ignore_errors=True)
    before = children_cpu()
    start = time.perf_counter()
    procs, peaks, anon, stop = [], {}, {}, threading.Event()
    for rank in range(ranks):
        env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1", RANK=str(rank),
                   WORLD_SIZE=str(ranks), LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen([sys.executable, "-c", _STAGE, str(root), extract_sig, json.dumps(overrides)],
                                      cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    sampler = threading.Thread(target=sample_memory, args=([psutil.Process(p.pid) for p in procs], peaks, stop, anon),
                               daemon=True)
    sampler.start()
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    for p, (_, err) in zip(procs, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"graph rank failed ({p.returncode}): {err[-3000:]}")
    rank_pids = [p.pid for p in procs]
    rank_rss = [round(peaks.get(pid, 0) / 2**20, 1) for pid in rank_pids]
    workers = [round(v / 2**20, 1) for pid, v in peaks.items() if pid not in rank_pids]
    metrics = json.loads(outputs[0][0].strip().splitlines()[-1])["metrics"]
    return {"ranks": ranks, "wall_s": round(wall, 2), "cpu_s": round(children_cpu() - before, 2),
            "rss_rank_mb": rank_rss, "rss_worker_max_mb": max(workers, default=0.0),
            "rss_max_mb": max([*rank_rss, *workers]),
            "anon_max_mb": round(max(anon.values(), default=0) / 2**20, 1), "metrics": metrics}


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


ENWIKI_LINKS = 200_000_000


def report(rows: list[dict], cores: int = 64, nodes: int = 4) -> str:
    lines = [("| code | memory_mb | articles | links | ranks | wall s | CPU s | of it serial (rank 0) | "
             "peak RSS per rank MB | private (anon) max MB | edges | ranges |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["metrics"]
        lines.append(f"| {r.get('code', 'this')} | {m.get('memory_mb', '')} | {r['articles']:,} | {r['links']:,} | "
                     f"{r['ranks']} | {r['wall_s']} | {r['cpu_s']} | {m.get('serial_cpu_s', 'all')} | "
                     f"{', '.join(map(str, r['rss_rank_mb']))} | {r.get('anon_max_mb', '')} | {m['edges']:,} | "
                     f"{m.get('reduce_ranges', '')} |")
    for budget in sorted({r["metrics"].get("memory_mb") for r in rows if r.get("code", "this") == "this"}):
        group = [r for r in rows if r.get("code", "this") == "this" and r["metrics"].get("memory_mb") == budget]
        ones = [r for r in group if r["ranks"] == 1]
        if len({r["links"] for r in ones}) < 2:
            continue
        cpu_a, cpu_b = fit([(r["links"], r["cpu_s"]) for r in ones])
        ser_a, ser_b = fit([(r["links"], r["metrics"]["serial_cpu_s"]) for r in ones])
        cpu, serial = cpu_a + cpu_b * ENWIKI_LINKS, ser_a + ser_b * ENWIKI_LINKS
        one = serial + (cpu - serial) / cores
        four = serial + (cpu - serial) / (cores * nodes)
        smallest = min(r["articles"] for r in group)
        first = max(r["rss_max_mb"] for r in group if r["articles"] == smallest)
        lines += ["", (f"memory_mb={budget}: fit over the 1-rank rows, x = links: CPU s = {cpu_a:.2f} + "
                  f"{cpu_b * 1e6:.2f} per 1M links; serial (rank 0: lookup + commit) = {ser_a:.2f} + "
                  f"{ser_b * 1e6:.2f} per 1M links. At enwiki ({ENWIKI_LINKS:,} links): {cpu:,.0f} CPU s, "
                  f"{serial:,.0f} of it serial; wall on one {cores}-core node ~ {one:,.0f} s, on {nodes} nodes "
                  f"~ {four:,.0f} s (serial + parallel / cores). Peak RSS of the largest process relative to "
                  f"{smallest:,} articles: " + ", ".join(f"{r['articles']:,} x{r['ranks']}: "
                                                          f"{r['rss_max_mb'] / first:.2f}" for r in group))]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, action="append", default=[])
    parser.add_argument("--links", type=int, default=28)
    parser.add_argument("--ranks", type=int, action="append", default=[])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--memory-mb", type=float, default=256.0)
    parser.add_argument("--root", type=Path, default=Path("/tmp/wikigraph-bench-graph"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--report", type=Path)
    parser.add_argument("--baseline-code", type=Path,
                        help="also run 1 rank of the graph stage of this checkout (e.g. `git archive` of the "
                             "commit before), with its default config: the before/after in one run")
    parser.add_argument("--baseline-same-config", action="store_true",
                        help="give the baseline the same --workers and --memory-mb (a baseline that has them)")
    args = parser.parse_args()
    if args.report:
        print(report([json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]))
        return
    from stages.core.artifacts import load_artifact
    from stages.core.verify import verify_artifact

    rows = []
    for articles in args.articles:
        root = args.root / f"a{articles}"
        started = time.perf_counter()
        sig = make_extract(root, articles, args.links)
        extract = load_artifact(root, "extract", sig)
        verify_artifact(extract, checksums=True)  # stamped: no measured run hashes the input
        links = extract.manifest["metrics"]["links_kept"]
        print(f"extract {articles:,}: {links:,} links, made in {time.perf_counter() - started:.0f} s", flush=True)
        runs = [(ranks, REPO) for ranks in args.ranks or [1, 2]]
        for ranks, code in ([(1, args.baseline_code)] if args.baseline_code else []) + runs:
            same = code == REPO or args.baseline_same_config
            overrides = {"workers": args.workers, "memory_mb": args.memory_mb} if same else {}
            row = measure_graph(root, sig, ranks, overrides, code)
            row.update(articles=articles, links=links, code="baseline" if code != REPO else "this")
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "metrics"}), flush=True)
            if args.json:
                with open(args.json, "a") as out:
                    out.write(json.dumps(row) + "\n")
    print(report(rows))


if __name__ == "__main__":
    main()
