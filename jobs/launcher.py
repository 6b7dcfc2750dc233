"""Launcher resources: how a job runs, never what it computes (so never in a signature)."""

from __future__ import annotations

import dataclasses
import re

from stages.core.config import ConfigError, knob


@dataclasses.dataclass
class LauncherConfig:
    """Resources and placement of every job in a submission."""

    nodes: int = knob(1, "nodes per job")
    tasks_per_node: int = knob(1, "processes per node (one per GPU on GPU nodes)")
    gpus_per_node: int = knob(0, "GPUs per node")
    cpus_per_task: int = knob(2, "CPU cores per process")
    mem: str = knob("", "memory per node, e.g. 32G (empty: site default)")
    time: int = knob(60, "time limit in minutes")
    partition: str = knob("", "Slurm partition (empty: site default)")
    account: str = knob("", "Slurm account")
    qos: str = knob("", "Slurm QOS")
    constraint: str = knob("", "Slurm node constraint, e.g. a100")
    exclusive: bool = knob(False, "exclusive node allocation")
    container: str = knob("", "Apptainer image (.sif) to run every task in")
    array_parallelism: int = knob(0, "max concurrently running array tasks (0: executor default)")
    signal_delay_s: int = knob(120, "seconds before the time limit that SIGUSR2 arrives")

    def validate(self) -> None:
        for name in ("nodes", "tasks_per_node", "cpus_per_task", "time"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1")
        if self.gpus_per_node < 0 or self.array_parallelism < 0:
            raise ValueError("`gpus_per_node` and `array_parallelism` must be >= 0")
        if self.mem and not re.fullmatch(r"\d+[KMGT]?", self.mem):
            raise ValueError(f"`mem`: {self.mem!r} is not a size like 16G or 64000M")

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node


def check_local(launcher: LauncherConfig, executor: str) -> None:
    """Resources that only Slurm can provide fail early on the local executors."""
    if executor in ("inline", "local") and launcher.nodes > 1:
        raise ConfigError(f"`nodes={launcher.nodes}` needs executor=slurm; the {executor} executor runs on one machine")
    if executor == "inline" and launcher.tasks_per_node > 1:
        raise ConfigError("`tasks_per_node` > 1 needs executor=local or slurm; inline runs one process")
