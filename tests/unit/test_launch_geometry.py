"""Launch geometry: one task per GPU by default, contradictions fail before submission, and each
rank's device index comes from what the task can see (all of the node's GPUs, or one bound GPU)."""

import re

import pytest

from jobs.launcher import LauncherConfig
from stages.core.config import ConfigError, resolve
from stages.core.devices import device_index


def launcher(**values) -> LauncherConfig:
    return resolve(LauncherConfig, {k: str(v) for k, v in values.items()}, where="launcher")


def test_tasks_per_node_defaults_to_one_per_gpu():
    assert launcher(nodes=4, gpus_per_node=8).world_size == 32
    assert launcher().tasks_per_node == 1  # CPU jobs: one process per node unless asked
    assert launcher(gpus_per_node=1, tasks_per_node=2).tasks_per_node == 2  # two ranks share one GPU


@pytest.mark.parametrize("tasks, message", [(4, "leaves 4 GPU(s) per node idle"), (12, "evenly")])
def test_a_geometry_that_contradicts_the_gpus_fails_in_one_line(tasks, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        launcher(gpus_per_node=8, tasks_per_node=tasks)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("visible, expected", [(8, [0, 1, 2, 3, 4, 5, 6, 7]), (1, [0] * 8)])
def test_each_rank_picks_a_gpu_it_can_see_under_both_binding_styles(visible, expected):
    # visible=8: every task sees the node's GPUs; visible=1: Slurm bound one GPU to each task.
    assert [device_index(local_rank, visible) for local_rank in range(8)] == expected


def test_the_accelerate_device_index_agrees_with_ours():
    """Training places ranks through Accelerate, evaluation through `local_device`: one formula."""
    import inspect

    from accelerate.state import PartialState

    assert "self.local_process_index % device_module.device_count()" in inspect.getsource(PartialState.set_device)


def test_the_headline_geometry_reaches_the_plan_and_the_sbatch_parameters(tmp_path):
    from jobs.args import parse_args
    from jobs.cli import LAUNCHER_KEYS
    from jobs.plan import Planner
    from jobs.report import describe_plan
    from jobs.slurm import _parameters

    headline = launcher(nodes=4, gpus_per_node=8)
    plan = Planner(parse_args(["stage=pretrain"], LAUNCHER_KEYS), tmp_path, LAUNCHER_KEYS, dry_run=True).build()
    text = describe_plan(plan, headline, "slurm")
    assert "4 node(s) x 8 task(s) = world size 32" in text
    assert "upstream MISSING" in text  # a dry run shows the geometry before the data exists
    params = _parameters(headline, {}, tmp_path, "pretrain")
    assert (params["nodes"], params["ntasks_per_node"], params["gpus_per_node"]) == (4, 8, 8)
