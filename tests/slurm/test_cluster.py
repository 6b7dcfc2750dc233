"""The local Slurm test cluster itself (slurm/up.sh): scheduling, arrays, dependencies, requeue,
signals and accounting, with plain sbatch/srun, as the launcher relies on them."""

import subprocess
import time


def _read_lines(path, timeout=60.0, count=1):
    """Lines of a file written by a job, once it has at least `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split()) >= count:
            return path.read_text().split()
        time.sleep(0.3)
    raise AssertionError(f"{path} did not get {count} line(s) in {timeout}s")


def test_configuration_the_launcher_relies_on(slurm_cluster):
    config = slurm_cluster.config
    assert slurm_cluster.max_array_size >= 1001
    assert config["JobRequeue"] == "1"
    assert "preempt_send_user_signal" in config["SlurmctldParameters"]
    assert config["AccountingStorageType"] == "accounting_storage/slurmdbd"
    assert len(slurm_cluster.nodes) >= 2, "tests need >= 2 nodes: NODES=2 bash slurm/up.sh"


def test_sbatch_runs_a_batch_job_on_a_cluster_node(slurm_cluster, slurm_jobs, tmp_path):
    job = slurm_jobs.sbatch("--output=out.txt", "--wrap", "echo $SLURMD_NODENAME $SLURM_JOB_ID")
    assert slurm_jobs.wait(job) == "COMPLETED"
    node, job_id = (tmp_path / "out.txt").read_text().split()
    assert node in slurm_cluster.nodes and job_id == job


def test_srun_places_one_task_on_each_of_two_nodes(slurm_cluster):
    proc = subprocess.run(["srun", "--nodes=2", "--ntasks-per-node=1", "--time=2", "bash", "-c",
                           "echo $SLURM_PROCID $SLURMD_NODENAME $SLURM_NTASKS"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = sorted(line.split() for line in proc.stdout.splitlines())
    assert [r[0] for r in rows] == ["0", "1"]
    assert len({r[1] for r in rows}) == 2 and {r[1] for r in rows} <= set(slurm_cluster.nodes)
    assert {r[2] for r in rows} == {"2"}


def test_array_runs_every_task_and_respects_the_throttle(slurm_jobs, tmp_path):
    script = "echo $SLURM_ARRAY_TASK_ID $(date +%s.%N) > start.$SLURM_ARRAY_TASK_ID; sleep 2; " \
             "date +%s.%N > end.$SLURM_ARRAY_TASK_ID"
    job = slurm_jobs.sbatch("--array=0-3%2", "--output=/dev/null", "--wrap", script)
    for task in range(4):
        assert slurm_jobs.wait(f"{job}_{task}") == "COMPLETED"
    spans = []
    for task in range(4):
        task_id, start = (tmp_path / f"start.{task}").read_text().split()
        assert task_id == str(task)
        spans.append((float(start), float((tmp_path / f"end.{task}").read_text())))
    most_at_once = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most_at_once <= 2, f"%2 throttle exceeded: {spans}"


def test_afterok_runs_after_success_and_never_after_failure(slurm_jobs, tmp_path):
    good = slurm_jobs.sbatch("--output=/dev/null", "--wrap", "sleep 1")
    bad = slurm_jobs.sbatch("--output=/dev/null", "--wrap", "sleep 1; exit 3")
    after_good = slurm_jobs.sbatch(f"--dependency=afterok:{good}", "--output=/dev/null", "--wrap", "touch ran.good")
    after_bad = slurm_jobs.sbatch(f"--dependency=afterok:{bad}", "--output=/dev/null", "--wrap", "touch ran.bad")
    killed = slurm_jobs.sbatch(f"--dependency=afterok:{bad}", "--kill-on-invalid-dep=yes", "--output=/dev/null",
                               "--wrap", "touch ran.killed")
    assert slurm_jobs.wait(after_good) == "COMPLETED" and (tmp_path / "ran.good").exists()
    assert slurm_jobs.wait(bad) == "FAILED"
    assert slurm_jobs.wait(killed) == "CANCELLED"
    deadline = time.monotonic() + 30
    while slurm_jobs.state(after_bad)[1] != "DependencyNeverSatisfied" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert slurm_jobs.state(after_bad) == ("PENDING", "DependencyNeverSatisfied")
    assert not (tmp_path / "ran.bad").exists() and not (tmp_path / "ran.killed").exists()


def test_scontrol_requeue_reruns_a_running_batch_job(slurm_jobs, tmp_path):
    # The first run waits to be requeued; the rerun (SLURM_RESTART_COUNT=1) finishes.
    script = 'echo ${SLURM_RESTART_COUNT:-0} >> runs; [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] || sleep 120'
    job = slurm_jobs.sbatch("--output=/dev/null", "--wrap", script)
    _read_lines(tmp_path / "runs")
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    # A requeued job waits for its credential to expire (AuthInfo=cred_expire=15) before it restarts.
    assert slurm_jobs.wait(job, timeout=90) == "COMPLETED"
    assert (tmp_path / "runs").read_text().split() == ["0", "1"]
    out = subprocess.run(["scontrol", "show", "job", "-o", job], check=False, capture_output=True, text=True).stdout
    assert "Restarts=1" in out


def test_usr2_reaches_job_steps_and_with_batch_only_the_batch_shell(slurm_jobs, tmp_path):
    # `scancel --signal=USR2 <id>` signals the srun steps (where submitit runs Python);
    # `--batch` signals only the batch shell.
    step = 'trap "echo step-$SLURM_PROCID >> got" USR2; echo up >> ready; for i in $(seq 240); do sleep 0.25; done'
    script = f"trap 'echo batch >> got' USR2; srun bash -c '{step}' & wait; wait"
    job = slurm_jobs.sbatch("--output=/dev/null", "--wrap", script)
    _read_lines(tmp_path / "ready")
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    assert _read_lines(tmp_path / "got") == ["step-0"]
    subprocess.run(["scancel", "--signal=USR2", "--batch", job], check=True, timeout=30)
    assert _read_lines(tmp_path / "got", count=2) == ["step-0", "batch"]


def test_sacct_answers_submitits_status_query(slurm_jobs):
    job = slurm_jobs.sbatch("--output=/dev/null", "--wrap", "true")
    assert slurm_jobs.wait(job) == "COMPLETED"
    deadline = time.monotonic() + 60  # slurmctld forwards job records to slurmdbd asynchronously
    rows = []
    while time.monotonic() < deadline:
        rows = [r for r in slurm_jobs.sacct(job) if r["JobID"] == job]
        if rows and rows[0]["State"] == "COMPLETED":
            break
        time.sleep(1)
    assert rows and rows[0]["State"] == "COMPLETED" and rows[0]["NodeList"].startswith("wgnode"), rows
