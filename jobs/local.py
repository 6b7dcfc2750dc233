"""Backends that run on this machine: `inline` (in this process) and `local` (submitit subprocesses).

Both run the plan's groups in dependency order and block until every job is final. A node
whose upstream failed is never started and is recorded as blocked, with the reason. The
launch sequence around them is `jobs.executor.Executor`'s; Slurm lives in `jobs.slurm`.
"""

from __future__ import annotations

import os
import socket
import time
import traceback

from jobs.entry import StageJob, launcher_env
from jobs.executor import Executor, process_env_with_repo
from jobs.plan import Node
from jobs.runs import RunDir, owner_only_writes
from stages.core.locks import process_start_ticks
from stages.core.safefs import describe_os_error


def failure_reason(err: BaseException) -> str:
    """One line saying why a job failed: the last line of the job's own traceback for a
    submitit job (its message wraps the remote traceback), else the exception's first line."""
    if isinstance(err, OSError) and err.errno is not None and not isinstance(err, FileNotFoundError):
        return f"{type(err).__name__}: {describe_os_error(err)}"
    text = str(err).strip()
    marker = "-" * 22
    if text.count(marker) >= 2:
        trace = text.split(marker)[1].strip().splitlines()
        if trace:
            return trace[-1].strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else repr(err)


def _blocked_by(node: Node, failed: dict[str, str]) -> str | None:
    """Why `node` cannot start ("upstream <key> failed" or "... was preempted"), or None."""
    key = next((key for key in node.upstream_keys if key in failed), None)
    return f"upstream {key} {failed[key]}" if key else None


def _describe(node: Node) -> str:
    sweep = ",".join(f"{k}={v}" for k, v in node.sweep.items())
    return f"{node.stage} {node.signature}" + (f" ({sweep})" if sweep else "")


class LocalExecutor(Executor):
    """Each job in a submitit LocalExecutor subprocess; `array_parallelism` jobs at a time."""

    name = "local"

    #: Jobs stop when this process dies (`jobs.entry`): a killed `submit.py` leaves no orphans.
    jobs_die_with_launcher = True

    def run_record(self) -> dict:
        # `cancel` signals the submitting process, which runs the jobs; `status` checks it is alive.
        return {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": process_start_ticks(os.getpid())}

    def make_job(self, node: Node, run: RunDir, env: dict) -> StageJob:
        return super().make_job(node, run, {**env, **launcher_env()} if self.jobs_die_with_launcher else env)

    def _start(self, run: RunDir):
        """The submitit executor, or None to call jobs in this process."""
        import submitit

        executor = submitit.LocalExecutor(folder=run.logs / "%j")
        executor.update_parameters(timeout_min=self.launcher.time, tasks_per_node=self.launcher.tasks_per_node,
                                   nodes=1, gpus_per_node=self.launcher.gpus_per_node)
        process_env_with_repo()
        return executor

    def execute(self, run: RunDir, record: dict, jobs: dict[str, StageJob]) -> int:
        print(f"run {run.run_id}: logs in {run.logs}", flush=True)
        failed: dict[str, str] = {}  # job key -> what happened to it, for the jobs it blocks
        total, done, preempted = len(self.plan.to_run), 0, 0
        executor = self._start(run)
        parallel = max(1, self.launcher.array_parallelism or 1)
        for group in self.plan.groups():
            pending = list(group)
            while pending:
                batch, pending = pending[:parallel], pending[parallel:]
                running = []
                for node in batch:
                    blocker = _blocked_by(node, failed)
                    if blocker:
                        failed[node.key] = "was blocked"
                        run.update_job(node.key, state="BLOCKED", reason=blocker)
                        print(f"[skip] {_describe(node)}: {blocker}", flush=True)
                        continue
                    run.update_job(node.key, state="RUNNING", started=time.time())
                    job = None
                    if executor is not None:
                        with owner_only_writes():
                            job = executor.submit(jobs[node.key])
                    if job is not None:
                        run.update_job(node.key, job_id=str(job.job_id))
                    running.append((node, job, time.time()))
                for node, job, t0 in running:
                    try:
                        summary = jobs[node.key]() if job is None else job.results()[0]
                    except Exception as err:  # noqa: BLE001 - a failed job must not stop the report
                        failed[node.key] = "failed"
                        message = failure_reason(err)
                        run.update_job(node.key, state="FAILED", reason=message, elapsed_s=round(time.time() - t0, 1))
                        log = f"{run.logs} (inline: this console)" if job is None else job.paths.stderr
                        print(f"[fail] {_describe(node)}: {message}\n       log: {log}", flush=True)
                        if self.debug:
                            traceback.print_exc()
                        continue
                    done += 1
                    state = "PREEMPTED" if summary.get("status") == "preempted" else "COMPLETED"
                    if state == "PREEMPTED":
                        preempted += 1
                        failed[node.key] = f"was preempted at its time limit (time={self.launcher.time}min)"
                    run.update_job(node.key, state=state, elapsed_s=round(time.time() - t0, 1),
                                   artifact=summary.get("artifact"), metrics=summary.get("metrics"))
                    print(f"[{done}/{total}] {state.lower()} {_describe(node)} in {time.time() - t0:.0f}s"
                          f" -> {summary.get('artifact') or summary.get('message', '')}", flush=True)
        if preempted:
            print(f"{preempted} job(s) stopped at the time limit (time={self.launcher.time}min) with a checkpoint; "
                  "rerun the same command, with a larger `time=` if need be, to resume them", flush=True)
        return 1 if failed else 0


class InlineExecutor(LocalExecutor):
    """Each job called in this process, one after the other (debuggable with pdb)."""

    name = "inline"
    jobs_die_with_launcher = False

    def _start(self, run: RunDir):
        return None
