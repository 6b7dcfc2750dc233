"""Executors for a plan: `inline` (this process) and `local` (submitit subprocesses).

Both run the plan's groups in dependency order. A node whose upstream failed is never
started and is recorded as blocked, with the reason. Slurm lives in `jobs.slurm`.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from jobs.entry import StageJob
from jobs.launcher import LauncherConfig
from jobs.plan import Node, Plan
from jobs.runs import RunDir

REPO = Path(__file__).resolve().parents[1]


def node_key(node: Node) -> str:
    return f"{node.stage}/{node.signature}"


def make_job(node: Node, plan: Plan, root: Path, results_dir: Path, run: RunDir, env: dict) -> StageJob:
    return StageJob(
        stage=node.stage, cfg=node.cfg, root=str(root), upstream=dict(node.upstream), direct=node.direct,
        force=plan.force, results_dir=str(results_dir), sweep=dict(node.sweep), run_id=run.run_id,
        log_dir=str(run.logs), env=dict(env),
    )


def _blocked_by(node: Node, failed: set[str]) -> str | None:
    for name in node.direct:
        key = f"{name}/{node.upstream[name]}"
        if key in failed:
            return key
    return None


def _describe(node: Node) -> str:
    sweep = ",".join(f"{k}={v}" for k, v in node.sweep.items())
    return f"{node.stage} {node.signature}" + (f" ({sweep})" if sweep else "")


def run_local(plan: Plan, jobs: dict[str, StageJob], launcher: LauncherConfig, run: RunDir, inline: bool) -> int:
    """Run every group in order, each node in-process (inline) or as a submitit subprocess."""
    failed: set[str] = set()
    total = len(plan.to_run)
    done = 0
    executor = None
    if not inline:
        import submitit

        executor = submitit.LocalExecutor(folder=run.logs / "%j")
        executor.update_parameters(timeout_min=launcher.time, tasks_per_node=launcher.tasks_per_node,
                                   nodes=1, gpus_per_node=launcher.gpus_per_node)
        # The job subprocess unpickles `jobs.entry.StageJob`: make the code importable there.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    parallel = max(1, launcher.array_parallelism or 1)
    for group in plan.groups():
        pending = list(group)
        while pending:
            batch, pending = pending[:parallel], pending[parallel:]
            running = []
            for node in batch:
                key = node_key(node)
                blocker = _blocked_by(node, failed)
                if blocker:
                    failed.add(key)
                    run.update_job(key, state="BLOCKED", reason=f"upstream {blocker} failed")
                    print(f"[skip] {_describe(node)}: upstream {blocker} failed", flush=True)
                    continue
                run.update_job(key, state="RUNNING", started=time.time())
                if inline:
                    running.append((node, None, time.time()))
                else:
                    job = executor.submit(jobs[key])
                    run.update_job(key, job_id=str(job.job_id))
                    running.append((node, job, time.time()))
            for node, job, t0 in running:
                key = node_key(node)
                try:
                    summary = jobs[key]() if job is None else job.results()[0]
                except Exception as err:  # noqa: BLE001 - a failed job must not stop the report
                    failed.add(key)
                    message = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
                    run.update_job(key, state="FAILED", reason=message, elapsed_s=round(time.time() - t0, 1))
                    print(f"[fail] {_describe(node)}: {message}", flush=True)
                    if inline:
                        traceback.print_exc()
                    continue
                done += 1
                state = "PREEMPTED" if summary.get("status") == "preempted" else "COMPLETED"
                if state == "PREEMPTED":
                    failed.add(key)
                run.update_job(key, state=state, elapsed_s=round(time.time() - t0, 1),
                               artifact=summary.get("artifact"), metrics=summary.get("metrics"))
                print(f"[{done}/{total}] {state.lower()} {_describe(node)} in {time.time() - t0:.0f}s"
                      f" -> {summary.get('artifact') or summary.get('message', '')}", flush=True)
    return 1 if failed else 0
