"""`executor=slurm` through the real CLI against the real local cluster (slurm/up.sh).

Uses the test-only toy stages, so these exercise the launcher (arrays, chains, validation)
without the cost of the real stages; tests/slurm/test_pipeline_slurm.py runs the real ones.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import cli, results
from jobs import slurm as slurm_executor

REPO = Path(__file__).resolve().parents[2]


def submit(*args, check=True):
    env = {**os.environ, "WIKIGRAPH_EXTRA_STAGES": "tests.toy_stages", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "executor=slurm", *args],
                          check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_infos(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "runs").glob("*/run.json"))]


def test_sweep_is_one_array_job_with_one_record_per_task(slurm_cluster, tmp_path):
    root, res = tmp_path / "art", tmp_path / "res"
    submit("stage=toy_numbers", f"root={root}", f"results={res}", "shards=2", "per_shard=10", "wait=true")
    out = submit("stage=toy_sum", f"root={root}", f"results={res}", "offset=1,2,3,4", "array_parallelism=2",
                 "toy_numbers.shards=2", "toy_numbers.per_shard=10", "wait=true")
    assert "job arrays: toy_sum[4]" in out.stdout
    jobs = run_infos(root)[-1]["jobs"]
    assert len({j["job_id"].split("_")[0] for j in jobs.values()}) == 1  # one sbatch --array
    assert sorted(j["job_id"].split("_")[1] for j in jobs.values()) == ["0", "1", "2", "3"]
    records = [r for r in results.load_records(res) if r["stage"] == "toy_sum"]
    assert sorted(r["metrics"]["total"] for r in records) == [191, 192, 193, 194]
    summary = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "collect", f"results={res}"],
                             capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "## toy_sum" in summary and summary.count("\n| ") >= 5


def test_array_larger_than_max_array_size_is_split(slurm_cluster, tmp_path, monkeypatch):
    root, res = tmp_path / "art", tmp_path / "res"
    submit("stage=toy_numbers", f"root={root}", f"results={res}", "shards=1", "per_shard=5", "wait=true")
    # The real cluster allows 1001 tasks; pretend it allows 2 so that 3 sweep points need 2 arrays.
    monkeypatch.setattr(slurm_executor, "max_array_size", lambda: 2)
    monkeypatch.setenv("WIKIGRAPH_EXTRA_STAGES", "tests.toy_stages")
    code = cli.main(["stage=toy_sum", "executor=slurm", f"root={root}", f"results={res}", "offset=1,2,3",
                     "toy_numbers.shards=1", "toy_numbers.per_shard=5", "wait=true"])
    assert code == 0
    jobs = run_infos(root)[-1]["jobs"]
    assert len({j["job_id"].split("_")[0] for j in jobs.values()}) == 2
    assert len([r for r in results.load_records(res) if r["stage"] == "toy_sum"]) == 3


@pytest.mark.parametrize("args, message", [
    (["partition=nope"], "`partition=nope` does not exist"),
    (["nodes=9"], "has only"),
    (["container=/no/such/image.sif"], "no such image file"),
])
def test_bad_launcher_input_fails_before_sbatch(slurm_cluster, tmp_path, args, message):
    proc = submit("stage=toy_numbers", f"root={tmp_path}", *args, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()
