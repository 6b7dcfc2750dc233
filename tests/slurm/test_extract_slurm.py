"""Multi-node extract on the real local cluster: `stage=extract nodes=2` splits a multistream
dump's streams between the ranks (each decompresses only its units), and the artifact is the
one a single process makes, byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jobs.runs import RunDir
from stages.wiki import dump_writer

REPO = Path(__file__).resolve().parents[2]


def _submit(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WIKIGRAPH_EXTRA_STAGES"}
    return subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "stage=extract", *args,
                           f"root={root}", f"results={root / 'results'}"],
                          check=True, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def _files(root: Path, signature: str) -> dict[str, str]:
    manifest = json.loads((root / "extract" / signature / "manifest.json").read_text())
    return {f["path"]: f["sha256"] for f in manifest["files"]}


def test_two_node_extract_reads_its_share_and_matches_one_process(slurm_cluster, tmp_path):
    pages = dump_writer.sample_pages(400, seed=2)
    dump = Path(dump_writer.write_multistream(pages, tmp_path / "data" / "wiki-multistream.xml.bz2",
                                              pages_per_stream=25)["path"])
    common = [f"dump={dump}", "read_unit_mb=0.001", "workers=1"]
    _submit(tmp_path / "slurm", *common, "executor=slurm", "nodes=2", "cpus_per_task=1", "wait=true")
    (run_json,) = (tmp_path / "slurm" / "runs").glob("*/run.json")
    (job,) = RunDir(run_json.parent).read()["jobs"].values()
    signature = job["signature"]
    manifest = json.loads((tmp_path / "slurm" / "extract" / signature / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    by_rank = manifest["metrics"]["read_units_by_rank"]
    assert len(by_rank) == 2 and min(by_rank) > 0 and sum(by_rank) == manifest["metrics"]["read_units"]
    # The controller, not sacct: after a burst of jobs slurmdbd can lag, and CI once read the batch
    # host alone ("wgnode1") from sacct for a job the controller had run on both nodes.
    shown = subprocess.run(["scontrol", "show", "job", "-o", job["job_id"]], check=True, capture_output=True,
                           text=True, timeout=30).stdout
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    assert (fields["NumNodes"], fields["NodeList"]) == ("2", "wgnode[1-2]"), shown

    _submit(tmp_path / "inline", *common, "executor=inline")
    assert _files(tmp_path / "inline", signature) == _files(tmp_path / "slurm", signature)
