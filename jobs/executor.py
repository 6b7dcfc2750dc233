"""The executor base: what every backend shares, from a plan to a recorded run.

`Executor.launch` owns the launch sequence: print the plan, validate, create the run
directory, resolve offline resources (each stage's `prefetch` hook), discard forced partials, write each
node's resolved config, build the jobs and write the run record (`run.json`). A backend
(`jobs.local`: inline and local; `jobs.slurm`: Slurm) only implements `execute`, which
submits the jobs and, where it blocks, waits for them; optionally `validate`, `prepare` (e.g.
snapshot the code) and `preview` (what a dry run prints beyond the plan).
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

from jobs import results
from jobs.entry import StageJob
from jobs.launcher import LauncherConfig
from jobs.offline import offline_env, prepare_offline
from jobs.plan import Node, Plan
from jobs.report import describe_plan, report_results
from jobs.runs import RunDir
from stages.core.runner import discard_partial

REPO = Path(__file__).resolve().parents[1]

#: Backend classes by `executor=` value ("module:Class", imported on use).
EXECUTORS = {
    "inline": "jobs.local:InlineExecutor",
    "local": "jobs.local:LocalExecutor",
    "slurm": "jobs.slurm:SlurmExecutor",
}


def executor_class(name: str) -> type[Executor]:
    module, _, attr = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


class Executor:
    """Launches a plan. Subclasses implement `execute` (submit, and wait where they block)."""

    #: The `executor=` value, recorded in run.json (`status` and `cancel` dispatch on it).
    name = ""
    #: True when `execute` returns only after every job is final (results are then collected).
    blocking = True

    def __init__(self, plan: Plan, launcher: LauncherConfig, root: Path, results_dir: Path,
                 wait: bool = False, slurm_extra: dict | None = None, debug: bool = False):
        self.plan, self.launcher = plan, launcher
        self.root, self.results_dir = Path(root), Path(results_dir)
        self.wait = wait
        self.slurm_extra = dict(slurm_extra or {})
        self.debug = debug

    # --- backend hooks -------------------------------------------------------------------
    def validate(self) -> None:
        """Fail (ConfigError) before anything is written if the backend cannot run the plan."""

    def prepare(self, run: RunDir) -> None:
        """Set up the run directory for this backend (e.g. a code snapshot)."""

    def preview(self, run: RunDir, jobs: dict[str, StageJob]) -> None:
        """What a dry run prints beyond the plan (e.g. the sbatch scripts)."""

    def execute(self, run: RunDir, record: dict, jobs: dict[str, StageJob]) -> int:
        """Submit `jobs` (keyed by `Node.key`, in plan order) and, if blocking, wait; exit code."""
        raise NotImplementedError

    def run_record(self) -> dict:
        """Backend fields of run.json besides run_id, executor, root and jobs."""
        return {}

    # --- the shared launch sequence ------------------------------------------------------
    def make_job(self, node: Node, run: RunDir, env: dict) -> StageJob:
        return StageJob(
            stage=node.stage, cfg=node.cfg, root=str(self.root), upstream=dict(node.upstream), direct=node.direct,
            force=self.plan.force, on_busy=self.plan.on_busy, results_dir=str(self.results_dir), sweep=dict(node.sweep), run_id=run.run_id,
            log_dir=str(run.logs), env=dict(env),
        )

    def record_existing(self) -> int:
        """Give each requested artifact that already exists a record in `results_dir` (from its
        manifest) unless it has one there, so that a study rerun into a new `results=` directory
        reports the whole comparison, not only the runs it had to start. Returns how many."""
        written = 0
        for node in self.plan.nodes:
            if (not node.requested or not node.cached or self.plan.force
                    or results.has_record(self.results_dir, node.stage, node.signature)):
                continue
            manifest = node.existing.manifest
            results.write_record(
                self.results_dir, stage=node.stage, signature=node.signature, sweep=dict(node.sweep),
                metrics=manifest.get("metrics", {}), artifact=node.existing.path, logs="",
                run_id=f"existing artifact ({manifest.get('end_time', 'time unknown')})",
                upstream=dict(node.upstream), extra=manifest.get("record", {}))
            written += 1
        if written:
            print(f"{written} existing artifact(s) recorded into {self.results_dir}")
        return written

    def launch(self, dry_run: bool = False) -> int:
        plan = self.plan
        print(describe_plan(plan, self.launcher, self.name), flush=True)
        if not plan.to_run:
            print("nothing to run: every requested artifact exists (force=true reruns)")
            if not dry_run and self.record_existing():
                report_results(plan, self.results_dir)
            return 0
        self.validate()
        if dry_run and type(self).preview is Executor.preview:
            return 0
        run = RunDir.create(self.root, plan.to_run[-1].stage if len(plan.groups()) == 1 else "all")
        self.prepare(run)
        env = offline_env(self.root)
        if dry_run:
            try:
                self.preview(run, {n.key: self.make_job(n, run, env) for n in plan.to_run})
            finally:
                shutil.rmtree(run.path, ignore_errors=True)
            return 0
        prepare_offline(plan, self.root)
        jobs = {}
        for node in plan.to_run:
            if plan.force:
                discard_partial(self.root, node.stage, node.signature)
            run.write_config(node.stage, node.signature, node.cfg)
            jobs[node.key] = self.make_job(node, run, env)
        record = {"run_id": run.run_id, "executor": self.name, "root": str(self.root), **self.run_record(),
                  "jobs": {n.key: {"stage": n.stage, "signature": n.signature, "sweep": n.sweep,
                                   "upstream": n.upstream_keys, "state": "PENDING"} for n in plan.to_run}}
        run.write(record)
        self.record_existing()
        code = self.execute(run, record, jobs)
        if self.blocking or self.wait:
            report_results(plan, self.results_dir)
        return code


def process_env_with_repo() -> None:
    """Make this checkout importable in child processes (they unpickle `jobs.entry.StageJob`)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
