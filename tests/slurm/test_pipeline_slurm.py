"""The real stages through `executor=slurm` on the real local cluster (slurm/up.sh).

One module-scoped `stage=all` chain on the generated sample (tiny settings) provides the
upstream artifacts (extract, graph, pretokenize, qa) that the other tests reuse, so each test
only pays for what it checks: a sweep array, a 2-node DDP run, a requeue with exact resume, a
failed upstream.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import results
from jobs import slurm as slurm_executor
from jobs.runs import RunDir

REPO = Path(__file__).resolve().parents[2]
# Tiny settings for every stage of the chain, as qualified keys (valid for any `stage=`);
# pretrain.steps is given per test (a key may be given only once). GRID pins the keys that
# stage=all would otherwise sweep as its default comparison grid.
TINY = ["extract.sample_articles=60", "pretrain.packing.token_budget=128", "pretrain.val_batches=1",
        "qa.sample.documents=4", "qa.data.train_size=16", "qa.data.eval_size=8", "qa.curriculum.epochs=1",
        "qa.curriculum.segments=[2]", "evaluate.max_docs=4", "evaluate.generate_tokens=4", "evaluate.test_size=8"]
GRID = ["pretrain.model.mask=graph", "qa.memory.num_tokens=4"]
CHAIN = ["stage=all", *TINY, *GRID, "pretrain.steps=4"]


def submit(root: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WIKIGRAPH_EXTRA_STAGES"}  # real stages only
    proc = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), *args, "executor=slurm",
                           f"root={root}", f"results={root / 'results'}"],
                          check=False, capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def submit_command(*args: str) -> str:
    """stdout of a `status`/`logs` subcommand."""
    return subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), *args], check=True,
                          capture_output=True, text=True, cwd=REPO, timeout=60).stdout


def runs(root: Path) -> list[RunDir]:
    return [RunDir(p.parent) for p in sorted((root / "runs").glob("*/run.json"))]


def wait(run: RunDir) -> dict[str, dict]:
    assert slurm_executor.wait_for(run, poll_s=1.0) == 0, json.dumps(run.read()["jobs"], indent=1)
    return run.read()["jobs"]


def sacct(job_id: str, fields: str = "JobID,State,NodeList,Start,End", duplicates: bool = False) -> list[dict]:
    out = subprocess.run(["sacct", "-X", "-P", "-o", fields, "-j", job_id, *(["-D"] if duplicates else [])],
                         check=True, capture_output=True, text=True, timeout=30).stdout.splitlines()
    return [dict(zip(out[0].split("|"), line.split("|"))) for line in out[1:]]


def submission_script(run: RunDir, job_id: str) -> str:
    base = job_id.split("_")[0]
    return (run.logs / base / f"{base}_submission.sh").read_text()


def record_of(root: Path, signature: str) -> dict:
    (record,) = [r for r in results.load_records(root / "results") if r["signature"] == signature]
    return record


def loss_curve(root: Path, signature: str) -> list[float]:
    return [loss for _, loss in record_of(root, signature)["extra"]["loss_curve"]]


@pytest.fixture(scope="module")
def chain(slurm_cluster, tmp_path_factory):
    """`stage=all` on the sample, submitted as one afterok chain; returns (root, run, dependencies
    seen in the queue right after submission)."""
    root = tmp_path_factory.mktemp("pipeline")
    submit(root, *CHAIN, "pretrain.packing.strategy=random_walk")
    (run,) = runs(root)
    jobs = run.read()["jobs"]
    ids = ",".join(j["job_id"] for j in jobs.values())
    queued = subprocess.run(["squeue", "-h", "-o", "%i|%E", "-j", ids], check=True, capture_output=True, text=True,
                            timeout=30).stdout
    dependencies = {job_id: set(re.findall(r"afterok:(\d+)", deps))
                    for job_id, deps in (line.split("|") for line in queued.splitlines())}
    wait(run)
    return root, run, dependencies


def test_extract_sample_completes_on_the_cluster(slurm_cluster, tmp_path):
    submit(tmp_path, "stage=extract", "dump=sample", "sample_articles=60", "wait=true")
    (run,) = runs(tmp_path)
    (job,) = run.read()["jobs"].values()
    assert [r["State"] for r in sacct(job["job_id"])] == ["COMPLETED"]
    manifest = json.loads((tmp_path / "extract" / job["signature"] / "manifest.json").read_text())
    assert manifest["signature"] == job["signature"]
    assert any(f["path"].startswith("articles-") and f["sha256"] for f in manifest["files"])


def test_stage_all_is_an_afterok_chain_and_skips_existing_artifacts(chain):
    root, run, queued_deps = chain
    jobs = run.read()["jobs"]
    # The LM evaluation reads a fresh generated corpus: extract, graph and pretokenize of it are
    # jobs of the chain too (in the same arrays as the training corpus's).
    assert sorted(j["stage"] for j in jobs.values()) == sorted(
        ["extract", "graph", "pretokenize", "pretrain", "qa", "evaluate", "evaluate", "extract", "graph",
         "pretokenize"])
    rows = {j["job_id"]: sacct(j["job_id"])[0] for j in jobs.values()}
    assert {r["State"] for r in rows.values()} == {"COMPLETED"}
    for key, job in jobs.items():
        upstream_ids = {jobs[u]["job_id"] for u in job["upstream"]}
        script = submission_script(run, job["job_id"])
        if upstream_ids:  # submitted with the dependency (on whole arrays), started only after its upstreams ended
            arrays = sorted({job_id.split("_")[0] for job_id in upstream_ids})
            assert f"--dependency=afterok:{':'.join(arrays)}" in script, key
            assert "--kill-on-invalid-dep=yes" in script
            assert all(rows[job["job_id"]]["Start"] >= rows[u]["End"] for u in upstream_ids), key
        else:
            assert "--dependency" not in script, key
    # The LM evaluation waits behind pretrain (tens of seconds): it was in the queue with its dependencies.
    (evaluate_lm,) = [j for j in jobs.values() if j["stage"] == "evaluate" and j["upstream"][0].startswith("pretrain")]
    pretrain_id = next(j["job_id"] for j in jobs.values() if j["stage"] == "pretrain")
    assert pretrain_id in queued_deps[evaluate_lm["job_id"]]
    assert queued_deps[evaluate_lm["job_id"]] == {jobs[u]["job_id"].split("_")[0] for u in evaluate_lm["upstream"]}

    again = submit(root, *CHAIN, "pretrain.packing.strategy=random_walk")
    assert "nothing to run" in again.stdout and len(runs(root)) == 1
    # A changed evaluation reruns only the two evaluate jobs, which read the existing artifacts.
    submit(root, *CHAIN, "pretrain.packing.strategy=random_walk", "evaluate.seed=1", "wait=true")
    new_jobs = runs(root)[-1].read()["jobs"]
    assert sorted(j["stage"] for j in new_jobs.values()) == ["evaluate", "evaluate"]
    assert all("--dependency" not in submission_script(runs(root)[-1], j["job_id"]) for j in new_jobs.values())
    assert {j["state"] for j in new_jobs.values()} == {"COMPLETED"}


def test_strategy_sweep_is_one_array_with_four_records(chain):
    root, _, _ = chain
    submit(root, "stage=pretrain", *TINY, "packing.strategy=random,random_walk,bfs,dfs", "pretrain.steps=2",
           "cpus_per_task=1", "wait=true")
    run = runs(root)[-1]
    jobs = run.read()["jobs"]
    assert len({j["job_id"].split("_")[0] for j in jobs.values()}) == 1  # one sbatch --array
    assert sorted(j["job_id"].split("_")[1] for j in jobs.values()) == ["0", "1", "2", "3"]
    records = [record_of(root, j["signature"]) for j in jobs.values()]
    assert sorted(r["sweep"]["packing.strategy"] for r in records) == ["bfs", "dfs", "random", "random_walk"]
    assert all(r["metrics"]["steps"] == 2 and r["run_id"] == run.run_id for r in records)


def test_two_node_ddp_matches_one_process_with_the_same_global_batch(chain):
    """2 ranks x batch_size=1 vs one process with grad_accum=2. The loader's packing streams (start
    points and traversal RNG) depend on world_size x max(1, num_workers), so num_workers=2 gives the
    single process the same two streams, one micro-batch from each per step: the same global batch,
    its gradient averaged over the same two micro-batches (DDP all-reduce vs accumulation).
    doc_budget=32 puts several documents in each pack, so the packs depend on each stream's RNG
    (one process with batch_size=2 and one stream would see different packs)."""
    root, _, _ = chain
    common = ["stage=pretrain", *TINY, "pretrain.steps=6", "packing.doc_budget=32", "packing.batch_size=1", "cpus_per_task=1"]
    ddp_args = [*common, "nodes=2", "tasks_per_node=1"]
    dry = submit(root, *ddp_args, "dry_run=true").stdout
    assert "#SBATCH --nodes=2" in dry and "#SBATCH --ntasks-per-node=1" in dry
    submit(root, *ddp_args)
    ddp_run = runs(root)[-1]
    submit(root, *common, "grad_accum=2", "packing.num_workers=2")
    single_run = runs(root)[-1]
    (ddp,), (single,) = wait(ddp_run).values(), wait(single_run).values()

    # Every option and setup line dry_run printed is in the script that was submitted (up to the
    # run directory's name).
    script = re.sub(r"runs/[^/]+/", "runs/RUN/", submission_script(ddp_run, ddp["job_id"])).splitlines()
    printed = re.sub(r"runs/[^/]+/", "runs/RUN/", dry[dry.index("--- sbatch script"):]).splitlines()
    shown = [line for line in printed if line.startswith(("#SBATCH", "export", "trap"))]
    assert len(shown) > 8 and all(line in script for line in shown), set(shown) - set(script)

    assert sacct(ddp["job_id"])[0]["NodeList"] == "wgnode[1-2]"
    manifest = json.loads((root / "pretrain" / ddp["signature"] / "manifest.json").read_text())
    assert manifest["world_size"] == manifest["metrics"]["world_size"] == 2
    ddp_curve, single_curve = loss_curve(root, ddp["signature"]), loss_curve(root, single["signature"])
    assert len(ddp_curve) == len(single_curve) == 6
    diff = max(abs(a - b) for a, b in zip(ddp_curve, single_curve))
    print(f"2-node DDP vs 1 process loss curves: max abs diff {diff:.3g}\n{ddp_curve}\n{single_curve}")
    assert diff < 1e-4

    tail = submit_command("logs", f"run={ddp_run.run_id}", f"root={root}", "lines=5")
    job = ddp["job_id"]
    assert f"{job}_0_log.err <==" in tail and f"{job}_1_log.err <==" in tail  # one log per rank


def test_two_nodes_by_two_tasks_train_with_world_size_four(chain):
    """The GPU geometry on CPU nodes: tasks_per_node follows gpus_per_node in the dry run, and a
    2-node x 2-task pretrain runs 4 ranks over gloo."""
    root, _, _ = chain
    common = ["stage=pretrain", *TINY, "pretrain.steps=3", "packing.batch_size=1", "nodes=2", "cpus_per_task=1"]
    dry = submit(root, *common, "gpus_per_node=2", "dry_run=true").stdout
    assert "2 node(s) x 2 task(s) = world size 4" in dry and "#SBATCH --ntasks-per-node=2" in dry
    submit(root, *common, "tasks_per_node=2")
    (job,) = wait(runs(root)[-1]).values()
    manifest = json.loads((root / "pretrain" / job["signature"] / "manifest.json").read_text())
    assert manifest["world_size"] == manifest["metrics"]["world_size"] == 4
    assert sacct(job["job_id"])[0]["NodeList"] == "wgnode[1-2]"


def test_usr2_requeues_and_resumes_to_the_same_weights(chain, tmp_path):
    root, _, _ = chain
    other = tmp_path / "uninterrupted"
    for stage in ("extract", "graph", "pretokenize"):  # same upstream artifacts under a second root
        shutil.copytree(root / stage, other / stage)
    # Enough steps that the job is still running when USR2 lands: a tiny-preset step on the compact
    # vocabulary takes a fraction of a second, so 10 steps could finish before the signal.
    steps = 100
    args = ["stage=pretrain", *TINY, f"pretrain.steps={steps}", "checkpoint_every=3", "log_every=1", "cpus_per_task=1"]
    submit(root, *args)
    interrupted = runs(root)[-1]
    submit(other, *args)
    reference = runs(other)[-1]
    (job,) = interrupted.read()["jobs"].values()
    metrics = root / "pretrain" / f".{job['signature']}.partial" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        assert time.monotonic() < deadline, f"job {job['job_id']} never logged 2 steps"
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR2", job["job_id"]], check=True, timeout=30)
    (done,), (ref,) = wait(interrupted).values(), wait(reference).values()

    assert [r["State"] for r in sacct(job["job_id"], duplicates=True)] == ["REQUEUED", "COMPLETED"]
    log = (interrupted.logs / job["job_id"] / f"{job['job_id']}_0_log.err").read_text()
    assert f"requeueing Slurm job {job['job_id']}" in log  # the stage saved and requeued itself (jobs/entry.py)
    resumed = record_of(root, job["signature"])["metrics"]["resumed_from_step"]
    assert resumed is not None and 2 <= resumed < steps
    from safetensors.torch import load_file

    weights = load_file(root / "pretrain" / done["signature"] / "model.safetensors")
    expected = load_file(other / "pretrain" / ref["signature"] / "model.safetensors")
    assert weights.keys() == expected.keys()
    assert all(torch_equal(weights[k], expected[k]) for k in weights)
    assert loss_curve(root, done["signature"]) == loss_curve(other, ref["signature"])
    print(f"requeued at step {resumed}; {len(weights)} tensors bit-identical to the uninterrupted run")


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_failed_upstream_blocks_its_dependants(chain, tmp_path):
    root, _, _ = chain
    dump = tmp_path / "corrupt.xml"
    dump.write_text("<mediawiki><page><title>A</title><revision><text>cut off")
    # Same qa settings as the chain: those artifacts exist, so only the extract branch runs; two
    # strategies make pretrain and evaluate arrays, whose tasks Slurm cancels before they ever start.
    proc = submit(root, *CHAIN, "pretrain.packing.strategy=random,bfs", f"extract.dump={dump}", "extract.on_error=fail",
                  "wait=true", check=False, timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run = runs(root)[-1]
    jobs = run.read()["jobs"]
    assert sorted(j["stage"] for j in jobs.values()) == [
        "evaluate", "evaluate", "extract", "graph", "pretokenize", "pretrain", "pretrain"]
    (extract_key,) = [k for k, j in jobs.items() if j["stage"] == "extract"]
    assert {k: j["state"] for k, j in jobs.items()} == {
        k: "FAILED" if k == extract_key else "CANCELLED" for k in jobs}  # as `wait=true` saw them
    extract_id = jobs[extract_key]["job_id"]
    assert [r["State"] for r in sacct(extract_id)] == ["FAILED"]
    for base in {j["job_id"].split("_")[0] for j in jobs.values()} - {extract_id}:
        for row in sacct(base, "JobID,State,Elapsed"):  # cancelled by Slurm (kill-on-invalid-dep), never started
            assert row["State"] == "CANCELLED" and row["Elapsed"] == "00:00:00", row
    assert all(not list((run.logs / j["job_id"]).glob("*_log.*")) for k, j in jobs.items() if k != extract_key)
    # The job ran the code snapshot of its run directory, not the working tree.
    log = (run.logs / jobs[extract_key]["job_id"] / f"{jobs[extract_key]['job_id']}_0_log.err").read_text()
    assert f"{run.path}/code/stages/wiki" in log and f"{REPO}/stages" not in log

    status = submit_command("status", f"root={root}")
    lines = [line for line in status.splitlines() if line.startswith(run.run_id)]
    assert len(lines) == 7
    for line in lines:
        if extract_key not in line:
            assert f"upstream {extract_key} failed (FAILED)" in line, line
