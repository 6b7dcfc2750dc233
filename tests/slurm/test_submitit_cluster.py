"""submitit's Slurm executor on the local cluster: results, 2-node gloo, and requeue after SIGUSR2.

Job functions live in this module, which the job's Python cannot import by name (pytest puts
tests/slurm on sys.path only in this process), so cloudpickle ships them by value.
"""

import json
import os
import signal
import subprocess
import sys
import time

import cloudpickle
import pytest

submitit = pytest.importorskip("submitit")
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _square_on_node(x):
    return x * x, os.environ["SLURMD_NODENAME"]


def _gloo_all_reduce():
    import torch
    import torch.distributed as dist

    env = submitit.helpers.TorchDistributedEnvironment().export()
    dist.init_process_group("gloo")
    value = torch.tensor([float(env.rank + 1)])
    dist.all_reduce(value)
    dist.destroy_process_group()
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURMD_NODENAME")
    return {"sum": value.item(), **{k: os.environ[k] for k in keys}}


def _count_until_usr2(state_path, steps):
    """A training-loop stand-in: the handler only sets a flag; the loop saves and requeues at a step boundary."""
    requested = []
    signal.signal(signal.SIGUSR2, lambda *_: requested.append(True))
    step = json.loads(state_path.read_text())["step"] if state_path.exists() else 0
    state_path.with_suffix(".running").touch()
    while step < steps:
        time.sleep(0.05)
        step += 1
        if requested:
            state_path.write_text(json.dumps({"step": step}))
            subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=True)
            raise SystemExit(0)  # not an Exception: submitit writes no result, the rerun will
    return {"step": step, "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}


def _executor(folder, **params):
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_job_name="wikigraph-test", **params)
    return executor


def test_submitit_returns_a_function_result(slurm_cluster, tmp_path):
    job = _executor(tmp_path).submit(_square_on_node, 7)
    value, node = job.result()
    assert value == 49 and node in slurm_cluster.nodes


def test_two_nodes_get_torch_distributed_env_and_all_reduce_over_gloo(slurm_cluster, tmp_path):
    job = _executor(tmp_path, nodes=2, tasks_per_node=1, cpus_per_task=1).submit(_gloo_all_reduce)
    ranks = sorted(job.results(), key=lambda r: r["RANK"])
    assert [r["RANK"] for r in ranks] == ["0", "1"]
    assert all(r["sum"] == 3.0 and r["WORLD_SIZE"] == "2" and r["LOCAL_RANK"] == "0" for r in ranks)
    assert len({r["SLURMD_NODENAME"] for r in ranks}) == 2
    first_node = min(slurm_cluster.nodes)
    assert {r["MASTER_ADDR"] for r in ranks} == {first_node} and len({r["MASTER_PORT"] for r in ranks}) == 1


def test_usr2_makes_the_job_save_requeue_and_resume(slurm_cluster, tmp_path):
    state = tmp_path / "state.json"
    job = _executor(tmp_path).submit(_count_until_usr2, state, 200)
    deadline = time.monotonic() + 120
    while not state.with_suffix(".running").exists():
        assert time.monotonic() < deadline, "job did not start"
        time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)  # steps only, as Slurm does
    result = job.result()
    saved = json.loads(state.read_text())["step"]
    assert 0 < saved < 200 and result == {"step": 200, "restarts": 1}
