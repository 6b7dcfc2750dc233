"""Fixtures for tests against the real local Slurm cluster started by `slurm/up.sh`.

Without a reachable cluster these tests skip, except under `CI=true`, where a missing cluster
is a failure: CI must start it (`bash slurm/up.sh`) before running tests/slurm.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time

import pytest

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """What the tests need to know about the running cluster."""

    nodes: tuple[str, ...]
    partitions: tuple[str, ...]
    default_partition: str
    config: dict[str, str]

    @property
    def max_array_size(self) -> int:
        return int(self.config["MaxArraySize"])


def _probe() -> tuple[SlurmCluster | None, str]:
    """The cluster, or None and why it is unusable."""
    if shutil.which("sinfo") is None:
        return None, "`sinfo` is not installed"
    try:
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%P|%t"], capture_output=True, text=True,
                               timeout=20, check=True).stdout
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                                timeout=20, check=True).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        return None, f"the Slurm controller does not answer ({err})"
    rows = [line.split("|") for line in nodes.split()]
    names = tuple(sorted({name for name, _, _ in rows}))
    partitions = tuple(sorted({part.rstrip("*") for _, part, _ in rows}))
    default = next((part.rstrip("*") for _, part, _ in rows if part.endswith("*")), partitions[0] if rows else "")
    usable = {name for name, _, state in rows if state.rstrip("*~#!%$@^-") in ("idle", "mix", "alloc", "comp")}
    if not names or len(usable) < len(names):
        return None, f"not every node is up: {nodes.strip()}"
    settings = dict(line.split(" = ", 1) for line in config.splitlines() if " = " in line)
    return SlurmCluster(names, partitions, default, {k.strip(): v.strip() for k, v in settings.items()}), ""


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The running local cluster; skips without one, fails without one under CI=true."""
    cluster, why = _probe()
    if cluster is None:
        message = f"no usable Slurm cluster: {why}; start it with `sudo bash slurm/up.sh`"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: tests/slurm must not skip)")
        pytest.skip(message)
    return cluster


def sacct_fields(job_id: str, fields: str = "JobID,State,NodeList") -> list[dict[str, str]]:
    """sacct rows for a job (the same call submitit makes), one dict per row."""
    out = subprocess.run(["sacct", "-o", fields, "--parsable2", "-j", job_id], capture_output=True, text=True,
                         check=True, timeout=30).stdout.splitlines()
    if len(out) < 2:
        return []
    names = out[0].split("|")
    return [dict(zip(names, line.split("|"))) for line in out[1:]]


def job_state(job_id: str) -> tuple[str, str]:
    """(state, reason) of one job or array task, straight from the controller (no sacct lag)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], check=False, capture_output=True, text=True,
                         timeout=30).stdout
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    return fields.get("JobState", "UNKNOWN"), fields.get("Reason", "")


class Jobs:
    """Submits test jobs and cancels whatever is left of them afterwards."""

    def __init__(self, workdir) -> None:
        self.workdir = workdir
        self.ids: list[str] = []

    def sbatch(self, *args: str) -> str:
        proc = subprocess.run(["sbatch", "--parsable", f"--chdir={self.workdir}", "--job-name=wikigraph-test",
                               *args], check=False, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"sbatch {' '.join(args)} failed: {proc.stderr}"
        job_id = proc.stdout.strip().split(";")[0]
        self.ids.append(job_id)
        return job_id

    sacct = staticmethod(sacct_fields)
    state = staticmethod(job_state)

    def wait(self, job_id: str, states=FINAL_STATES, timeout: float = 120) -> str:
        """Poll until the job reaches one of `states`; returns it."""
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            state, _ = job_state(job_id)
            if state in states:
                return state
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} still {state} after {timeout}s (wanted {sorted(states)})")

    def cancel_all(self) -> None:
        if self.ids:
            subprocess.run(["scancel", *self.ids], check=False, capture_output=True, timeout=60)


@pytest.fixture
def slurm_jobs(slurm_cluster, tmp_path) -> Jobs:
    """A job submitter working in tmp_path (same host, so the directory is 'shared')."""
    jobs = Jobs(tmp_path)
    yield jobs
    jobs.cancel_all()
