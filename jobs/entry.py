"""The callable every executor runs: one stage run, with launcher concerns kept here.

Under submitit, it exports the torch distributed variables (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) before the stage starts; the stage itself only reads them. When a
training stage raises `Preempted` under Slurm, rank 0 requeues the job; the relaunch runs this
same pickled callable, which finds the partial artifact and resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jobs import results
from stages.core import locks, registry
from stages.core.artifacts import load_artifact
from stages.core.preemption import Preempted, PreemptionFlag
from stages.core.runner import execute

#: Where rank 0 leaves a requeue request (`<dir>/<SLURM_JOB_ID>`) for the batch script's exit trap.
REQUEUE_DIR_ENV = "WIKIGRAPH_REQUEUE_DIR"


@dataclasses.dataclass
class StageJob:
    """One node of a plan, picklable for submitit."""

    stage: str
    cfg: Any
    root: str
    upstream: dict[str, str]
    direct: tuple[str, ...]
    force: bool
    results_dir: str
    sweep: dict[str, str]
    run_id: str
    log_dir: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    on_busy: str = "wait"

    def __call__(self) -> dict:
        os.environ.update(self.env)
        PreemptionFlag.install()  # the one preemption path (stages.core.preemption)
        _restore_sigterm_in_forked_children()
        _die_with_launcher()
        _export_distributed_env()
        _setup_logging()
        spec = registry.get(self.stage)
        upstream = {}
        for name, signature in self.upstream.items():
            artifact = load_artifact(Path(self.root), registry.stage_of(name), signature)
            if artifact is None:
                raise FileNotFoundError(
                    f"upstream artifact {name}/{signature} is missing under {self.root}: "
                    "its job failed or was cancelled; see `python jobs/submit.py status`"
                )
            upstream[name] = artifact
        try:
            outcome = execute(spec, self.cfg, Path(self.root), upstream, direct_upstream=self.direct, force=self.force,
                              on_busy=self.on_busy)
        except Preempted as stop:
            return _requeue_or_report(stop)
        summary = {"stage": self.stage, "signature": outcome.signature, "cache_hit": outcome.cache_hit,
                   "artifact": str(outcome.artifact) if outcome.artifact else None, "metrics": outcome.metrics}
        if outcome.rank == 0 and not outcome.cache_hit:
            record = results.write_record(
                Path(self.results_dir), stage=self.stage, signature=outcome.signature, sweep=self.sweep,
                metrics=outcome.metrics, artifact=outcome.artifact, logs=self.log_dir, run_id=self.run_id,
                upstream=self.upstream, extra=outcome.record,
            )
            summary["record"] = str(record)
        return summary

#: Set by the local executor: the submitting process, whose death must end its jobs.
LAUNCHER_PID_ENV = "WIKIGRAPH_LAUNCHER_PID"


def _set_parent_death_signal() -> None:
    """Linux: the kernel sends SIGKILL to this process when its parent exits."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _die_with_launcher() -> None:
    """Under executor=local, the job must not outlive `submit.py`. The job's parent is
    submitit's controller, not `submit.py`, so a parent-death signal alone is not enough: a
    thread also watches the launcher's PID (and start time, against PID reuse) and kills this
    process when it is gone. The partial artifact stays resumable, and the lock it leaves names
    a dead PID, which the next run takes over."""
    value = os.environ.get(LAUNCHER_PID_ENV)
    if not value:
        return
    pid, _, ticks = value.partition(":")
    _set_parent_death_signal()

    def watch() -> None:
        while locks.pid_alive(int(pid)) and str(locks.process_start_ticks(int(pid))) in (ticks, "None"):
            time.sleep(1.0)
        logging.getLogger("wikigraph").error("the launching process %s is gone; stopping this job", pid)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-launcher", daemon=True).start()


def launcher_env() -> dict[str, str]:
    """What a local job needs to find (and outlive not) the process that launched it."""
    return {LAUNCHER_PID_ENV: f"{os.getpid()}:{locks.process_start_ticks(os.getpid())}"}


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_parent_death_signal()  # forked pool workers die with the job


_FORK_HOOK_INSTALLED = False


def _restore_sigterm_in_forked_children() -> None:
    """submitit makes the job process ignore SIGTERM (it waits for USR2 and requeues itself).
    Forked pool workers (extract, pretokenize) would inherit that, and `Pool.terminate()`,
    which stops them with SIGTERM, would then hang the job forever."""
    global _FORK_HOOK_INSTALLED
    if not _FORK_HOOK_INSTALLED:
        os.register_at_fork(after_in_child=_default_sigterm)
        _FORK_HOOK_INSTALLED = True


def _export_distributed_env() -> None:
    """Translate the submitit/Slurm task environment into torch's variables."""
    if "SUBMITIT_EXECUTOR" not in os.environ and "SUBMITIT_LOCAL_JOB_ID" not in os.environ \
            and "SLURM_JOB_ID" not in os.environ:
        return
    try:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except RuntimeError:
        # Not inside a submitit job (e.g. `executor=inline` from an interactive Slurm shell).
        pass


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(name)s %(levelname)s: %(message)s",
    )


def _requeue_or_report(stop: Preempted) -> dict:
    """Under Slurm, rank 0 asks for a requeue and every rank exits without a result; the batch
    script then requeues the job (same id, same pickled callable) from the host, outside any
    container, and submitit reruns the callable, which resumes from the checkpoint.
    Elsewhere, report the preemption: rerunning the same command resumes."""
    job_id, requests = os.environ.get("SLURM_JOB_ID"), os.environ.get(REQUEUE_DIR_ENV)
    if not (job_id and requests):
        return {"status": "preempted", "step": stop.step, "message": str(stop)}
    if int(os.environ.get("RANK", "0")) == 0:
        logging.getLogger("wikigraph").warning("%s; requeueing Slurm job %s", stop, job_id)
        Path(requests).mkdir(parents=True, exist_ok=True)
        (Path(requests) / job_id).write_text(str(stop.step))
    # SystemExit (not an Exception) keeps submitit from writing a result file for this attempt.
    raise SystemExit(0)
