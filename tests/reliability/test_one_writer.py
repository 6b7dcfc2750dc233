"""One writer per artifact, with real processes (issue 11).

Two `jobs/submit.py` processes run the same config at once: the second must wait for the first
and then find its artifact (the work is done once), or with lock=refuse stop with one line
naming the owner. A lock left by a dead process is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "WIKIGRAPH_EXTRA_STAGES": "tests.toy_stages",
            "OMP_NUM_THREADS": "1"}


def _submit(tmp_path: Path, *args: str, executor: str = "inline", shards: int = 4, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "jobs" / "submit.py"), "stage=toy_numbers", f"executor={executor}",
           f"root={tmp_path / 'art'}", f"results={tmp_path / 'results'}", f"shards={shards}", "per_shard=10", *args]
    return subprocess.Popen(cmd, cwd=tmp_path, env={**_env(), **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_for_lock(tmp_path: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list((tmp_path / "art" / "toy_numbers").glob(".*.lock"))
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    raise AssertionError("the first run never took its lock")


def _artifact(tmp_path: Path) -> Path:
    (path,) = [p for p in (tmp_path / "art" / "toy_numbers").iterdir() if not p.name.startswith(".")]
    return path


@pytest.mark.parametrize("allocation", [None, "4242"], ids=["plain", "inside-one-slurm-allocation"])
def test_second_run_waits_and_the_work_is_done_once(tmp_path, allocation):
    """Also inside one `salloc`: both runs then carry the same SLURM_JOB_ID, which must not make
    the second take the first's lock over as an "earlier attempt"."""
    env = {"SLURM_JOB_ID": allocation} if allocation else {}
    first = _submit(tmp_path, "slow_s=1.5", env=env)
    lock = _wait_for_lock(tmp_path, first)
    owner = json.loads(lock.read_text())
    assert owner["host"] == socket.gethostname() and owner["pid"] == first.pid
    second = _submit(tmp_path, "slow_s=1.5", env=env)
    out2 = second.communicate(timeout=300)[0]
    out1 = first.communicate(timeout=300)[0]
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    assert f"pid {first.pid}" in out2 and "waiting for toy_numbers/" in out2, out2
    assert (_artifact(tmp_path) / "launches.log").read_text() == "computed 4\n"
    assert not lock.exists()


def test_second_run_refuses_with_one_line_naming_the_owner(tmp_path):
    first = _submit(tmp_path, "slow_s=1.5")
    _wait_for_lock(tmp_path, first)
    second = _submit(tmp_path, "lock=refuse")
    out2 = second.communicate(timeout=300)[0]
    assert second.returncode != 0, out2
    lines = [line for line in out2.splitlines() if f"pid {first.pid}" in line]
    assert lines and "is being written by host" in lines[0] and "Traceback" not in out2, out2
    assert first.wait(timeout=300) == 0
    assert (_artifact(tmp_path) / "launches.log").read_text() == "computed 4\n"


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    first = _submit(tmp_path, "dry_run=true")
    out = first.communicate(timeout=300)[0]
    signature = next(word for line in out.splitlines() for word in line.split() if len(word) == 12
                     and all(c in "0123456789abcdef" for c in word))
    lock = tmp_path / "art" / "toy_numbers" / f".{signature}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "job_id": None, "since": 1.0}))
    run = _submit(tmp_path)
    out = run.communicate(timeout=300)[0]
    assert run.returncode == 0, out
    assert "stale lock" in out and f"process {dead.pid} is gone" in out, out
    assert (_artifact(tmp_path) / "launches.log").read_text() == "computed 4\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")  # a zombie has exited


def test_killing_submit_stops_its_local_jobs_and_status_says_dead(tmp_path):
    launcher = _submit(tmp_path, "slow_s=3", executor="local", shards=20).pid
    proc = None
    try:
        proc_lock = None
        deadline = time.time() + 180
        while proc_lock is None and time.time() < deadline:
            found = list((tmp_path / "art" / "toy_numbers").glob(".*.lock"))
            proc_lock = found[0] if found else None
            time.sleep(0.2)
        assert proc_lock is not None, "the local job never started"
        job_pid = json.loads(proc_lock.read_text())["pid"]
        assert job_pid != launcher  # the stage runs in a submitit child process
        os.kill(launcher, 9)
        deadline = time.time() + 30
        while _alive(job_pid) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(job_pid), "the local job outlived submit.py"
        status = subprocess.run([sys.executable, str(REPO / "jobs" / "submit.py"), "status",
                                 f"root={tmp_path / 'art'}"], cwd=tmp_path, env=_env(), capture_output=True,
                                text=True, timeout=120, check=False)
        row = next(line for line in status.stdout.splitlines() if "toy_numbers/" in line)
        assert "DEAD" in row and "RUNNING" not in row and f"process {launcher} is gone" in row, status.stdout
        proc = _submit(tmp_path, shards=20)
        out = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0 and "stale lock" in out, out
    finally:
        for pid in [launcher, *([job_pid] if "job_pid" in locals() else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
