"""Multi-node graph on the real local cluster: `stage=graph nodes=2` splits the article shards
and the id ranges between the ranks (a file barrier on the shared partial directory between
phases), and the artifact is the one a single process makes, byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from jobs.runs import RunDir
from stages.wiki import dump_writer

REPO = Path(__file__).resolve().parents[2]


def _submit(root: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WIKIGRAPH_EXTRA_STAGES"}
    return subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), f"stage={stage}", *args,
                           f"root={root}", f"results={root / 'results'}"],
                          check=True, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def _files(root: Path, signature: str) -> dict[str, str]:
    manifest = json.loads((root / "graph" / signature / "manifest.json").read_text())
    return {f["path"]: f["sha256"] for f in manifest["files"]}


def test_two_node_graph_splits_the_work_and_matches_one_process(slurm_cluster, tmp_path):
    pages = dump_writer.sample_pages(300, seed=4)
    dump = Path(dump_writer.write_multistream(pages, tmp_path / "data" / "wiki-multistream.xml.bz2",
                                              pages_per_stream=25)["path"])
    extract = [f"dump={dump}", "shards=6", "read_unit_mb=0.001"]
    _submit(tmp_path / "slurm", "extract", *extract, "workers=1", "executor=inline")
    extract = [f"extract.{arg}" for arg in extract]
    shutil.copytree(tmp_path / "slurm" / "extract", tmp_path / "inline" / "extract")
    # A tiny memory budget: several runs per shard and many id ranges, shared by the two ranks.
    _submit(tmp_path / "slurm", "graph", *extract, "workers=1", "memory_mb=0.005",
            "executor=slurm", "nodes=2", "cpus_per_task=1", "wait=true")
    jobs = [job for run_json in (tmp_path / "slurm" / "runs").glob("*/run.json")
            for job in RunDir(run_json.parent).read()["jobs"].values() if job.get("job_id")]
    (job,) = jobs  # the Slurm one (extract ran inline)
    signature = job["signature"]
    manifest = json.loads((tmp_path / "slurm" / "graph" / signature / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert manifest["metrics"]["reduce_ranges"] >= 2 and manifest["metrics"]["map_units"] == 6
    assert not (tmp_path / "slurm" / "graph" / signature / "_work").exists()
    shown = subprocess.run(["scontrol", "show", "job", "-o", job["job_id"]], check=True, capture_output=True,
                           text=True, timeout=30).stdout
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    assert (fields["NumNodes"], fields["NodeList"]) == ("2", "wgnode[1-2]"), shown

    _submit(tmp_path / "inline", "graph", *extract, "executor=inline")
    assert _files(tmp_path / "inline", signature) == _files(tmp_path / "slurm", signature)
