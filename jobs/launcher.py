"""Launcher resources: how a job runs, never what it computes (so never in a signature)."""

from __future__ import annotations

import dataclasses
import re

from stages.core.config import ConfigError, knob


@dataclasses.dataclass
class LauncherConfig:
    """Resources and placement of every job in a submission."""

    nodes: int = knob(1, "nodes per job")
    tasks_per_node: int = knob(0, "processes per node (0: one per GPU, or 1 without GPUs)")
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
        """Range checks, then the derived geometry: `tasks_per_node` 0 becomes one task per GPU."""
        for name in ("nodes", "cpus_per_task", "time"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1")
        if min(self.tasks_per_node, self.gpus_per_node, self.array_parallelism) < 0:
            raise ValueError("`tasks_per_node`, `gpus_per_node` and `array_parallelism` must be >= 0")
        if self.tasks_per_node == 0:
            self.tasks_per_node = max(self.gpus_per_node, 1)
        elif self.gpus_per_node and self.tasks_per_node < self.gpus_per_node:
            raise ValueError(f"`tasks_per_node={self.tasks_per_node}` with `gpus_per_node={self.gpus_per_node}` "
                             f"leaves {self.gpus_per_node - self.tasks_per_node} GPU(s) per node idle: training runs "
                             "one process per GPU; leave tasks_per_node unset (one task per GPU)")
        elif self.gpus_per_node and self.tasks_per_node % self.gpus_per_node:
            raise ValueError(f"`tasks_per_node={self.tasks_per_node}` does not share `gpus_per_node="
                             f"{self.gpus_per_node}` evenly; use a multiple of gpus_per_node")
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
