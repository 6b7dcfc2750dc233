"""The README's demo, `python jobs/submit.py stage=all`, with `executor=slurm` on the real local cluster.

No size overrides: the full default comparison grid (4 strategies x 2 masks, QA with and without
memory, an evaluation of each) runs as one afterok chain of job arrays, and `wait=true` collects
the same summary table and plots that the local demo writes.

`cpus_per_task=1` is the only launcher key: the test cluster advertises 2 nodes x 2 CPUs on a
host that may have only 2 cores, and one thread per job (OMP_NUM_THREADS follows cpus_per_task)
keeps concurrent jobs from thrashing each other's OpenMP threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STRATEGIES = ("random", "random_walk", "bfs", "dfs")


def _table_rows(summary: str, heading: str) -> list[list[str]]:
    section = summary.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header row


def test_the_demo_command_runs_as_one_chain_on_the_cluster(slurm_cluster, tmp_path):
    root, res = tmp_path / "art", tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "WIKIGRAPH_EXTRA_STAGES"}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "stage=all", "executor=slurm",
                           "cpus_per_task=1", f"root={root}", f"results={res}", "wait=true"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "job arrays: extract[2], graph[2], pretokenize[2], pretrain[8], qa[2], evaluate[8], evaluate[2]" in proc.stdout

    summary = (res / "summary.md").read_text()
    lm = _table_rows(summary, "Graph-LM")
    assert sorted(row[0] for row in lm) == sorted(f"model.mask={m},packing.strategy={s}" for m in ("doc", "graph")
                                                  for s in STRATEGIES)
    for row in lm:
        final_loss, ppl = float(row[2]), [float(x) for x in row[4:7]]
        assert final_loss < 10.0 and all(1 < p < 50257 for p in ppl), row
    qa = _table_rows(summary, "MemXLNet QA")
    assert sorted(row[0] for row in qa) == ["memory.num_tokens=0", "memory.num_tokens=4"]
    for name in ("loss_pretrain.png", "perplexity_by_context.png", "qa_f1.png"):
        assert (res / name).stat().st_size > 1000, name
